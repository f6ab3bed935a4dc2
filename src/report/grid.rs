//! The qualitative figure: one row per query (a caption or an image), its top retrievals to the
//! right with rank and score, ground truth framed in green — like the original study's figures.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use plotters::prelude::*;

use super::{draw_err, font::FAMILY, Canvas, ReportError};

pub enum Cell {
    Image(PathBuf),
    Text(String),
}

pub struct Retrieved {
    pub cell: Cell,
    pub score: f32,
    pub relevant: bool,
}

pub struct Row {
    pub query: Cell,
    pub hits: Vec<Retrieved>,
}

const THUMB: u32 = 150;
const TEXT_WIDTH: u32 = 230;
const ROW_HEIGHT: u32 = THUMB + 40;
const MARGIN: u32 = 12;
const GAP: u32 = 10;
const QUERY_GAP: u32 = 30;
const TITLE_HEIGHT: u32 = 40;
const FONT_SIZE: u32 = 14;
/// Average advance of DejaVu Sans at FONT_SIZE, for wrapping.
const CHAR_WIDTH: f32 = 7.6;
const GREEN: RGBColor = RGBColor(0, 150, 60);

fn width_of(cell: &Cell) -> u32 {
    match cell {
        Cell::Image(_) => THUMB,
        Cell::Text(_) => TEXT_WIDTH,
    }
}

/// Greedy word wrap to lines of at most `width` pixels (estimated), at most `max_lines`.
fn wrap(text: &str, width: u32, max_lines: usize) -> Vec<String> {
    let per_line = ((width as f32 / CHAR_WIDTH) as usize).max(4);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > per_line {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            last.push('…');
        }
    }
    lines
}

/// Decode and centre-crop an image to a THUMB square; None when the file cannot be read.
fn thumbnail(path: &Path) -> Option<image::RgbImage> {
    let img = image::open(path).ok()?;
    Some(
        img.resize_to_fill(THUMB, THUMB, FilterType::Triangle)
            .to_rgb8(),
    )
}

fn blit(canvas: &mut Canvas, img: &image::RgbImage, x0: u32, y0: u32) {
    for (x, y, p) in img.enumerate_pixels() {
        let (cx, cy) = (x0 + x, y0 + y);
        if cx < canvas.width && cy < canvas.height {
            let at = ((cy * canvas.width + cx) * 3) as usize;
            canvas.pixels[at..at + 3].copy_from_slice(&p.0);
        }
    }
}

/// Draw `rows` under `title` into a PNG at `out` (the font must be registered).
pub fn draw_grid(out: &Path, title: &str, rows: &[Row]) -> Result<(), ReportError> {
    if rows.is_empty() {
        return Err(ReportError::Empty("no queries".into()));
    }
    let row_width = |r: &Row| {
        width_of(&r.query) + QUERY_GAP + r.hits.iter().map(|h| width_of(&h.cell) + GAP).sum::<u32>()
    };
    let width = 2 * MARGIN + rows.iter().map(row_width).max().unwrap_or(0);
    let height = TITLE_HEIGHT + MARGIN + rows.len() as u32 * (ROW_HEIGHT + GAP);
    let mut canvas = Canvas::white(width, height);

    // pixels first (plain copies), then text and frames on top with plotters
    let mut frames: Vec<(u32, u32, u32, bool)> = Vec::new(); // x, y, width, relevant
    let mut texts: Vec<(String, u32, u32, RGBColor)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let y = TITLE_HEIGHT + i as u32 * (ROW_HEIGHT + GAP);
        let mut x = MARGIN;
        let cells = std::iter::once((&row.query, None)).chain(
            row.hits
                .iter()
                .enumerate()
                .map(|(rank, h)| (&h.cell, Some((rank + 1, h)))),
        );
        for (cell, hit) in cells {
            let w = width_of(cell);
            match cell {
                Cell::Image(path) => match thumbnail(path) {
                    Some(img) => blit(&mut canvas, &img, x, y),
                    None => texts.push(("(unreadable image)".into(), x + 8, y + 60, BLACK)),
                },
                Cell::Text(text) => {
                    let color = if hit.is_some_and(|(_, h)| h.relevant) {
                        GREEN
                    } else {
                        BLACK
                    };
                    // inset past the 5-pixel ground-truth frame
                    for (l, line) in wrap(text, w - 20, 7).into_iter().enumerate() {
                        texts.push((line, x + 10, y + 10 + l as u32 * (FONT_SIZE + 4), color));
                    }
                }
            }
            match hit {
                None => texts.push(("query".into(), x, y + THUMB + 8, RGBColor(90, 90, 90))),
                Some((rank, h)) => {
                    frames.push((x, y, w, h.relevant));
                    let label = if h.relevant {
                        format!("#{rank}  {:.3}  ✓", h.score)
                    } else {
                        format!("#{rank}  {:.3}", h.score)
                    };
                    let color = if h.relevant { GREEN } else { BLACK };
                    texts.push((label, x, y + THUMB + 8, color));
                }
            }
            x += w + if hit.is_none() { QUERY_GAP } else { GAP };
        }
    }

    {
        let root =
            BitMapBackend::with_buffer(&mut canvas.pixels, (width, height)).into_drawing_area();
        root.draw(&Text::new(
            title.to_string(),
            (MARGIN as i32, 10),
            (FAMILY, 20).into_font().color(&BLACK),
        ))
        .map_err(draw_err)?;
        for (x, y, w, relevant) in frames {
            let (style, inset) = if relevant {
                (GREEN.stroke_width(5), 2)
            } else {
                (RGBColor(190, 190, 190).stroke_width(1), 0)
            };
            root.draw(&Rectangle::new(
                [
                    (x as i32 + inset, y as i32 + inset),
                    ((x + w) as i32 - inset, (y + THUMB) as i32 - inset),
                ],
                style,
            ))
            .map_err(draw_err)?;
        }
        for (text, x, y, color) in texts {
            root.draw(&Text::new(
                text,
                (x as i32, y as i32),
                (FAMILY, FONT_SIZE).into_font().color(&color),
            ))
            .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    canvas.save_png(out)
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_keeps_words_whole_and_marks_cut_text() {
        let lines = wrap("a small red circle left of a large blue square", 100, 10);
        assert!(lines.iter().all(|l| l.chars().count() <= 13), "{lines:?}");
        assert_eq!(
            lines.join(" "),
            "a small red circle left of a large blue square"
        );
        let cut = wrap("one two three four five six seven eight", 40, 2);
        assert_eq!(cut.len(), 2);
        assert!(cut[1].ends_with('…'));
    }
}
