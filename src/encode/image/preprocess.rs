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

use std::io::Cursor;

use candle_core::{Device, Tensor};
use fast_image_resize::{
    images::{Image, ImageRef},
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
};
use image::{metadata::Orientation, DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::kit::Preprocess;

/// Refuse images whose decoded size would exceed this many pixels (decompression bombs).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Refuse images whose longer side is more than this many times the shorter (a 60000 × 1 PNG is
/// no photo; phone panoramas are ~4-10:1).
pub const MAX_ASPECT_RATIO: u32 = 20;

/// The most memory one decode may hold: the decoder's output buffer plus the 8-bit RGB copy
/// when the image is not 8-bit RGB already. An RGB JPEG at [`MAX_PIXELS`] needs 192 MiB; a
/// 16-bit RGBA PNG needs 11 bytes a pixel, so it is refused above ~24 MP.
pub const DECODE_BUDGET_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    #[error("empty image")]
    Empty,
    #[error("unsupported image format (expected JPEG, PNG or WebP)")]
    Unsupported,
    #[error("image is {width}x{height}, over the {max}-pixel limit")]
    TooLarge { width: u32, height: u32, max: u64 },
    #[error("image is {width}x{height}: decoding it needs {needed} bytes, over the {budget}-byte budget of one decode (16-bit or alpha images need up to 11 bytes a pixel)")]
    OverBudget {
        width: u32,
        height: u32,
        needed: u64,
        budget: u64,
    },
    #[error("image is {width}x{height}: one side is more than {max} times the other, which no encoder can use (crop it first)")]
    AspectRatio { width: u32, height: u32, max: u32 },
    #[error("cannot decode image: {0}")]
    Decode(String),
}

/// Bytes of decoded images alive right now (from headers, before each decode), for /metrics.
struct InFlight(u64);

impl InFlight {
    fn new(bytes: u64) -> Self {
        metrics::gauge!("xmodal_decode_bytes_in_flight").increment(bytes as f64);
        Self(bytes)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("xmodal_decode_bytes_in_flight").decrement(self.0 as f64);
    }
}

/// What decoding an image of this header costs in bytes (decoder output, plus the RGB copy unless
/// it is RGB already), or why it is refused, before a pixel is decoded.
fn decode_cost(width: u32, height: u32, color: image::ColorType) -> Result<u64, ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Empty);
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(ImageError::TooLarge {
            width,
            height,
            max: MAX_PIXELS,
        });
    }
    let (long, short) = (width.max(height), width.min(height));
    if u64::from(long) > u64::from(short) * u64::from(MAX_ASPECT_RATIO) {
        return Err(ImageError::AspectRatio {
            width,
            height,
            max: MAX_ASPECT_RATIO,
        });
    }
    let converts = color != image::ColorType::Rgb8;
    let needed = pixels * color.bytes_per_pixel() as u64 + if converts { 3 * pixels } else { 0 };
    if needed > DECODE_BUDGET_BYTES {
        return Err(ImageError::OverBudget {
            width,
            height,
            needed,
            budget: DECODE_BUDGET_BYTES,
        });
    }
    Ok(needed)
}

/// A decoded image: 8-bit RGB pixels as stored, and the EXIF orientation that makes them
/// upright. Orientation is applied to outputs (model input, thumbnails), never to the full image,
/// so a rotated photo costs no second copy of its pixels.
pub struct Decoded {
    stored: RgbImage,
    orientation: Orientation,
    _in_flight: InFlight,
}

/// Decode to 8-bit RGB. Alpha is dropped (as PIL's `convert("RGB")` does); 16-bit, greyscale and
/// CMYK JPEGs are converted. Animated WebP: the first frame. Every limit is checked from the
/// header before decoding.
pub fn decode(bytes: &[u8]) -> Result<Decoded, ImageError> {
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
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let in_flight = InFlight::new(decode_cost(width, height, decoder.color_type())?);
    let mut limits = Limits::default();
    limits.max_alloc = Some(DECODE_BUDGET_BYTES);
    decoder
        .set_limits(limits)
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| ImageError::Decode(e.to_string()))?;
    // into_rgb8 hands the buffer over without a copy when the image is RGB already
    let stored = img.into_rgb8();
    if stored.width() == 0 || stored.height() == 0 {
        return Err(ImageError::Empty);
    }
    Ok(Decoded {
        stored,
        orientation,
        _in_flight: in_flight,
    })
}

/// Decode to upright 8-bit RGB: the whole image (see [`Decoded`] for bounded outputs).
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    Ok(decode(bytes)?.into_upright())
}

/// A box `(left, top, width, height)` in source pixels (fractional).
type SourceBox = (f64, f64, f64, f64);

fn rotates(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

impl Decoded {
    /// Width and height as displayed (after the EXIF orientation).
    pub fn dimensions(&self) -> (u32, u32) {
        let (w, h) = self.stored.dimensions();
        if rotates(self.orientation) {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// The model's input pixels: the upright image resized and centre-cropped as torchvision
    /// does ([`resize_and_crop`]), computed in the stored frame and oriented at the end.
    pub fn model_input(&self, p: &Preprocess) -> RgbImage {
        let (uw, uh) = self.dimensions();
        let (crop, upright_box) = crop_window(uw, uh, p);
        let stored_box = self.to_stored_box(upright_box);
        orient(
            resample(&self.stored, (crop, crop), stored_box),
            self.orientation,
        )
    }

    /// Upright, fitting within `max_side`×`max_side` (never enlarged), computed at its output
    /// size.
    pub fn thumbnail(&self, max_side: u32) -> RgbImage {
        let (uw, uh) = self.dimensions();
        let scale = (max_side as f64 / uw.max(uh) as f64).min(1.0);
        let (tw, th) = (
            ((uw as f64 * scale).round() as u32).max(1),
            ((uh as f64 * scale).round() as u32).max(1),
        );
        let (sw, sh) = self.stored.dimensions();
        let out = if rotates(self.orientation) {
            (th, tw)
        } else {
            (tw, th)
        };
        let whole = (0.0, 0.0, sw as f64, sh as f64);
        orient(resample(&self.stored, out, whole), self.orientation)
    }

    /// The whole image, upright (a full-size copy when it is rotated).
    pub fn into_upright(self) -> RgbImage {
        orient(self.stored, self.orientation)
    }

    /// An upright box in stored coordinates: its two corners go through the inverse of the
    /// orientation, as `DynamicImage::apply_orientation` defines it (rotations clockwise, then a
    /// horizontal flip).
    fn to_stored_box(&self, b: SourceBox) -> SourceBox {
        let (sw, sh) = (self.stored.width() as f64, self.stored.height() as f64);
        let inverse = |ux: f64, uy: f64| -> (f64, f64) {
            match self.orientation {
                Orientation::NoTransforms => (ux, uy),
                Orientation::Rotate90 => (uy, sh - ux),
                Orientation::Rotate180 => (sw - ux, sh - uy),
                Orientation::Rotate270 => (sw - uy, ux),
                Orientation::FlipHorizontal => (sw - ux, uy),
                Orientation::FlipVertical => (ux, sh - uy),
                Orientation::Rotate90FlipH => (uy, ux),
                Orientation::Rotate270FlipH => (sw - uy, sh - ux),
            }
        };
        let (x0, y0) = inverse(b.0, b.1);
        let (x1, y1) = inverse(b.0 + b.2, b.1 + b.3);
        (x0.min(x1), y0.min(y1), (x1 - x0).abs(), (y1 - y0).abs())
    }
}

/// Stored pixels made upright.
fn orient(img: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return img;
    }
    let mut d = DynamicImage::ImageRgb8(img);
    d.apply_orientation(orientation);
    d.into_rgb8()
}

/// Python's `round` (ties to even), which torchvision's centre crop uses for its offsets.
fn py_round(x: f64) -> u32 {
    x.round_ties_even() as u32
}

/// torchvision's Resize(resize) + CenterCrop(crop) on a `w`×`h` image, as the crop's side and its
/// box in source pixels: the shorter side becomes `resize` (the other truncates), and offsets
/// round like Python's `round`.
fn crop_window(w: u32, h: u32, p: &Preprocess) -> (u32, SourceBox) {
    let (nw, nh) = if w <= h {
        (p.resize, ((p.resize as u64 * h as u64) / w as u64) as u32)
    } else {
        (((p.resize as u64 * w as u64) / h as u64) as u32, p.resize)
    };
    let crop = p.crop.min(nw).min(nh);
    let left = py_round((nw - crop) as f64 / 2.0);
    let top = py_round((nh - crop) as f64 / 2.0);
    let (sx, sy) = (w as f64 / nw as f64, h as f64 / nh as f64);
    let source_box = (
        left as f64 * sx,
        top as f64 * sy,
        crop as f64 * sx,
        crop as f64 * sy,
    );
    (crop, source_box)
}

/// Resize so the shorter side is `resize` (PIL's antialiased bilinear), then take the centre
/// `crop`×`crop` square. Only the crop's pixels are computed, so the work and memory are those of
/// a `crop`×`crop` output for any shape.
pub fn resize_and_crop(img: &RgbImage, p: &Preprocess) -> RgbImage {
    let (crop, source_box) = crop_window(img.width(), img.height(), p);
    resample(img, (crop, crop), source_box)
}

/// A source box of `img` resampled (PIL's antialiased bilinear) to `out` pixels, at the sample
/// positions the whole image's resize would use. fast_image_resize runs the vertical pass first
/// for 8-bit pixels: its intermediate is the box's source columns × `out.1` rows.
fn resample(img: &RgbImage, out: (u32, u32), source_box: SourceBox) -> RgbImage {
    let (w, h) = img.dimensions();
    let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3)
        .expect("an RgbImage's buffer is w*h*3 bytes");
    let mut dst = Image::new(out.0, out.1, PixelType::U8x3);
    let (left, top, bw, bh) = source_box;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(left, top, bw, bh);
    let mut resizer = Resizer::new();
    if crate::simd::portable_only() {
        // SAFETY: `None` selects the portable code, which every CPU runs.
        unsafe { resizer.set_cpu_extensions(fast_image_resize::CpuExtensions::None) };
    }
    resizer
        .resize(&src, &mut dst, &options)
        .expect("same pixel type on both sides and a box inside the image");
    RgbImage::from_raw(out.0, out.1, dst.into_vec()).expect("U8x3 output is w*h*3 bytes")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    /// Deterministic noise, so resampling differences show.
    fn noise(w: u32, h: u32) -> RgbImage {
        let mut state = 0x9e37_79b9u32;
        RgbImage::from_fn(w, h, |_, _| {
            let mut px = [0u8; 3];
            for c in &mut px {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *c = (state >> 24) as u8;
            }
            image::Rgb(px)
        })
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
    fn shapes_over_the_limits_are_refused_from_the_header() {
        let wide = png(&DynamicImage::new_rgb8(60_000, 1));
        assert!(matches!(
            decode_rgb(&wide),
            Err(ImageError::AspectRatio {
                width: 60_000,
                height: 1,
                ..
            })
        ));
        let tall = png(&DynamicImage::new_luma8(2, 41));
        assert!(matches!(
            decode_rgb(&tall),
            Err(ImageError::AspectRatio { .. })
        ));
        // exactly at the ratio is fine
        assert!(decode_rgb(&png(&DynamicImage::new_luma8(2, 40))).is_ok());
        use image::ColorType::{Rgb8, Rgba16, Rgba8};
        // a 16-bit RGBA square of 27 MP needs 11 bytes a pixel: over the budget
        assert!(matches!(
            decode_cost(5200, 5200, Rgba16),
            Err(ImageError::OverBudget { .. })
        ));
        // the largest RGB JPEG fits; RGBA pays for its RGB copy
        assert_eq!(decode_cost(8192, 8192, Rgb8).unwrap(), 3 * 8192 * 8192);
        assert_eq!(decode_cost(100, 10, Rgba8).unwrap(), 7 * 1000);
        assert!(matches!(
            decode_cost(8193, 8192, Rgb8),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(decode_cost(0, 5, Rgb8), Err(ImageError::Empty)));
    }

    #[test]
    fn resize_and_crop_follow_torchvision_sizes() {
        let p = Preprocess::default();
        // (the 60000 × 1 shapes are refused at decode; resampling them is still only the crop)
        for (w, h) in [
            (640, 480),
            (300, 451),
            (3, 2),
            (1, 1),
            (20, 1),
            (1, 20),
            (60_000, 1),
            (1, 60_000),
        ] {
            let img = noise(w, h);
            assert_eq!(
                resize_and_crop(&img, &p).dimensions(),
                (224, 224),
                "{w}x{h}"
            );
        }
    }

    /// Computing only the crop's window gives the pixels of resizing the whole image (same
    /// resampler) and then cropping, for both orientations and odd margins.
    #[test]
    fn the_crop_window_equals_resizing_everything_then_cropping() {
        let p = Preprocess::default();
        for (w, h) in [(640, 480), (300, 451), (257, 900), (33, 17), (500, 500)] {
            let img = noise(w, h);
            let (nw, nh) = if w <= h {
                (256, 256 * h / w)
            } else {
                (256 * w / h, 256)
            };
            let full = resample(&img, (nw, nh), (0.0, 0.0, w as f64, h as f64));
            let left = py_round((nw - 224) as f64 / 2.0);
            let top = py_round((nh - 224) as f64 / 2.0);
            let expected = image::imageops::crop_imm(&full, left, top, 224, 224).to_image();
            let ours = resize_and_crop(&img, &p);
            let max = ours
                .as_raw()
                .iter()
                .zip(expected.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(max <= 1, "{w}x{h}: max difference {max} levels");
        }
    }

    #[test]
    fn python_rounding_for_crop_offsets() {
        assert_eq!(py_round(0.5), 0);
        assert_eq!(py_round(1.5), 2);
        assert_eq!(py_round(16.0), 16);
    }

    fn decoded(img: RgbImage, orientation: Orientation) -> Decoded {
        Decoded {
            stored: img,
            orientation,
            _in_flight: InFlight::new(0),
        }
    }

    #[test]
    fn thumbnails_fit_and_never_enlarge() {
        let up = Orientation::NoTransforms;
        assert_eq!(
            decoded(noise(400, 100), up).thumbnail(64).dimensions(),
            (64, 16)
        );
        assert_eq!(
            decoded(noise(20, 1), up).thumbnail(256).dimensions(),
            (20, 1)
        );
        assert_eq!(decoded(noise(1, 20), up).thumbnail(8).dimensions(), (1, 8));
        let rotated = decoded(noise(400, 100), Orientation::Rotate90);
        assert_eq!(rotated.dimensions(), (100, 400));
        assert_eq!(rotated.thumbnail(64).dimensions(), (16, 64));
    }

    /// Orienting the crop (what `model_input` does) gives the pixels of orienting the whole image
    /// and then resizing and cropping, for all eight EXIF orientations.
    #[test]
    fn orientation_applied_to_the_crop_equals_orienting_first() {
        use Orientation::*;
        let p = Preprocess::default();
        for (w, h) in [(640, 480), (301, 517)] {
            let img = noise(w, h);
            for o in [
                NoTransforms,
                Rotate90,
                Rotate180,
                Rotate270,
                FlipHorizontal,
                FlipVertical,
                Rotate90FlipH,
                Rotate270FlipH,
            ] {
                let expected = resize_and_crop(&orient(img.clone(), o), &p);
                let ours = decoded(img.clone(), o).model_input(&p);
                let diffs: Vec<u8> = ours
                    .as_raw()
                    .iter()
                    .zip(expected.as_raw())
                    .map(|(a, b)| a.abs_diff(*b))
                    .collect();
                let max = diffs.iter().copied().max().unwrap();
                let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
                // the passes run in the other order for rotations: 8-bit rounding may differ by 1
                assert!(
                    max <= 1 && mean < 0.5,
                    "{w}x{h} {o:?}: max {max}, mean {mean}"
                );
            }
        }
    }

    /// The SIMD resampler and its portable fallback agree.
    #[test]
    fn portable_resampler_matches_the_dispatched_one() {
        let img = noise(333, 217);
        let src = ImageRef::new(333, 217, img.as_raw(), PixelType::U8x3).unwrap();
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
            .crop(10.5, 3.25, 300.0, 200.0);
        let run = |portable: bool| {
            let mut dst = Image::new(224, 224, PixelType::U8x3);
            let mut resizer = Resizer::new();
            if portable {
                unsafe { resizer.set_cpu_extensions(fast_image_resize::CpuExtensions::None) };
            }
            resizer.resize(&src, &mut dst, &options).unwrap();
            dst.into_vec()
        };
        let (simd, portable) = (run(false), run(true));
        let max = simd
            .iter()
            .zip(&portable)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(max <= 1, "SIMD vs portable: {max} levels");
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
