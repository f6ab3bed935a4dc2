//! Identifiers and splits that cross module borders.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// An image's stable id: 1–128 characters of `[A-Za-z0-9._-]`, not starting with a dot, so it is
/// safe in URLs and can never name a path outside its directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {0:?}: use 1-128 characters of A-Z a-z 0-9 . _ - (not starting with a dot)")]
pub struct InvalidId(pub String);

impl ImageId {
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidId> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s))
        } else {
            Err(InvalidId(s))
        }
    }

    /// An id derived from arbitrary text (a file name): invalid characters become `_`.
    pub fn sanitized(raw: &str) -> Result<Self, InvalidId> {
        let cleaned: String = raw
            .trim_start_matches('.')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(128)
            .collect();
        Self::new(cleaned)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ImageId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<ImageId> for String {
    fn from(id: ImageId) -> Self {
        id.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Val => "val",
            Self::Test => "test",
        }
    }
}

impl FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "train" | "restval" => Ok(Self::Train),
            "val" | "dev" => Ok(Self::Val),
            "test" => Ok(Self::Test),
            other => Err(format!(
                "unknown split {other:?} (expected train, val or test)"
            )),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_paths_and_oddities() {
        assert!(ImageId::new("1000092795.jpg").is_ok());
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            ".hidden",
            "sp ace",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(ImageId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            ImageId::sanitized("../my photo.jpg").unwrap().as_str(),
            "_my_photo.jpg"
        );
    }

    #[test]
    fn splits_parse_karpathy_names() {
        assert_eq!("restval".parse::<Split>().unwrap(), Split::Train);
        assert_eq!("dev".parse::<Split>().unwrap(), Split::Val);
        assert!("holdout".parse::<Split>().is_err());
    }
}
