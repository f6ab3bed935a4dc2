//! Figures as PNG (plotters on an RGB buffer, encoded by the `image` crate): recall@k curves of
//! several models, training curves, and a qualitative grid of queries with their top retrievals.

pub mod charts;
pub mod font;
pub mod grid;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("font {path}: {message} (run `xmodal models fetch --only dejavu-sans`)")]
    Font { path: PathBuf, message: String },
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("nothing to draw: {0}")]
    Empty(String),
}

/// An RGB canvas that ends up as a PNG file.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Canvas {
    pub fn white(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; (width * height * 3) as usize],
        }
    }

    /// Write as PNG, atomically: a figure is whole or absent.
    pub fn save_png(self, path: &Path) -> Result<(), ReportError> {
        let io = |source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let image = image::RgbImage::from_raw(self.width, self.height, self.pixels)
            .ok_or_else(|| ReportError::Draw("canvas size does not match its pixels".into()))?;
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| ReportError::Draw(e.to_string()))?;
        crate::fsutil::write_atomic(path, &png).map_err(io)
    }
}

fn draw_err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Draw(e.to_string())
}
