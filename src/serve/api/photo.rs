//! What is known about a photo, as image details and image results show it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::metadata::PhotoMetadata;

/// EXIF, file facts and your own fields; absent keys are unknown.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PhotoInfo {
    /// When it was taken (EXIF), RFC 3339 with the camera's offset when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_make: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// EXIF orientation 1..8 (already applied to served thumbnails and to encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    /// The file's modification time (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_modified: Option<i64>,
    /// Your own fields, as uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub fields: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

impl From<PhotoMetadata> for PhotoInfo {
    fn from(m: PhotoMetadata) -> Self {
        Self {
            taken_at: m.taken_at.map(|t| t.to_string()),
            camera_make: m.camera_make,
            camera_model: m.camera_model,
            location: m.gps.map(|g| Location {
                lat: g.lat,
                lon: g.lon,
            }),
            orientation: m.orientation,
            folder: m.folder,
            file_name: m.file_name,
            file_size: m.file_size,
            file_modified: m.file_modified,
            fields: (!m.fields.is_empty()).then(|| m.fields.to_json()),
        }
    }
}
