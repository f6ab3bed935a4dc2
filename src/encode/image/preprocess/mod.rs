//! Bytes → model input, like torchvision's eval transform: decode (JPEG, PNG, WebP; EXIF
//! orientation; any colour type to 8-bit RGB), resize the shorter side, centre-crop, normalise.
//!
//! Every step's memory is bounded by construction, whatever the image's shape:
//! - the header is read first: more than [`MAX_PIXELS`] pixels, a side over [`MAX_ASPECT_RATIO`]
//!   times the other, or a decode needing more than [`DECODE_BUDGET_BYTES`] (the decoder's
//!   output plus the 8-bit RGB copy) is refused before a pixel is decoded;
//! - resize-then-crop never builds the resized image: only the crop's window is computed
//!   (fast_image_resize with a fractional source box, the sample positions of resizing the whole
//!   image and cropping), so a 15000 × 750 panorama costs a 224 × 224 output, not 5120 × 256,
//!   and the 60000 × 1 PNG that once made a 15 M × 256 intermediate would cost the same;
//! - the EXIF orientation is applied to outputs (the crop, a thumbnail), not to the full image;
//! - thumbnails are computed at their output size.
//!
//! `decode.rs` reads and limits; `geometry.rs` computes the crop and thumbnails.

mod decode;
mod geometry;
#[cfg(test)]
mod tests;

use candle_core::{Device, Tensor};
use image::RgbImage;

pub use decode::{
    decode, decode_rgb, Decoded, ImageError, DECODE_BUDGET_BYTES, MAX_ASPECT_RATIO, MAX_PIXELS,
};
pub use geometry::resize_and_crop;

use crate::kit::Preprocess;

/// `[3, H, W]` float tensor, `(x/255 - mean) / std` per channel.
pub fn to_tensor(img: &RgbImage, p: &Preprocess, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (px[c] as f32 / 255.0 - p.mean[c]) / p.std[c];
        }
    }
    Tensor::from_vec(data, (3, h as usize, w as usize), device)
}
