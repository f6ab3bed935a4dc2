//! Line charts: recall@k curves of several models (one panel per direction) and training curves
//! (training loss and validation R-sum per epoch, one line per run).

use std::path::Path;

use plotters::prelude::*;

use super::{draw_err, font::FAMILY, Canvas, ReportError};
use crate::eval::RecallCurve;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 500;

/// One model's recall curve, named for the legend.
pub struct CurveSeries {
    pub name: String,
    pub curve: RecallCurve,
}

/// One training run: (epoch, training loss, validation R-sum) per epoch.
pub struct TrainingSeries {
    pub name: String,
    pub epochs: Vec<EpochPoint>,
}

/// (epoch, training loss (none for the epoch-0 baseline of a residual head), validation R-sum).
pub type EpochPoint = (usize, Option<f64>, f64);

/// A line per series in one panel, with a legend.
struct Panel<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    lines: Vec<(&'a str, Vec<(f64, f64)>)>,
}

fn draw_panels(out: &Path, panels: &[Panel], log_x: bool) -> Result<(), ReportError> {
    if panels
        .iter()
        .all(|p| p.lines.iter().all(|(_, l)| l.is_empty()))
    {
        return Err(ReportError::Empty("no data points".into()));
    }
    let mut canvas = Canvas::white(WIDTH, HEIGHT);
    {
        let root =
            BitMapBackend::with_buffer(&mut canvas.pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let areas = root.split_evenly((1, panels.len()));
        for (area, panel) in areas.iter().zip(panels) {
            let points = panel.lines.iter().flat_map(|(_, l)| l.iter());
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for &(x, y) in points {
                (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            }
            if x1 <= x0 {
                x1 = x0 + 1.0;
            }
            let pad = ((y1 - y0) * 0.05).max(1e-3);
            let (y0, y1) = (y0 - pad, y1 + pad);
            let mut builder = ChartBuilder::on(area);
            builder
                .caption(panel.title, (FAMILY, 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(55);
            // plotters' chart types differ by axis kind, so the two cases draw separately
            macro_rules! draw {
                ($chart:expr) => {{
                    let mut chart = $chart;
                    chart
                        .configure_mesh()
                        .x_desc(panel.x_desc)
                        .y_desc(panel.y_desc)
                        .label_style((FAMILY, 13))
                        .x_labels(12)
                        .x_label_formatter(&|x| format_tick(*x))
                        .y_label_formatter(&|y| format_tick(*y))
                        .axis_desc_style((FAMILY, 14))
                        .draw()
                        .map_err(draw_err)?;
                    for (i, (name, line)) in panel.lines.iter().enumerate() {
                        let color = Palette99::pick(i).to_rgba();
                        chart
                            .draw_series(LineSeries::new(
                                line.iter().copied(),
                                color.stroke_width(2),
                            ))
                            .map_err(draw_err)?
                            .label(*name)
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                            });
                    }
                    chart
                        .configure_series_labels()
                        .label_font((FAMILY, 13))
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .position(SeriesLabelPosition::LowerRight)
                        .draw()
                        .map_err(draw_err)?;
                }};
            }
            if log_x {
                draw!(builder
                    .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                    .map_err(draw_err)?);
            } else {
                draw!(builder
                    .build_cartesian_2d(x0..x1, y0..y1)
                    .map_err(draw_err)?);
            }
        }
        root.present().map_err(draw_err)?;
    }
    canvas.save_png(out)
}

/// Whole numbers without decimals, others with up to two.
fn format_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// R@k against k (log scale) for every model, image→text and text→image side by side.
pub fn recall_curves(out: &Path, series: &[CurveSeries]) -> Result<(), ReportError> {
    let line = |s: &CurveSeries, ys: &[f64]| -> Vec<(f64, f64)> {
        s.curve
            .k
            .iter()
            .zip(ys)
            .map(|(&k, &r)| (k as f64, r))
            .collect()
    };
    let panels = [
        Panel {
            title: "image → text",
            x_desc: "k",
            y_desc: "R@k (%)",
            lines: series
                .iter()
                .map(|s| (s.name.as_str(), line(s, &s.curve.i2t)))
                .collect(),
        },
        Panel {
            title: "text → image",
            x_desc: "k",
            y_desc: "R@k (%)",
            lines: series
                .iter()
                .map(|s| (s.name.as_str(), line(s, &s.curve.t2i)))
                .collect(),
        },
    ];
    draw_panels(out, &panels, true)
}

/// Training loss and validation R-sum per epoch for every run.
pub fn training_curves(out: &Path, runs: &[TrainingSeries]) -> Result<(), ReportError> {
    let pick = |f: fn(&EpochPoint) -> Option<f64>| {
        runs.iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.epochs
                        .iter()
                        .filter_map(|e| Some((e.0 as f64, f(e)?)))
                        .collect(),
                )
            })
            .collect()
    };
    let panels = [
        Panel {
            title: "training loss",
            x_desc: "epoch",
            y_desc: "loss",
            lines: pick(|e| e.1),
        },
        Panel {
            title: "validation R-sum",
            x_desc: "epoch",
            y_desc: "R@1+5+10, both ways",
            lines: pick(|e| Some(e.2)),
        },
    ];
    draw_panels(out, &panels, false)
}
