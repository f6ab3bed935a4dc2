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

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use candle_nn::Linear;

    use super::Dense;
    use crate::rng::Rng;

    /// The f32 layer runs through whichever kernel the `gemm` crate picks for this CPU (AVX-512
    /// with its `x86-v4` feature, AVX2+FMA, or scalar: CI runs this under qemu without AVX-512
    /// and without AVX), so it is checked against the product by definition at the shapes a
    /// caption (a few rows), an image (50) and a batch (many) give it.
    #[test]
    fn f32_dense_equals_the_definition_on_every_kernel() {
        let mut rng = Rng::new(7);
        let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.range(-1.0, 1.0)).collect() };
        for (m, k, n) in [(1, 64, 48), (5, 96, 40), (50, 128, 80), (197, 72, 100)] {
            let (x, w, b) = (values(m * k), values(n * k), values(n));
            let dense = Dense::new(
                Linear::new(
                    Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap(),
                    Some(Tensor::from_slice(&b, n, &Device::Cpu).unwrap()),
                ),
                false,
            )
            .unwrap();
            let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
            let y: Vec<Vec<f32>> = candle_core::Module::forward(&dense, &xt)
                .unwrap()
                .to_vec2()
                .unwrap();
            for (r, row) in y.iter().enumerate() {
                for (c, &got) in row.iter().enumerate() {
                    let want: f64 = b[c] as f64
                        + (0..k)
                            .map(|i| x[r * k + i] as f64 * w[c * k + i] as f64)
                            .sum::<f64>();
                    assert!(
                        (got as f64 - want).abs() < 1e-4,
                        "({m}, {k}, {n}) [{r}, {c}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
