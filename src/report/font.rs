//! The one font figures use: DejaVu Sans from the model kit (matplotlib's wheel ships it). plotters
//! draws text only with a registered font, and we register it from the kit rather than bundling
//! a font in the binary or reading system fonts that a server image may lack.

use std::{path::Path, sync::OnceLock};

use plotters::style::{register_font, FontStyle};

use super::ReportError;

/// Kit directory of the font.
pub const FONT_DIR: &str = "dejavu-sans";
pub const FAMILY: &str = "sans-serif";

static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Register DejaVu Sans as `sans-serif` (once per process).
pub fn register(models_dir: &Path) -> Result<(), ReportError> {
    let path = models_dir.join(FONT_DIR).join("DejaVuSans.ttf");
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
            // plotters keeps fonts for the life of the process, so the bytes are leaked once
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| "not a TrueType font".to_string())
        })
        .clone()
        .map_err(|message| ReportError::Font { path, message })
}
