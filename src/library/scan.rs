//! Walking a photo folder: which files are images we can index, the id each gets, and why every
//! other file is skipped.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::data::{catalog::FileStamp, ImageId};

/// An image file found in the folder.
#[derive(Debug, Clone, PartialEq)]
pub struct LibraryFile {
    pub id: ImageId,
    /// Absolute path: what the catalog stores as the image's location.
    pub path: PathBuf,
    /// Path relative to the folder, `/`-separated.
    pub rel: String,
    pub stamp: FileStamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Not a JPEG, PNG or WebP file by its extension.
    NotAnImage,
    /// An image format we cannot decode offline (HEIC, AVIF, …).
    UnsupportedFormat(String),
    /// Cannot be read (permissions, a broken link, vanished while scanning).
    Unreadable(String),
    /// Read, but not decodable as an image (or refused by the decode limits).
    Undecodable(String),
    /// Hidden (a name starting with a dot): skipped with everything under it.
    Hidden,
    /// Two paths map to the same id (practically impossible: see [`id_for`]).
    IdCollision(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAnImage => write!(f, "not a JPEG, PNG or WebP file"),
            Self::UnsupportedFormat(ext) => {
                write!(
                    f,
                    "{ext} images cannot be decoded here (no offline decoder)"
                )
            }
            Self::Unreadable(e) => write!(f, "unreadable: {e}"),
            Self::Undecodable(e) => write!(f, "{e}"),
            Self::Hidden => write!(f, "hidden"),
            Self::IdCollision(other) => write!(f, "same id as {other}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: String,
    pub reason: SkipReason,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Sorted by relative path.
    pub files: Vec<LibraryFile>,
    pub skipped: Vec<Skipped>,
}

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];
const UNSUPPORTED: [&str; 5] = ["heic", "heif", "avif", "tif", "tiff"];

/// The id of a file at `rel` (relative, `/`-separated): the path itself when it is already a valid
/// id (a plain name at the top of the folder), else its readable form (`/` and other characters
/// outside `[A-Za-z0-9._-]` become `_`, cut to fit) plus `-` and 10 hex digits of the path's
/// sha256. Stable: it depends on this path alone, never on which other files exist.
pub fn id_for(rel: &str) -> Result<ImageId, crate::data::InvalidId> {
    if let Ok(id) = ImageId::new(rel) {
        return Ok(id);
    }
    let hash = format!("{:x}", Sha256::digest(rel.as_bytes()));
    let readable = ImageId::sanitized(rel)
        .map(String::from)
        .unwrap_or_default();
    let keep: String = readable.chars().take(128 - 11).collect();
    let keep = if keep.is_empty() {
        "img".to_string()
    } else {
        keep
    };
    ImageId::new(format!("{keep}-{}", &hash[..10]))
}

fn stamp(meta: &std::fs::Metadata) -> FileStamp {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    FileStamp {
        size: meta.len(),
        mtime_ns,
    }
}

/// Walk `root` recursively (links to files are followed, links to directories are not).
pub fn scan(root: &Path) -> std::io::Result<Scan> {
    let root = std::fs::canonicalize(root)?;
    let mut out = Scan::default();
    let mut walker = walkdir::WalkDir::new(&root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    let mut seen: HashMap<ImageId, String> = HashMap::new();
    while let Some(entry) = walker.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                out.skipped.push(Skipped {
                    path,
                    reason: SkipReason::Unreadable(e.to_string()),
                });
                continue;
            }
        };
        if entry.depth() == 0 {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(&root)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        let name = entry.file_name().to_string_lossy();
        if name.starts_with('.') {
            if entry.file_type().is_dir() {
                walker.skip_current_dir();
            }
            out.skipped.push(Skipped {
                path: rel,
                reason: SkipReason::Hidden,
            });
            continue;
        }
        if entry.file_type().is_dir() {
            continue;
        }
        let ext = Path::new(&*name)
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let skip = |reason| Skipped {
            path: rel.clone(),
            reason,
        };
        if UNSUPPORTED.contains(&ext.as_str()) {
            out.skipped
                .push(skip(SkipReason::UnsupportedFormat(ext.to_uppercase())));
            continue;
        }
        if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            out.skipped.push(skip(SkipReason::NotAnImage));
            continue;
        }
        // follows a link to its file; a broken link or a directory named x.jpg is unreadable
        let meta = match std::fs::metadata(entry.path()) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                out.skipped
                    .push(skip(SkipReason::Unreadable("not a regular file".into())));
                continue;
            }
            Err(e) => {
                out.skipped
                    .push(skip(SkipReason::Unreadable(e.to_string())));
                continue;
            }
        };
        let id = match id_for(&rel) {
            Ok(id) => id,
            Err(e) => {
                out.skipped
                    .push(skip(SkipReason::Undecodable(e.to_string())));
                continue;
            }
        };
        if let Some(first) = seen.get(&id) {
            out.skipped
                .push(skip(SkipReason::IdCollision(first.clone())));
            continue;
        }
        seen.insert(id.clone(), rel.clone());
        out.files.push(LibraryFile {
            id,
            path: entry.path().to_path_buf(),
            rel,
            stamp: stamp(&meta),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_valid_and_distinct_for_paths_that_look_alike() {
        assert_eq!(id_for("IMG_0001.jpg").unwrap().as_str(), "IMG_0001.jpg");
        let nested = id_for("2024/trip/IMG_0001.jpg").unwrap();
        assert!(nested.as_str().starts_with("2024_trip_IMG_0001.jpg-"));
        assert_eq!(nested, id_for("2024/trip/IMG_0001.jpg").unwrap());
        // `a/b.jpg` and `a_b.jpg` would both sanitize to `a_b.jpg`
        assert_ne!(id_for("a/b.jpg").unwrap(), id_for("a_b.jpg").unwrap());
        assert_ne!(id_for("ü.jpg").unwrap(), id_for("_.jpg").unwrap());
        let long = format!("{}/x.png", "d".repeat(300));
        assert!(id_for(&long).unwrap().as_str().len() <= 128);
        assert!(id_for(".hidden.jpg").is_ok());
    }
}
