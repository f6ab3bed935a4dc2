//! `xmodal synth`: the generated compositional scene benchmark, our always-available stand-in
//! for Flickr30k. 1–3 shapes (6 kinds, 10 colours, 2 sizes) on textured, noisy backgrounds, with 5
//! captions per image mixing attributes, places and relations.
//!
//! Validation and test images each contain at least one colour–shape combination that never
//! appears in training (disjoint sets for val and test), so the benchmark measures composition,
//! not memory. Deterministic by seed: same seed, byte-identical `dataset.jsonl` and PNGs.

mod captions;
mod render;

mod scene;

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use rayon::prelude::*;
use serde::Serialize;

use crate::rng::Rng;
pub use render::SIDE;
pub use scene::{Object, Place, Shape, Size, COLOURS};

use crate::data::Split;

/// Colour–shape combinations held out of training.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HeldOut {
    pub val: Vec<(String, Shape)>,
    pub test: Vec<(String, Shape)>,
}

pub const HELD_OUT_VAL: usize = 6;
pub const HELD_OUT_TEST: usize = 9;

#[derive(Debug, Serialize)]
struct Line<'a> {
    id: &'a str,
    image: String,
    captions: &'a [String],
    split: Split,
    objects: &'a [Object],
}

pub struct Scene {
    pub id: String,
    pub split: Split,
    pub objects: Vec<Object>,
    pub captions: Vec<String>,
    pub image: image::RgbImage,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {message}")]
    Image { path: PathBuf, message: String },
}

pub fn held_out(seed: u64) -> HeldOut {
    let mut combos: Vec<(String, Shape)> = COLOURS
        .iter()
        .flat_map(|(c, _)| Shape::ALL.iter().map(move |s| (c.to_string(), *s)))
        .collect();
    Rng::new(seed ^ 0x5EED_0FC0).shuffle(&mut combos);
    HeldOut {
        val: combos[..HELD_OUT_VAL].to_vec(),
        test: combos[HELD_OUT_VAL..HELD_OUT_VAL + HELD_OUT_TEST].to_vec(),
    }
}

/// Split by position: 8 of every 10 images train, one val, one test.
pub fn split_of(index: usize) -> Split {
    match index % 10 {
        8 => Split::Val,
        9 => Split::Test,
        _ => Split::Train,
    }
}

/// Scene `index` of the benchmark with `seed`; independent of every other scene.
pub fn scene(seed: u64, index: usize, held: &HeldOut) -> Scene {
    let mut rng = Rng::for_item(seed, index as u64);
    let split = split_of(index);
    let train_combos: Vec<(String, Shape)> = COLOURS
        .iter()
        .flat_map(|(c, _)| Shape::ALL.iter().map(move |s| (c.to_string(), *s)))
        .filter(|k| !held.val.contains(k) && !held.test.contains(k))
        .collect();
    let count = 1 + rng.below(3);
    let mut picks: Vec<(String, Shape)> = Vec::new();
    for i in 0..count {
        let pool = match (split, i) {
            (Split::Val, 0) => &held.val,
            (Split::Test, 0) => &held.test,
            _ => &train_combos,
        };
        // no two objects with the same colour and shape: captions must tell them apart
        loop {
            let k = rng.pick(pool).clone();
            if !picks.contains(&k) {
                picks.push(k);
                break;
            }
        }
    }
    rng.shuffle(&mut picks); // the held-out object may be anywhere in the captions
    let place = *rng.pick(&Place::ALL);
    let objects = place_objects(&picks, place, &mut rng);
    let captions = captions::captions(&objects, place, &mut rng);
    let image = render::render(&objects, &mut rng);
    Scene {
        id: format!("synth-{index:06}"),
        split,
        objects,
        captions,
        image,
    }
}

/// Centres inside the central 224×224 crop the encoders see; a lone object goes to `place`,
/// several are spread without overlap.
fn place_objects(picks: &[(String, Shape)], place: Place, rng: &mut Rng) -> Vec<Object> {
    let lo = 16.0;
    let hi = SIDE as f32 - 16.0;
    let mut objects: Vec<Object> = Vec::new();
    for (colour, shape) in picks {
        let colour = COLOURS
            .iter()
            .find(|(c, _)| c == colour)
            .map(|(c, _)| *c)
            .unwrap_or("red");
        let size = if rng.below(2) == 0 {
            Size::Small
        } else {
            Size::Large
        };
        let r = size.radius() + 3.0;
        let (x, y) = if picks.len() == 1 {
            let mid = SIDE as f32 / 2.0;
            let (xr, yr) = match place {
                Place::Left => ((lo + r, mid - 40.0), (mid - 40.0, mid + 40.0)),
                Place::Right => ((mid + 40.0, hi - r), (mid - 40.0, mid + 40.0)),
                Place::Top => ((mid - 40.0, mid + 40.0), (lo + r, mid - 40.0)),
                Place::Bottom => ((mid - 40.0, mid + 40.0), (mid + 40.0, hi - r)),
                Place::Centre => ((mid - 16.0, mid + 16.0), (mid - 16.0, mid + 16.0)),
            };
            (
                rng.range(xr.0, xr.1.max(xr.0)),
                rng.range(yr.0, yr.1.max(yr.0)),
            )
        } else {
            let mut best = (0.0, 0.0);
            let mut best_gap = f32::NEG_INFINITY;
            for _ in 0..64 {
                let cand = (rng.range(lo + r, hi - r), rng.range(lo + r, hi - r));
                let gap = objects
                    .iter()
                    .map(|o| {
                        ((o.x - cand.0).powi(2) + (o.y - cand.1).powi(2)).sqrt()
                            - o.size.radius()
                            - r
                    })
                    .fold(f32::INFINITY, f32::min);
                if gap > 10.0 {
                    best = cand;
                    break;
                }
                if gap > best_gap {
                    best_gap = gap;
                    best = cand;
                }
            }
            best
        };
        objects.push(Object {
            shape: *shape,
            colour,
            size,
            x,
            y,
        });
    }
    objects
}

/// Write `count` scenes under `out`: `images/*.png`, `dataset.jsonl` (ingestible as jsonl) and
/// `heldout.json`. `dataset.jsonl` is written last and renamed into place, so an interrupted run
/// never leaves a dataset that looks complete.
pub fn generate(
    out: &Path,
    seed: u64,
    count: usize,
    progress: impl Fn(u64) + Sync,
) -> Result<HeldOut, SynthError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SynthError::Io { path, source }
    };
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(io(&images))?;
    let held = held_out(seed);
    let lines: Vec<String> = (0..count)
        .into_par_iter()
        .map(|i| {
            let s = scene(seed, i, &held);
            let file = format!("{}.png", s.id);
            let path = images.join(&file);
            write_png(&s.image, &path)?;
            progress(1);
            let line = Line {
                id: &s.id,
                image: format!("images/{file}"),
                captions: &s.captions,
                split: s.split,
                objects: &s.objects,
            };
            Ok(serde_json::to_string(&line).expect("scene serialises"))
        })
        .collect::<Result<_, SynthError>>()?;
    let held_path = out.join("heldout.json");
    std::fs::write(
        &held_path,
        serde_json::to_string_pretty(&held).expect("serialises") + "\n",
    )
    .map_err(io(&held_path))?;
    let dataset = out.join("dataset.jsonl");
    crate::fsutil::write_atomic_with(&dataset, |f| {
        lines.iter().try_for_each(|l| writeln!(f, "{l}"))
    })
    .map_err(io(&dataset))?;
    Ok(held)
}

fn write_png(img: &image::RgbImage, path: &Path) -> Result<(), SynthError> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| SynthError::Image {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    std::fs::write(path, bytes).map_err(|source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_combos_never_reach_training() {
        let held = held_out(3);
        for i in 0..400 {
            let s = scene(3, i, &held);
            let combos: Vec<(String, Shape)> = s
                .objects
                .iter()
                .map(|o| (o.colour.to_string(), o.shape))
                .collect();
            let has = |set: &[(String, Shape)]| combos.iter().any(|c| set.contains(c));
            match s.split {
                Split::Train => assert!(
                    !has(&held.val) && !has(&held.test),
                    "train scene {i} has a held-out combo"
                ),
                Split::Val => assert!(has(&held.val) && !has(&held.test)),
                Split::Test => assert!(has(&held.test) && !has(&held.val)),
            }
            assert_eq!(s.captions.len(), 5);
            let mut unique = s.captions.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 5, "captions repeat in scene {i}");
            // every object is named in at least one caption
            for o in &s.objects {
                assert!(
                    s.captions.iter().any(|c| c.contains(&o.name())),
                    "scene {i}: {} unnamed",
                    o.name()
                );
            }
        }
    }

    #[test]
    fn relations_in_captions_match_geometry() {
        let held = held_out(5);
        for i in 0..300 {
            let s = scene(5, i, &held);
            if let [a, b] = s.objects.as_slice() {
                let left = format!("a {} left of a {}", a.name(), b.name())
                    .replace("a orange", "an orange");
                if s.captions.contains(&left) {
                    assert!(a.x < b.x, "scene {i}: {left} but x {} >= {}", a.x, b.x);
                }
            }
        }
    }
}
