//! Decode limits, crop geometry and resampling against their references.

use std::io::Cursor;

use candle_core::Device;
use fast_image_resize::{
    images::{Image, ImageRef},
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
};
use image::{metadata::Orientation, DynamicImage, RgbImage};

use super::{
    decode::{decode_cost, orient, InFlight},
    geometry::{py_round, resample},
    *,
};
use crate::kit::{Preprocess, Resample};

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
    for (w, h, filter) in [
        (640, 480, Resample::Bilinear),
        (300, 451, Resample::Bilinear),
        (257, 900, Resample::Bilinear),
        (33, 17, Resample::Bilinear),
        (500, 500, Resample::Bilinear),
        (640, 480, Resample::Bicubic),
        (257, 900, Resample::Bicubic),
        (33, 17, Resample::Bicubic),
    ] {
        let p = Preprocess {
            resample: filter,
            ..Default::default()
        };
        let img = noise(w, h);
        let (nw, nh) = if w <= h {
            (256, 256 * h / w)
        } else {
            (256 * w / h, 256)
        };
        let full = resample(&img, (nw, nh), (0.0, 0.0, w as f64, h as f64), p.resample);
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
        // fixed-point rounding of the window's first taps; the cubic's negative lobes double
        // it on pure noise
        let allowed = if filter == Resample::Bicubic { 2 } else { 1 };
        assert!(
            max <= allowed,
            "{w}x{h} {filter:?}: max difference {max} levels"
        );
    }
}

/// The generated benchmark renders 256 × 256 scenes: resizing them to 256 is the identity with
/// either filter, so moving a model to bicubic leaves the trained heads' features unchanged.
#[test]
fn a_256_square_crop_is_the_same_with_either_filter() {
    let img = noise(256, 256);
    let crop = |resample| {
        resize_and_crop(
            &img,
            &Preprocess {
                resample,
                ..Default::default()
            },
        )
    };
    let expected = image::imageops::crop_imm(&img, 16, 16, 224, 224).to_image();
    assert!(crop(Resample::Bilinear) == expected);
    assert!(crop(Resample::Bicubic) == expected);
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
