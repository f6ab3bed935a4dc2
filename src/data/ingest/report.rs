//! The ingest summary: read / ingested / unchanged / skipped, with every skip's reason.

use std::{collections::BTreeMap, fmt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Malformed(String),
    MissingImage { path: String, error: String },
    UndecodableImage { path: String, error: String },
    DuplicateId { id: String, first: String },
    DuplicateCaption(String),
    InvalidId(String),
    NoCaptions,
    IdInOtherDataset,
}

impl SkipReason {
    /// A short key to group counts by.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::MissingImage { .. } => "missing image",
            Self::UndecodableImage { .. } => "undecodable image",
            Self::DuplicateId { .. } => "duplicate id",
            Self::DuplicateCaption(_) => "duplicate caption line",
            Self::InvalidId(_) => "invalid id",
            Self::NoCaptions => "no captions",
            Self::IdInOtherDataset => "id used by another dataset",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(m) => write!(f, "malformed: {m}"),
            Self::MissingImage { path, error } => write!(f, "missing image {path}: {error}"),
            Self::UndecodableImage { path, error } => {
                write!(f, "undecodable image {path}: {error}")
            }
            Self::DuplicateId { id, first } => write!(f, "duplicate id {id} (first at {first})"),
            Self::DuplicateCaption(m) => write!(f, "duplicate caption: {m}"),
            Self::InvalidId(m) => write!(f, "{m}"),
            Self::NoCaptions => write!(f, "no captions"),
            Self::IdInOtherDataset => write!(f, "id already belongs to another dataset"),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct IngestReport {
    pub read: usize,
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub skipped: Vec<(String, SkipReason)>,
}

impl IngestReport {
    pub fn skip(&mut self, origin: String, reason: SkipReason) {
        self.skipped.push((origin, reason));
    }

    pub fn ingested(&self) -> usize {
        self.inserted + self.updated
    }

    pub fn skipped_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for (_, r) in &self.skipped {
            *counts.entry(r.kind()).or_insert(0) += 1;
        }
        counts
    }
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (origin, reason) in self.skipped.iter().take(50) {
            writeln!(f, "  skipped {origin}: {reason}")?;
        }
        if self.skipped.len() > 50 {
            writeln!(f, "  … and {} more skipped", self.skipped.len() - 50)?;
        }
        write!(
            f,
            "read {}, ingested {} ({} new, {} updated), unchanged {}, skipped {}",
            self.read,
            self.ingested(),
            self.inserted,
            self.updated,
            self.unchanged,
            self.skipped.len()
        )?;
        let kinds = self.skipped_by_kind();
        if !kinds.is_empty() {
            let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}
