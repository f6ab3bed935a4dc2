//! A transformer's dense layer: f32 or int8 weights, each through a kernel that reads them in the
//! layout they were packed into at load.

use candle_core::{Module, Tensor, D};
use candle_nn::Linear;

use super::{int8::Int8Linear, panels::PanelLinear};

/// A dense layer in f32 or with int8 weights (`--text-quantization int8`).
pub enum Dense {
    /// f32 on the CPU: the weight in 32-column panels, read by our kernel (see `panels.rs`).
    Panels(PanelLinear),
    /// Elsewhere (CUDA, or f16/bf16 weights): candle's matmul. `weight_t` is the weight
    /// transposed once at load, `[in, out]` and contiguous.
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
        if linear.weight().device().is_cpu() && linear.weight().dtype() == candle_core::DType::F32 {
            return Ok(Self::Panels(PanelLinear::new(
                linear.weight(),
                linear.bias(),
            )?));
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
            Self::Panels(p) => rows_op(x, p),
            Self::Int8(q) => rows_op(x, q),
        }
    }
}

/// A row-wise custom op over any leading dims: flattened to `[rows, in]`, then back.
fn rows_op(x: &Tensor, op: &impl candle_core::CustomOp1) -> candle_core::Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let y = x
        .flatten_to(D::Minus2)?
        .contiguous()?
        .apply_op1_no_bwd(op)?;
    if let Some(last) = dims.last_mut() {
        *last = y.dim(1)?;
    }
    y.reshape(dims)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, Tensor};
    use candle_nn::Linear;

    use super::Dense;
    use crate::rng::Rng;

    /// The f32 layer (our panel kernel, chosen for this CPU at run time) and candle's matmul (the
    /// `gemm` crate's AVX-512, AVX2+FMA or scalar kernel, its own run-time choice; the CNNs and
    /// training use it) against the product by definition, at the shapes a caption (a few rows),
    /// an image (50) and a batch (many) give them. CI runs this under qemu without AVX-512 and
    /// without AVX.
    #[test]
    fn f32_dense_and_gemm_equal_the_definition_on_this_cpu() {
        let mut rng = Rng::new(7);
        let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.range(-1.0, 1.0)).collect() };
        for (m, k, n) in [(1, 64, 48), (5, 96, 40), (50, 200, 80), (400, 72, 100)] {
            let (x, w, b) = (values(m * k), values(n * k), values(n));
            let (wt, bt) = (
                Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap(),
                Tensor::from_slice(&b, n, &Device::Cpu).unwrap(),
            );
            let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
            let dense = Dense::new(Linear::new(wt.clone(), Some(bt.clone())), false).unwrap();
            assert!(matches!(dense, Dense::Panels(_)));
            let by_gemm = xt
                .matmul(&wt.t().unwrap())
                .unwrap()
                .broadcast_add(&bt)
                .unwrap();
            for y in [dense.forward(&xt).unwrap(), by_gemm] {
                let y: Vec<Vec<f32>> = y.to_vec2().unwrap();
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
}
