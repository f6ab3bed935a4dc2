//! Depthwise convolution from candle ops, for devices without our CPU kernel (a GPU).
//!
//! candle runs a grouped convolution as one convolution per group plus a concatenation: the kit
//! checkpoints have 8,960 depthwise channels in EfficientNet-Lite0's 16 depthwise layers and
//! 7,136 in MobileNetV2's 17, so a forward pass is thousands of tiny convolutions, each several
//! kernel launches on a GPU. Here the output is the sum over the k×k taps of a shifted (and, for
//! stride 2, subsampled) view of the padded input times that tap's per-channel weight: a few
//! ops per tap (9 or 25 taps) whatever the channel count, data staying on the device.
//! Measured on the CPU's generic path (`XMODAL_GENERIC_DEVICE_PATH=1 xmodal embed throughput
//! --batches 8`, debug build, 2-core AMD EPYC, old and new binaries alternating twice): Lite0
//! 2.0–2.7 → 14.7–16.2 images/s, MobileNetV2 3.0–3.1 → 15.4–20.6.

use candle_core::{Tensor, D};

/// `x`: `[N, C, H, W]`; `weight`: `[C, 1, k, k]`; `pads`: [top, bottom, left, right].
pub fn depthwise_conv(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    pads: [usize; 4],
) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let k = weight.dim(D::Minus1)?;
    let [top, bottom, left, right] = pads;
    let (oh, ow) = crate::encode::cpu::conv_output_size(h, w, k, stride, pads);
    // pad so every tap's strided window is in range: rows up to (oh-1)·stride + k, and to a
    // multiple of the stride past each tap's offset so the subsampling reshape is exact
    let rows = (oh - 1) * stride + k + stride;
    let cols = (ow - 1) * stride + k + stride;
    let x = x
        .pad_with_zeros(2, top, rows.saturating_sub(h + top).max(bottom))?
        .pad_with_zeros(3, left, cols.saturating_sub(w + left).max(right))?;
    let taps = weight.reshape((c, k * k))?;
    let mut out: Option<Tensor> = None;
    for dy in 0..k {
        let band = subsample(&x.narrow(2, dy, oh * stride)?, 2, oh, stride)?;
        for dx in 0..k {
            let window = subsample(&band.narrow(3, dx, ow * stride)?, 3, ow, stride)?;
            let tap = taps.narrow(1, dy * k + dx, 1)?.reshape((1, c, 1, 1))?;
            let term = window.broadcast_mul(&tap)?;
            out = Some(match out {
                Some(acc) => (acc + term)?,
                None => term,
            });
        }
    }
    out.expect("k ≥ 1").reshape((n, c, oh, ow))
}

/// Every `stride`-th element along `dim`, keeping `len` of them (the input holds `len·stride`).
fn subsample(x: &Tensor, dim: usize, len: usize, stride: usize) -> candle_core::Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    let mut shape = x.dims().to_vec();
    shape[dim] = len;
    shape.insert(dim + 1, stride);
    x.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The same numbers as candle's grouped convolution, for the shapes the kit CNNs use:
    /// 3×3 and 5×5, stride 1 and 2, PyTorch-symmetric and TF-"same" (asymmetric) padding.
    #[test]
    fn matches_candles_grouped_convolution() {
        let dev = Device::Cpu;
        for (k, stride, pads, h, w) in [
            (3, 1, [1, 1, 1, 1], 9, 7),
            (3, 2, [1, 1, 1, 1], 10, 9),
            (5, 2, [1, 2, 1, 2], 14, 14),
            (5, 1, [2, 2, 2, 2], 7, 8),
            (3, 2, [0, 1, 0, 1], 8, 8),
        ] {
            let c = 6;
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap();
            let weight = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
            let [t, b, l, r] = pads;
            let expected = x
                .pad_with_zeros(2, t, b)
                .unwrap()
                .pad_with_zeros(3, l, r)
                .unwrap()
                .conv2d(&weight, 0, stride, 1, c)
                .unwrap();
            let ours = depthwise_conv(&x, &weight, stride, pads).unwrap();
            assert_eq!(
                ours.dims(),
                expected.dims(),
                "k {k} stride {stride} pads {pads:?}"
            );
            let diff = (ours - expected)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "k {k} stride {stride} pads {pads:?}: {diff}");
        }
    }
}
