//! Shared plumbing of our CPU kernels (custom candle ops).

use candle_core::{CpuStorage, Layout};

/// The f32 values an op's input layout covers, which must be contiguous.
pub fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: input must be contiguous")
    };
    Ok(&data[start..end])
}

/// A row-wise op's input: the contiguous f32 `[rows, width]` matrix it must be, and its row
/// count; any other width is an error naming the op.
pub fn contiguous_rows<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    width: usize,
    op: &str,
) -> candle_core::Result<(&'a [f32], usize)> {
    let x = contiguous_f32(storage, layout, op)?;
    let (rows, k) = layout.shape().dims2()?;
    if k != width {
        candle_core::bail!("{op}: input has {k} features, the layer {width}")
    }
    Ok((x, rows))
}

/// A convolution's output height and width for a `h`×`w` input, `pads` = [top, bottom, left,
/// right].
pub fn conv_output_size(
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    pads: [usize; 4],
) -> (usize, usize) {
    let [t, b, l, r] = pads;
    (
        (h + t + b - kernel) / stride + 1,
        (w + l + r - kernel) / stride + 1,
    )
}

/// Output columns `ox` whose input column `ox·stride + k − pad_left` lies inside a row of
/// `width`: the half-open range `lo..hi` (clamped to `out_width`).
pub fn valid_columns(
    width: usize,
    out_width: usize,
    k: usize,
    stride: usize,
    pad_left: usize,
) -> (usize, usize) {
    let lo = pad_left.saturating_sub(k).div_ceil(stride);
    let hi = (width + pad_left)
        .saturating_sub(k)
        .div_ceil(stride)
        .min(out_width);
    (lo, hi)
}
