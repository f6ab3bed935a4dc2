//! A transformer's dense layer: f32 through candle's GEMM, or int8 weights through our kernel.

use candle_core::{Module, Tensor, D};
use candle_nn::Linear;

use super::int8::Int8Linear;

/// A dense layer in f32 (candle's GEMM) or with int8 weights (`--text-quantization int8`).
pub enum Dense {
    /// `weight_t` is the weight transposed once at load, `[in, out]` and contiguous: the GEMM
    /// reads it row-major. Given the `[out, in]` weight as a transposed view (what candle's
    /// `Linear` does), the `gemm` crate packs it with one scalar strided load per element on
    /// every call: 26% of CLIP ViT-B/32's image tower at batch 1 on a 2-core AVX2 EPYC (perf).
    F32 {
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
    Int8(Int8Linear),
}

impl Dense {
    pub fn new(linear: Linear, int8: bool) -> candle_core::Result<Self> {
        if int8 {
            if let Some(q) = Int8Linear::quantize(linear.weight(), linear.bias())? {
                return Ok(Self::Int8(q));
            }
        }
        Ok(Self::F32 {
            weight_t: linear.weight().t()?.contiguous()?,
            bias: linear.bias().cloned(),
        })
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::F32 { weight_t, bias } => {
                // any leading dims as rows of one 2-D product (which checks the widths), then back
                let mut dims = x.dims().to_vec();
                let y = x.flatten_to(D::Minus2)?.matmul(weight_t)?;
                if let Some(last) = dims.last_mut() {
                    *last = weight_t.dim(1)?;
                }
                let y = y.reshape(dims)?;
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
            Self::Int8(q) => x.contiguous()?.apply_op1_no_bwd(q),
        }
    }
}
