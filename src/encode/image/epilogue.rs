//! What follows a convolution's matrix product on the CPU — bias, an optional residual, the
//! activation — applied to its output in place, in one parallel pass.
//!
//! As candle ops that is up to four element-wise passes (broadcast add, residual add, maximum,
//! minimum for ReLU6), each allocating a fresh output whose pages the kernel must fault in and
//! zero, run by candle's own spinning thread pool beside rayon's. perf on EfficientNet-Lite0 at
//! batch 16 (2 cores): page zeroing 32% of the forward pass, candle's pool spinning 14% of the
//! CPU under image queries in the server.

use std::sync::Arc;

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

use super::layers::Activation;

/// `y ← act(y + bias[channel] (+ residual))` over an NCHW tensor.
pub struct Epilogue {
    pub bias: Arc<[f32]>,
    pub activation: Activation,
}

impl Epilogue {
    /// Applies it to `y`, which must be a freshly computed, unshared, contiguous f32 tensor.
    pub fn apply(&self, y: &Tensor, residual: Option<&Tensor>) -> candle_core::Result<()> {
        match residual {
            Some(r) => y.inplace_op2(&r.contiguous()?, self),
            None => y.inplace_op1(self),
        }
    }

    fn run(&self, y: &mut [f32], plane: usize, residual: Option<&[f32]>) {
        let c = self.bias.len();
        let body = |(p, out): (usize, &mut [f32])| {
            let b = self.bias[p % c];
            match residual {
                // the sum in candle's order: (y + bias) + residual
                Some(r) => out
                    .iter_mut()
                    .zip(&r[p * plane..(p + 1) * plane])
                    .for_each(|(v, r)| *v = *v + b + r),
                None => out.iter_mut().for_each(|v| *v += b),
            }
            self.activation.apply_slice(out);
        };
        y.par_chunks_mut(plane).enumerate().for_each(body);
    }
}

fn planes(layout: &Layout, bias: usize, op: &str) -> candle_core::Result<usize> {
    let (_, c, h, w) = layout.shape().dims4()?;
    if c != bias {
        candle_core::bail!("{op}: {c} channels but {bias} biases")
    }
    Ok(h * w)
}

fn contiguous_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: output must be contiguous")
    };
    Ok(&mut data[start..end])
}

impl InplaceOp1 for Epilogue {
    fn name(&self) -> &'static str {
        "conv-epilogue"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let name = InplaceOp1::name(self);
        let plane = planes(layout, self.bias.len(), name)?;
        self.run(contiguous_mut(storage, layout, name)?, plane, None);
        Ok(())
    }
}

impl InplaceOp2 for Epilogue {
    fn name(&self) -> &'static str {
        "conv-epilogue-residual"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
    ) -> candle_core::Result<()> {
        let name = InplaceOp2::name(self);
        if src_l.shape() != dst_l.shape() {
            candle_core::bail!(
                "{name}: residual {:?} for output {:?}",
                src_l.shape(),
                dst_l.shape()
            )
        }
        let plane = planes(dst_l, self.bias.len(), name)?;
        let residual = crate::encode::cpu::contiguous_f32(src, src_l, name)?;
        self.run(contiguous_mut(dst, dst_l, name)?, plane, Some(residual));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn matches_candles_ops_bit_for_bit() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let y = (Tensor::randn(0f32, 4.0, (2, 3, 4, 5), &dev)?).contiguous()?;
        let r = Tensor::randn(0f32, 2.0, (2, 3, 4, 5), &dev)?;
        let bias = Tensor::new(&[0.5f32, -1.0, 3.0], &dev)?;
        let epilogue = Epilogue {
            bias: bias.to_vec1::<f32>()?.into(),
            activation: Activation::Relu6,
        };
        let biased = y.broadcast_add(&bias.reshape((1, 3, 1, 1))?)?;
        let want = Activation::Relu6.apply(&biased)?;
        let got = y.copy()?;
        epilogue.apply(&got, None)?;
        assert_eq!(
            got.flatten_all()?.to_vec1::<f32>()?,
            want.flatten_all()?.to_vec1::<f32>()?
        );

        let want = Activation::Relu6.apply(&(&biased + &r)?)?;
        let got = y.copy()?;
        epilogue.apply(&got, Some(&r))?;
        assert_eq!(
            got.flatten_all()?.to_vec1::<f32>()?,
            want.flatten_all()?.to_vec1::<f32>()?
        );

        let wrong = Epilogue {
            bias: vec![0.0; 2].into(),
            activation: Activation::Identity,
        };
        assert!(wrong.apply(&y.copy()?, None).is_err());
        Ok(())
    }
}
