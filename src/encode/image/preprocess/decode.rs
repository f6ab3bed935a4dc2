//! Decoding within limits: every limit is checked from the header before a pixel is decoded, and
//! what a decode holds is counted in /metrics while it lives.

use std::io::Cursor;

use image::{metadata::Orientation, DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

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
pub(super) struct InFlight(u64);

impl InFlight {
    pub(super) fn new(bytes: u64) -> Self {
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
pub(super) fn decode_cost(
    width: u32,
    height: u32,
    color: image::ColorType,
) -> Result<u64, ImageError> {
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
    pub(super) stored: RgbImage,
    pub(super) orientation: Orientation,
    pub(super) _in_flight: InFlight,
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

pub(super) fn rotates(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Stored pixels made upright.
pub(super) fn orient(img: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return img;
    }
    let mut d = DynamicImage::ImageRgb8(img);
    d.apply_orientation(orientation);
    d.into_rgb8()
}
