//! Bytes → model input, like torchvision's eval transform: decode (JPEG, PNG, WebP; EXIF
//! orientation; any colour type to 8-bit RGB), resize the shorter side, centre-crop, normalise.

use std::io::Cursor;

use candle_core::{Device, Tensor};
use image::{imageops::FilterType, DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::kit::Preprocess;

/// Refuse images whose decoded size would exceed this many pixels (decompression bombs).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("empty image")]
    Empty,
    #[error("unsupported image format (expected JPEG, PNG or WebP)")]
    Unsupported,
    #[error("image is {width}x{height}, over the {max}-pixel limit")]
    TooLarge { width: u32, height: u32, max: u64 },
    #[error("cannot decode image: {0}")]
    Decode(String),
}

/// Decode to upright 8-bit RGB. Alpha is dropped (as PIL's `convert("RGB")` does); 16-bit,
/// greyscale and CMYK JPEGs are converted.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    match reader.format() {
        Some(image::ImageFormat::Jpeg | image::ImageFormat::Png | image::ImageFormat::WebP) => {}
        _ => return Err(ImageError::Unsupported),
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::TooLarge {
            width,
            height,
            max: MAX_PIXELS,
        });
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8); // RGBA16 at the pixel limit
    decoder
        .set_limits(limits)
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| ImageError::Decode(e.to_string()))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(ImageError::Empty);
    }
    Ok(img.to_rgb8())
}

/// Resize so the shorter side is `resize` (bilinear with antialiasing, like PIL), then take the
/// centre `crop`×`crop` square, with torchvision's size and offset rounding.
pub fn resize_and_crop(img: &RgbImage, p: &Preprocess) -> RgbImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = if w <= h {
        (p.resize, ((p.resize as u64 * h as u64) / w as u64) as u32)
    } else {
        (((p.resize as u64 * w as u64) / h as u64) as u32, p.resize)
    };
    let resized = if (nw, nh) == (w, h) {
        img.clone()
    } else {
        image::imageops::resize(img, nw, nh, FilterType::Triangle)
    };
    let crop = p.crop.min(nw).min(nh);
    let left = ((nw - crop) as f64 / 2.0).round() as u32;
    let top = ((nh - crop) as f64 / 2.0).round() as u32;
    image::imageops::crop_imm(&resized, left, top, crop, crop).to_image()
}

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

/// The whole pipeline for one encoded image.
pub fn prepare(
    bytes: &[u8],
    p: &Preprocess,
    device: &Device,
) -> Result<Tensor, super::super::EncodeError> {
    let rgb = decode_rgb(bytes)?;
    Ok(to_tensor(&resize_and_crop(&rgb, p), p, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(matches!(decode_rgb(&[]), Err(ImageError::Empty)));
        assert!(matches!(
            decode_rgb(b"definitely not an image"),
            Err(ImageError::Unsupported)
        ));
        let good = png(&DynamicImage::new_rgb8(8, 8));
        assert!(matches!(
            decode_rgb(&good[..good.len() / 2]),
            Err(ImageError::Decode(_))
        ));
    }

    #[test]
    fn colour_types_become_rgb() {
        for img in [
            DynamicImage::new_luma8(5, 7),
            DynamicImage::new_rgba8(5, 7),
            DynamicImage::new_rgb16(5, 7),
            DynamicImage::new_luma_a16(5, 7),
        ] {
            let rgb = decode_rgb(&png(&img)).unwrap();
            assert_eq!(rgb.dimensions(), (5, 7));
        }
    }

    #[test]
    fn resize_and_crop_follow_torchvision_sizes() {
        let p = Preprocess::default();
        let img = RgbImage::new(640, 480);
        assert_eq!(resize_and_crop(&img, &p).dimensions(), (224, 224));
        let tall = RgbImage::new(300, 451);
        assert_eq!(resize_and_crop(&tall, &p).dimensions(), (224, 224));
        // smaller than the crop after resizing can't happen for resize >= crop; tiny inputs upscale
        let tiny = RgbImage::new(3, 2);
        assert_eq!(resize_and_crop(&tiny, &p).dimensions(), (224, 224));
    }

    #[test]
    fn normalisation_matches_formula() {
        let p = Preprocess::default();
        let img = RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 128]));
        let t = to_tensor(&img, &p, &Device::Cpu).unwrap();
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((v[4] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((v[8] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-6);
    }
}
