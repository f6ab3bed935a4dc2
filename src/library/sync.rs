//! A rescan: the folder as it is now against what the catalog remembers. New files are added,
//! changed files re-encoded, deleted files removed; a file whose size and modification time are
//! unchanged costs a stat, one whose stamp moved but whose bytes hash the same only a read. Work
//! is applied in batches, each one transaction, so a killed scan resumes where it stopped.

use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use sha2::{Digest, Sha256};

use super::scan::{LibraryFile, Scan, SkipReason, Skipped};
use crate::{
    data::{
        catalog::{LibraryAdd, LibraryChanges, LibraryEntry, NewImage, StoredVector},
        metadata::PhotoMetadata,
        ImageId,
    },
    vectors::Features,
};

/// An image decoded and encoded: its features and displayed size.
pub struct Encoded {
    pub features: Features,
    pub width: u32,
    pub height: u32,
}

/// Decodes and encodes image files' bytes, one result per input (a bad file fails alone).
pub trait BatchEncoder {
    fn encode(
        &self,
        images: Vec<Vec<u8>>,
    ) -> impl std::future::Future<Output = Vec<Result<Encoded, String>>>;
}

/// Where a batch of changes goes: the catalog alone (the CLI), or the catalog and a running
/// server's indexes.
pub trait ApplyChanges {
    fn apply(
        &self,
        changes: LibraryChanges,
    ) -> impl std::future::Future<Output = anyhow::Result<()>>;
}

#[derive(Debug, Default)]
pub struct SyncReport {
    pub files: usize,
    pub added: usize,
    /// Same path, new content: re-encoded.
    pub changed: usize,
    pub removed: usize,
    /// Same stamp: only a stat.
    pub unchanged: usize,
    /// New stamp, same bytes: read and hashed, not decoded.
    pub restamped: usize,
    pub skipped: Vec<Skipped>,
    /// Images decoded and encoded.
    pub encoded: usize,
    pub seconds: f64,
}

impl SyncReport {
    pub fn images_per_second(&self) -> f64 {
        self.encoded as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} image files: {} added, {} changed, {} removed, {} unchanged, {} restamped; {} skipped; {} encoded in {:.1}s ({:.1} images/s)",
            self.files,
            self.added,
            self.changed,
            self.removed,
            self.unchanged,
            self.restamped,
            self.skipped.len(),
            self.encoded,
            self.seconds,
            self.images_per_second()
        )
    }
}

/// What a rescan has to do, decided from stats alone.
struct Plan<'a> {
    /// Files whose stamp differs from the catalog's (or that it lacks), with the old hash.
    to_read: Vec<(&'a LibraryFile, Option<&'a LibraryEntry>)>,
    remove: Vec<ImageId>,
    unchanged: usize,
}

fn plan<'a>(scan: &'a Scan, entries: &'a [LibraryEntry]) -> Plan<'a> {
    let known: HashMap<&ImageId, &LibraryEntry> = entries.iter().map(|e| (&e.id, e)).collect();
    let present: HashSet<&ImageId> = scan.files.iter().map(|f| &f.id).collect();
    // a file that exists but could not be read this time keeps its entry (it may be mid-copy)
    let unreadable: HashSet<&str> = scan
        .skipped
        .iter()
        .filter(|s| matches!(s.reason, SkipReason::Unreadable(_)))
        .map(|s| s.path.as_str())
        .collect();
    let mut out = Plan {
        to_read: Vec::new(),
        remove: Vec::new(),
        unchanged: 0,
    };
    for e in entries {
        let kept = e
            .location
            .as_deref()
            .is_some_and(|l| unreadable.iter().any(|u| l.ends_with(u)));
        if !present.contains(&e.id) && !kept {
            out.remove.push(e.id.clone());
        }
    }
    for f in &scan.files {
        match known.get(&f.id) {
            Some(e) if e.stamp == Some(f.stamp) => out.unchanged += 1,
            other => out.to_read.push((f, other.copied())),
        }
    }
    out
}

/// Rescan: apply `scan` against `entries` (the catalog's rows for this library), encoding new and
/// changed files with `encoder` for feature set `image_set`, `batch` files per transaction.
pub async fn sync(
    scan: Scan,
    entries: &[LibraryEntry],
    image_set: &str,
    encoder: &impl BatchEncoder,
    sink: &impl ApplyChanges,
    batch: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<SyncReport> {
    let started = Instant::now();
    let plan = plan(&scan, entries);
    let mut report = SyncReport {
        files: scan.files.len(),
        unchanged: plan.unchanged,
        skipped: scan.skipped.clone(),
        ..Default::default()
    };
    progress(plan.unchanged as u64);
    if !plan.remove.is_empty() {
        report.removed = plan.remove.len();
        sink.apply(LibraryChanges {
            remove: plan.remove,
            ..Default::default()
        })
        .await?;
    }
    for chunk in plan.to_read.chunks(batch.max(1)) {
        let mut changes = LibraryChanges::default();
        let mut to_encode = Vec::new();
        for &(file, old) in chunk {
            let bytes = match std::fs::read(&file.path) {
                Ok(b) => b,
                Err(e) => {
                    report.skipped.push(Skipped {
                        path: file.rel.clone(),
                        reason: SkipReason::Unreadable(e.to_string()),
                    });
                    continue;
                }
            };
            let sha = format!("{:x}", Sha256::digest(&bytes));
            match old {
                Some(e) if e.sha256.as_deref() == Some(sha.as_str()) => {
                    changes.restamp.push((file.id.clone(), file.stamp));
                    report.restamped += 1;
                }
                _ => {
                    let metadata = PhotoMetadata {
                        file_modified: Some(file.stamp.mtime_ns.div_euclid(1_000_000_000)),
                        ..PhotoMetadata::from_image_bytes(&bytes)
                    }
                    .with_path(&file.rel);
                    to_encode.push((file, old.is_some(), sha, bytes, metadata))
                }
            }
        }
        let encoded = encoder
            .encode(to_encode.iter().map(|(_, _, _, b, _)| b.clone()).collect())
            .await;
        for ((file, existed, sha, _, metadata), result) in to_encode.into_iter().zip(encoded) {
            match result {
                Ok(e) => {
                    report.encoded += 1;
                    if existed {
                        report.changed += 1;
                    } else {
                        report.added += 1;
                    }
                    changes.add.push(LibraryAdd {
                        image: NewImage {
                            id: file.id.clone(),
                            location: Some(file.path.display().to_string()),
                            width: Some(e.width),
                            height: Some(e.height),
                            sha256: Some(sha),
                            split: None,
                            captions: Vec::new(),
                            metadata,
                        },
                        stamp: file.stamp,
                        vectors: vec![StoredVector {
                            feature_set: image_set.to_string(),
                            item: file.id.to_string(),
                            image_id: file.id.clone(),
                            vector: e.features,
                        }],
                    });
                }
                Err(reason) => {
                    // a file that no longer decodes is no longer searchable
                    if existed {
                        changes.remove.push(file.id.clone());
                        report.removed += 1;
                    }
                    report.skipped.push(Skipped {
                        path: file.rel.clone(),
                        reason: SkipReason::Undecodable(reason),
                    });
                }
            }
        }
        sink.apply(changes).await?;
        progress(chunk.len() as u64);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
