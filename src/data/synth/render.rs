//! Rasterise a scene: a textured, noisy background and anti-aliased (4×4 supersampled) shapes.

use image::{Rgb, RgbImage};

use crate::rng::Rng;

use super::scene::{Object, Shape, COLOURS};

pub const SIDE: u32 = 256;

fn inside(shape: Shape, dx: f32, dy: f32, r: f32) -> bool {
    match shape {
        Shape::Circle => dx * dx + dy * dy <= r * r,
        Shape::Square => dx.abs() <= 0.82 * r && dy.abs() <= 0.82 * r,
        Shape::Diamond => dx.abs() + dy.abs() <= r,
        Shape::Cross => {
            (dx.abs() <= r / 3.0 && dy.abs() <= r) || (dy.abs() <= r / 3.0 && dx.abs() <= r)
        }
        Shape::Triangle => in_polygon(
            &[(0.0, -r), (-0.95 * r, 0.75 * r), (0.95 * r, 0.75 * r)],
            dx,
            dy,
        ),
        Shape::Star => {
            let pts: Vec<(f32, f32)> = (0..10)
                .map(|i| {
                    let radius = if i % 2 == 0 { r } else { 0.42 * r };
                    let a = -std::f32::consts::FRAC_PI_2 + i as f32 * std::f32::consts::PI / 5.0;
                    (radius * a.cos(), radius * a.sin())
                })
                .collect();
            in_polygon(&pts, dx, dy)
        }
    }
}

/// Even-odd rule.
fn in_polygon(pts: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = pts.len() - 1;
    for i in 0..pts.len() {
        let ((xi, yi), (xj, yj)) = (pts[i], pts[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// A muted background (low saturation, so it never reads as an object colour) with one of four
/// textures and per-pixel noise.
fn background(rng: &mut Rng) -> RgbImage {
    let base = rng.range(90.0, 190.0);
    let tint: [f32; 3] = [
        rng.range(-18.0, 18.0),
        rng.range(-18.0, 18.0),
        rng.range(-18.0, 18.0),
    ];
    let texture = rng.below(4);
    let period = rng.range(10.0, 28.0);
    let angle = rng.range(0.0, std::f32::consts::PI);
    let (ca, sa) = (angle.cos(), angle.sin());
    let amp = rng.range(8.0, 22.0);
    let mut img = RgbImage::new(SIDE, SIDE);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (fx, fy) = (x as f32, y as f32);
        let t = match texture {
            0 => 0.0,
            1 => ((fx * ca + fy * sa) / period * std::f32::consts::TAU).sin(),
            2 => {
                if ((fx / period) as i32 + (fy / period) as i32) % 2 == 0 {
                    1.0
                } else {
                    -1.0
                }
            }
            _ => (fx * ca + fy * sa) / SIDE as f32 * 2.0 - 1.0,
        };
        let noise = rng.range(-14.0, 14.0);
        for c in 0..3 {
            px[c] = (base + tint[c] + amp * t + noise).clamp(0.0, 255.0) as u8;
        }
    }
    img
}

pub fn render(objects: &[Object], rng: &mut Rng) -> RgbImage {
    let mut img = background(rng);
    for obj in objects {
        let rgb = COLOURS
            .iter()
            .find(|(n, _)| *n == obj.colour)
            .map(|(_, c)| *c)
            .unwrap_or([128; 3]);
        let jitter: Vec<f32> = (0..3).map(|_| rng.range(-10.0, 10.0)).collect();
        let colour: Vec<f32> = (0..3)
            .map(|c| (rgb[c] as f32 + jitter[c]).clamp(0.0, 255.0))
            .collect();
        let r = obj.size.radius();
        let (x0, x1) = (
            (obj.x - r - 1.0).max(0.0) as u32,
            ((obj.x + r + 1.0) as u32).min(SIDE - 1),
        );
        let (y0, y1) = (
            (obj.y - r - 1.0).max(0.0) as u32,
            ((obj.y + r + 1.0) as u32).min(SIDE - 1),
        );
        for y in y0..=y1 {
            for x in x0..=x1 {
                let mut hits = 0;
                for sy in 0..4 {
                    for sx in 0..4 {
                        let dx = x as f32 + (sx as f32 + 0.5) / 4.0 - obj.x;
                        let dy = y as f32 + (sy as f32 + 0.5) / 4.0 - obj.y;
                        hits += inside(obj.shape, dx, dy, r) as u32;
                    }
                }
                if hits > 0 {
                    let a = hits as f32 / 16.0;
                    let px: &mut Rgb<u8> = img.get_pixel_mut(x, y);
                    for c in 0..3 {
                        px[c] = (a * colour[c] + (1.0 - a) * px[c] as f32).round() as u8;
                    }
                }
            }
        }
    }
    img
}
