//! A transformer's dense layer: f32 through candle's GEMM, or int8 weights through our kernel.

use candle_core::{Module, Tensor};
use candle_nn::Linear;

use super::int8::Int8Linear;

/// A dense layer in f32 (candle's GEMM) or with int8 weights (`--text-quantization int8`).
pub enum Dense {
    F32(Linear),
    Int8(Int8Linear),
}

impl Dense {
    pub fn new(linear: Linear, int8: bool) -> candle_core::Result<Self> {
        if int8 {
            if let Some(q) = Int8Linear::quantize(linear.weight(), linear.bias())? {
                return Ok(Self::Int8(q));
            }
        }
        Ok(Self::F32(linear))
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::F32(linear) => linear.forward(x),
            Self::Int8(q) => x.contiguous()?.apply_op1_no_bwd(q),
        }
    }
}
