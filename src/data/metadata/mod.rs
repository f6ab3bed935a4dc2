//! What is known about a photo besides its pixels, for filters, date order and the details a
//! client shows: EXIF (when it was taken, with the camera's offset from UTC; camera make and
//! model; GPS position; orientation), where its file sits (folder, name, size, modification
//! time), and the user's own fields (an upload's or a JSONL line's `metadata` object).
//!
//! Read on every way in (folder libraries, uploads, dataset ingest) and stored in the catalog
//! beside the image row, so it is replaced on a rescan and deleted with the image.

mod exif;
mod fields;
mod time;

pub use exif::{read_exif, ExifFacts};
pub use fields::{
    check_name as check_field_name, FieldValue, InvalidFields, UserFields, MAX_FIELDS,
};
pub use time::{parse_time_bound, TakenAt, TimeBound};

/// A position in degrees (WGS 84, as EXIF records it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

impl GeoPoint {
    /// `None` unless both are finite and within -90..=90 and -180..=180.
    pub fn new(lat: f64, lon: f64) -> Option<Self> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
            .then_some(Self { lat, lon })
    }
}

/// Everything stored about a photo beyond its id, file location, dimensions and captions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhotoMetadata {
    pub taken_at: Option<TakenAt>,
    pub camera_make: Option<String>,
    pub camera_model: Option<String>,
    pub gps: Option<GeoPoint>,
    /// EXIF orientation 1..=8 as recorded (decoding already applies it to the pixels).
    pub orientation: Option<u16>,
    /// The file's folder, `/`-separated: relative to the library's root for folder libraries
    /// (`""` at the top), the directory the dataset names for ingested files.
    pub folder: Option<String>,
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    /// The file's modification time, seconds since the Unix epoch.
    pub file_modified: Option<i64>,
    pub fields: UserFields,
}

impl PhotoMetadata {
    /// EXIF read from an image file's bytes, plus the file's size (a file without EXIF, or with
    /// unreadable EXIF, has only the size: neither is an error).
    pub fn from_image_bytes(bytes: &[u8]) -> Self {
        let exif = read_exif(bytes);
        Self {
            taken_at: exif.taken_at,
            camera_make: exif.camera_make,
            camera_model: exif.camera_model,
            gps: exif.gps,
            orientation: exif.orientation,
            file_size: Some(bytes.len() as u64),
            ..Default::default()
        }
    }

    /// Set folder and file name from a `/`-separated path.
    pub fn with_path(mut self, path: &str) -> Self {
        let path = path.replace('\\', "/");
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        self.folder = Some(folder.to_string());
        self.file_name = Some(name.to_string()).filter(|n| !n.is_empty());
        self
    }
}
