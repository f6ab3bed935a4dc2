//! The data directory's layout, in one place: every subpath is a method, so no other module spells
//! `"features"` or `"catalog.sqlite"`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    /// The embedded catalog (SQLite), unless `--database` names Postgres.
    pub fn catalog(&self) -> PathBuf {
        self.0.join("catalog.sqlite")
    }

    /// Cached encoder features, one directory per feature set.
    pub fn features(&self) -> PathBuf {
        self.0.join("features")
    }

    /// Persisted in-process indexes (the first space's directly; others in subdirectories).
    pub fn index(&self) -> PathBuf {
        self.0.join("index")
    }

    /// Uploaded image bytes, content-addressed.
    pub fn uploads(&self) -> PathBuf {
        self.0.join("images")
    }

    /// Where `upload` stores a file of this sha256 and extension.
    pub fn upload_file(&self, sha256: &str, ext: &str) -> PathBuf {
        self.uploads()
            .join(&sha256[..2.min(sha256.len())])
            .join(format!("{sha256}.{ext}"))
    }

    /// Trained heads, one directory per name.
    pub fn heads(&self, name: &str) -> PathBuf {
        self.0.join("heads").join(name)
    }

    /// The demo's training workspace (its own catalog and features for the generated scenes).
    pub fn demo_training(&self) -> DataDir {
        DataDir(self.0.join("train"))
    }
}

impl AsRef<Path> for DataDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}
