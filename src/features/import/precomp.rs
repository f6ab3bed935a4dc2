//! The VSE++/SCAN `data/<name>_precomp/` layout: per split, `<split>_ims.npy` (images × dims, or
//! one row per caption: every image repeated 5 times) and `<split>_caps.txt` (5 lines per image,
//! in order). Images have no ids in this layout; they get `<dataset>-<split>-<row>`.

use std::path::Path;

use super::{check_finite, format_error, npy, source_file, ImportError, ImportPlan, ImportedImage};
use crate::data::{ImageId, Split};

/// Captions per image in every precomp release (Flickr30k and COCO alike).
pub const CAPTIONS_PER_IMAGE: usize = 5;

const SPLITS: [(&str, Split); 3] = [
    ("train", Split::Train),
    ("dev", Split::Val),
    ("test", Split::Test),
];

pub fn plan(dir: &Path, dataset: &str) -> Result<ImportPlan, ImportError> {
    let mut images = Vec::new();
    let mut features = Vec::new();
    let mut dims = None;
    let mut files = Vec::new();
    let mut notes = Vec::new();
    for (name, split) in SPLITS {
        let ims = dir.join(format!("{name}_ims.npy"));
        let caps = dir.join(format!("{name}_caps.txt"));
        match (ims.exists(), caps.exists()) {
            (false, false) => {
                notes.push(format!("no {name} split in {}", dir.display()));
                continue;
            }
            (true, false) => return Err(format_error(&caps, "missing (its _ims.npy exists)")),
            (false, true) => return Err(format_error(&ims, "missing (its _caps.txt exists)")),
            (true, true) => {}
        }
        let text = std::fs::read_to_string(&caps).map_err(|source| ImportError::Io {
            path: caps.clone(),
            source,
        })?;
        // VSE++ reads captions with line.strip(); blank lines at the end are not captions
        let mut lines: Vec<&str> = text.lines().map(str::trim).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        if let Some(blank) = lines.iter().position(|l| l.is_empty()) {
            return Err(format_error(&caps, format!("line {} is empty", blank + 1)));
        }
        if lines.is_empty() || !lines.len().is_multiple_of(CAPTIONS_PER_IMAGE) {
            return Err(format_error(
                &caps,
                format!(
                    "{} captions; expected {CAPTIONS_PER_IMAGE} per image",
                    lines.len()
                ),
            ));
        }
        let n = lines.len() / CAPTIONS_PER_IMAGE;
        let matrix = npy::read_matrix(&ims)?;
        if dims.is_some_and(|d| d != matrix.dims) {
            return Err(format_error(
                &ims,
                format!(
                    "{} dims, but earlier splits have {}",
                    matrix.dims,
                    dims.unwrap_or(0)
                ),
            ));
        }
        dims = Some(matrix.dims);
        check_finite(&ims, &matrix.data, matrix.dims)?;
        let rows = if matrix.rows == n {
            matrix.data
        } else if matrix.rows == lines.len() {
            collapse_repeats(&ims, matrix.data, matrix.dims)?
        } else {
            return Err(format_error(
                &ims,
                format!(
                    "{} rows, but {} has {} captions: expected {n} rows (one per image) or {} (one per caption)",
                    matrix.rows,
                    caps.display(),
                    lines.len(),
                    lines.len()
                ),
            ));
        };
        if matrix.rows != n {
            notes.push(format!(
                "{}: one row per caption; kept one per image",
                ims.display()
            ));
        }
        features.extend(rows);
        for (i, group) in lines.chunks(CAPTIONS_PER_IMAGE).enumerate() {
            let id = ImageId::new(format!("{dataset}-{name}-{i:06}"))
                .map_err(|e| format_error(dir, format!("dataset name gives invalid ids: {e}")))?;
            images.push(ImportedImage {
                id,
                split: Some(split),
                captions: group.iter().map(|s| s.to_string()).collect(),
            });
        }
        files.push(source_file(&ims)?);
        files.push(source_file(&caps)?);
    }
    let Some(dims) = dims else {
        return Err(format_error(
            dir,
            "no {train,dev,test}_ims.npy with _caps.txt here; is this a _precomp folder?",
        ));
    };
    Ok(ImportPlan {
        format: "precomp",
        source: dir.display().to_string(),
        images,
        features,
        dims,
        files,
        notes,
    })
}

/// One row per caption → one row per image; the 5 rows of an image must be the same image.
fn collapse_repeats(path: &Path, data: Vec<f32>, dims: usize) -> Result<Vec<f32>, ImportError> {
    let group = CAPTIONS_PER_IMAGE * dims;
    let mut out = Vec::with_capacity(data.len() / CAPTIONS_PER_IMAGE);
    for (i, rows) in data.chunks(group).enumerate() {
        let first = &rows[..dims];
        if let Some(r) = (1..CAPTIONS_PER_IMAGE).find(|&r| &rows[r * dims..(r + 1) * dims] != first)
        {
            return Err(format_error(
                path,
                format!(
                    "one row per caption, but rows {} and {} (image {i}) differ: not the 5×-repeated layout",
                    i * CAPTIONS_PER_IMAGE,
                    i * CAPTIONS_PER_IMAGE + r
                ),
            ));
        }
        out.extend_from_slice(first);
    }
    Ok(out)
}
