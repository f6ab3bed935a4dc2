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

/// A caption's key in feature sets and indexes: its image's id and its ordinal, written
/// `IMAGE_ID#NNN` (ordinal zero-padded to 3 digits, so keys sort by image, then ordinal). The one
/// place that builds or reads that form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaptionKey {
    pub image: ImageId,
    pub ordinal: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid caption key {0:?}: expected IMAGE_ID#ORDINAL")]
pub struct InvalidCaptionKey(pub String);

impl CaptionKey {
    pub fn new(image: ImageId, ordinal: u32) -> Self {
        Self { image, ordinal }
    }

    /// The image a stored item belongs to: a caption key's image, or the item itself (an image's
    /// own key is its id).
    pub fn owner_of(item: &str) -> Result<ImageId, InvalidId> {
        ImageId::new(Self::owner_str(item))
    }

    /// [`Self::owner_of`] without checking or allocating (hot loops over index keys).
    pub fn owner_str(item: &str) -> &str {
        item.split_once('#').map_or(item, |(image, _)| image)
    }
}

impl FromStr for CaptionKey {
    type Err = InvalidCaptionKey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidCaptionKey(s.to_string());
        let (image, ordinal) = s.rsplit_once('#').ok_or_else(bad)?;
        Ok(Self {
            image: ImageId::new(image).map_err(|_| bad())?,
            ordinal: ordinal.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for CaptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:03}", self.image, self.ordinal)
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
    fn caption_keys_round_trip_and_name_their_image() {
        let key = CaptionKey::new(ImageId::new("img-1.jpg").unwrap(), 7);
        assert_eq!(key.to_string(), "img-1.jpg#007");
        assert_eq!("img-1.jpg#007".parse::<CaptionKey>().unwrap(), key);
        assert_eq!("a#1234".parse::<CaptionKey>().unwrap().ordinal, 1234);
        for bad in ["img-1.jpg", "#1", "a#x", "a/b#1", "a#-1"] {
            assert!(bad.parse::<CaptionKey>().is_err(), "{bad}");
        }
        assert_eq!(CaptionKey::owner_of("cat#002").unwrap().as_str(), "cat");
        assert_eq!(CaptionKey::owner_of("cat").unwrap().as_str(), "cat");
    }

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
