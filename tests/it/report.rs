//! Figures: the PNGs decode, every series is drawn in its colour, ground truth is framed in green
//! only where a retrieval is relevant, thumbnails are the images retrieved, and bad inputs are
//! refused with the file named.

use std::path::{Path, PathBuf};

use crate::common::{kit_model, tempdir, xmodal};
use plotters::style::{Color, Palette, Palette99};
use xmodal::{
    eval::RecallCurve,
    report::{
        charts::{recall_curves, training_curves, CurveSeries, TrainingSeries},
        font,
        grid::{draw_grid, Cell, Retrieved, Row},
    },
};

fn models_dir() -> PathBuf {
    kit_model("dejavu-sans").parent().unwrap().to_path_buf()
}

fn rgb_count(img: &image::RgbImage, xs: std::ops::Range<u32>, rgb: [u8; 3]) -> usize {
    img.enumerate_pixels()
        .filter(|(x, _, p)| xs.contains(x) && p.0 == rgb)
        .count()
}

fn palette(i: usize) -> [u8; 3] {
    let c = Palette99::pick(i).to_rgba();
    [c.0, c.1, c.2]
}

fn curve(lift: f64) -> RecallCurve {
    let at = |k: usize| (10.0 + lift + 1.5 * k as f64).min(100.0);
    RecallCurve {
        k: (1..=50).collect(),
        i2t: (1..=50).map(at).collect(),
        t2i: (1..=50).map(|k| at(k) - 5.0).collect(),
    }
}

#[test]
fn recall_chart_draws_every_model_in_both_panels() {
    font::register(&models_dir()).unwrap();
    let out = tempdir("report-recall").join("recall.png");
    let series = [
        CurveSeries {
            name: "triplet".into(),
            curve: curve(0.0),
        },
        CurveSeries {
            name: "hardest".into(),
            curve: curve(25.0),
        },
    ];
    recall_curves(&out, &series).unwrap();
    let img = image::open(&out).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1200, 500));
    for i in 0..2 {
        for panel in [0..600, 600..1200] {
            let n = rgb_count(&img, panel.clone(), palette(i));
            assert!(n > 200, "series {i} has {n} pixels in {panel:?}");
        }
    }
    // a colour no series uses is absent
    assert_eq!(rgb_count(&img, 0..1200, palette(5)), 0);
}

#[test]
fn training_chart_and_empty_inputs() {
    font::register(&models_dir()).unwrap();
    let dir = tempdir("report-training");
    let run = |name: &str, base: f64| TrainingSeries {
        name: name.into(),
        epochs: (1..=6)
            .map(|e| (e, Some(base / e as f64), 100.0 + 10.0 * e as f64))
            .collect(),
    };
    let out = dir.join("training.png");
    training_curves(&out, &[run("a", 5.0), run("b", 9.0)]).unwrap();
    let img = image::open(&out).unwrap().to_rgb8();
    assert!(rgb_count(&img, 0..600, palette(1)) > 100);
    // nothing to plot is an error, and no file appears
    let empty = dir.join("empty.png");
    assert!(training_curves(&empty, &[]).is_err());
    assert!(!empty.exists());
}

fn solid_png(path: &Path, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(64, 48, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

#[test]
fn grid_shows_retrieved_images_and_frames_only_ground_truth() {
    font::register(&models_dir()).unwrap();
    let dir = tempdir("report-grid");
    let (red, blue) = (dir.join("red.png"), dir.join("blue.png"));
    solid_png(&red, [200, 20, 20]);
    solid_png(&blue, [20, 20, 200]);
    let row = |relevant_first: bool| Row {
        query: Cell::Text("a red square in the middle of a long caption that wraps".into()),
        hits: vec![
            Retrieved {
                cell: Cell::Image(red.clone()),
                score: 0.91,
                relevant: relevant_first,
            },
            Retrieved {
                cell: Cell::Image(blue.clone()),
                score: 0.42,
                relevant: false,
            },
            Retrieved {
                cell: Cell::Image(dir.join("missing.png")),
                score: 0.1,
                relevant: false,
            },
        ],
    };
    let green = [0, 150, 60];
    let out = dir.join("grid.png");
    draw_grid(&out, "test grid", &[row(true), row(false)]).unwrap();
    let img = image::open(&out).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    assert!(w > 600 && h > 2 * 150, "{w}x{h}");
    // thumbnails are the retrieved images: two rows of each colour
    for rgb in [[200, 20, 20], [20, 20, 200]] {
        let n = rgb_count(&img, 0..w, rgb);
        assert!(n >= 2 * 150 * 130, "{rgb:?}: {n} pixels"); // less the frames drawn over them
    }
    // the ground-truth frame is green; a figure without ground truth in view has none
    assert!(rgb_count(&img, 0..w, green) > 4 * 150 * 4);
    draw_grid(&out, "no ground truth", &[row(false)]).unwrap();
    let img = image::open(&out).unwrap().to_rgb8();
    assert_eq!(rgb_count(&img, 0..img.width(), green), 0);
    // the title is drawn: dark pixels in the top band
    let dark = img
        .enumerate_pixels()
        .filter(|(_, y, p)| *y < 35 && p.0.iter().all(|&c| c < 80))
        .count();
    assert!(dark > 50, "{dark}");
}

#[test]
fn cli_refuses_results_without_curves_and_broken_logs() {
    let dir = tempdir("report-cli");
    let models = models_dir();
    let m = models.to_str().unwrap();
    let old = dir.join("old.json");
    std::fs::write(&old, r#"{"i2t": {"r1": 1.0}, "t2i": {"r1": 2.0}}"#).unwrap();
    let out = dir.join("x.png");
    let (ok, _, err) = xmodal(&[
        "--models-dir",
        m,
        "report",
        "recall",
        "--out",
        out.to_str().unwrap(),
        old.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("recall_curve") && err.contains("old.json"),
        "{err}"
    );
    let heads = dir.join("heads");
    std::fs::create_dir_all(&heads).unwrap();
    std::fs::write(
        heads.join("train_log.jsonl"),
        "{\"epoch\":1,\"loss\":2.0,\"rsum\":100.0}\n{\"epoch\":2}\n",
    )
    .unwrap();
    let (ok, _, err) = xmodal(&[
        "--models-dir",
        m,
        "report",
        "training",
        "--out",
        out.to_str().unwrap(),
        heads.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("train_log.jsonl:2"), "{err}");
    assert!(!out.exists());
}
