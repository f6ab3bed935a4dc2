//! `xmodal ingest`: datasets into the catalog. Each format parses its files into candidates
//! (reporting malformed lines with file:line); candidates' image files are then checked in
//! parallel (missing, undecodable), duplicates dropped, and the rest upserted. Nothing is dropped
//! silently: every skipped item lands in the report with its reason. Re-running is idempotent.

pub mod coco;
pub mod flickr30k;
pub mod jsonl;
mod report;
pub mod split;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub use report::{IngestReport, SkipReason};

use super::{
    catalog::{NewImage, Upsert},
    metadata::{PhotoMetadata, UserFields},
    Catalog, CatalogError, ImageId, Split,
};

/// One image a format parser found, before its file is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: ImageId,
    /// The image file; `None` when the dataset comes without files (imported features).
    pub file: Option<PathBuf>,
    pub captions: Vec<String>,
    pub split: Option<Split>,
    /// The user's own fields (a JSONL line's `metadata` object).
    pub fields: UserFields,
    /// "file:line" (or file#index) where this item was read, for messages.
    pub origin: String,
}

/// What a format parser returns: candidates plus the problems it met on the way.
#[derive(Debug, Default)]
pub struct Parsed {
    pub candidates: Vec<Candidate>,
    pub problems: Vec<(String, SkipReason)>,
    /// Items read (lines or records), for the summary.
    pub read: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Format(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

pub fn read_file(path: &Path) -> Result<String, IngestError> {
    std::fs::read_to_string(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Check image files, drop duplicates, upsert the rest; returns the full report.
pub async fn ingest(
    catalog: &Catalog,
    dataset: (&str, &str, &str),
    parsed: Parsed,
    verify_decode: bool,
) -> Result<IngestReport, IngestError> {
    let mut report = IngestReport {
        read: parsed.read,
        ..Default::default()
    };
    for (origin, reason) in parsed.problems {
        report.skip(origin, reason);
    }
    let mut first_seen: HashMap<ImageId, String> = HashMap::new();
    let mut unique = Vec::with_capacity(parsed.candidates.len());
    for c in parsed.candidates {
        if let Some(first) = first_seen.get(&c.id) {
            report.skip(
                c.origin.clone(),
                SkipReason::DuplicateId {
                    id: c.id.to_string(),
                    first: first.clone(),
                },
            );
            continue;
        }
        first_seen.insert(c.id.clone(), c.origin.clone());
        unique.push(c);
    }
    let checked: Vec<Result<NewImage, (String, SkipReason)>> = unique
        .into_par_iter()
        .map(|c| check_image(c, verify_decode))
        .collect();
    let mut ready = Vec::new();
    for item in checked {
        match item {
            Ok(img) => ready.push(img),
            Err((origin, reason)) => report.skip(origin, reason),
        }
    }
    let (name, format, source) = dataset;
    let dataset_id = catalog.dataset(name, format, source).await?;
    for chunk in ready.chunks(1000) {
        for (img, outcome) in chunk
            .iter()
            .zip(catalog.upsert_images(dataset_id, chunk).await?)
        {
            match outcome {
                Upsert::Inserted => report.inserted += 1,
                Upsert::Updated => report.updated += 1,
                Upsert::Unchanged => report.unchanged += 1,
                Upsert::Conflict => report.skip(img.id.to_string(), SkipReason::IdInOtherDataset),
            }
        }
    }
    Ok(report)
}

fn check_image(c: Candidate, verify_decode: bool) -> Result<NewImage, (String, SkipReason)> {
    let Some(file) = &c.file else {
        return Ok(NewImage {
            id: c.id,
            location: None,
            width: None,
            height: None,
            sha256: None,
            split: c.split,
            captions: c.captions,
            metadata: PhotoMetadata {
                fields: c.fields,
                ..Default::default()
            },
        });
    };
    let bytes = std::fs::read(file).map_err(|e| {
        (
            c.origin.clone(),
            SkipReason::MissingImage {
                path: file.display().to_string(),
                error: e.to_string(),
            },
        )
    })?;
    let undecodable = |error: String| {
        (
            c.origin.clone(),
            SkipReason::UndecodableImage {
                path: file.display().to_string(),
                error,
            },
        )
    };
    let (width, height) = if verify_decode {
        crate::encode::image::preprocess::decode(&bytes)
            .map_err(|e| undecodable(e.to_string()))?
            .dimensions()
    } else {
        image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| undecodable(e.to_string()))?
            .into_dimensions()
            .map_err(|e| undecodable(e.to_string()))?
    };
    let location = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
    let metadata = PhotoMetadata {
        fields: c.fields,
        file_modified: std::fs::metadata(file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64),
        ..PhotoMetadata::from_image_bytes(&bytes)
    }
    .with_path(&file.display().to_string());
    Ok(NewImage {
        id: c.id,
        location: Some(location.display().to_string()),
        width: Some(width),
        height: Some(height),
        sha256: Some(format!("{:x}", Sha256::digest(&bytes))),
        split: c.split,
        captions: c.captions,
        metadata,
    })
}
