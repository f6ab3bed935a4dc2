//! EXIF through `kamadak-exif` (JPEG, PNG, WebP, TIFF and HEIF containers). A file without EXIF,
//! or whose EXIF is truncated or hostile, gives no facts rather than an error: the photo is still
//! searchable by its pixels. The crate reads from the bytes already in memory, so what it can
//! allocate is bounded by the file the caller already accepted.

use exif::{In, Reader, Tag, Value};

use super::{time, GeoPoint, TakenAt};

/// Longest camera make or model kept (EXIF allows any length; real ones are short).
const MAX_CAMERA_CHARS: usize = 128;

/// What EXIF says about a photo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExifFacts {
    pub taken_at: Option<TakenAt>,
    pub camera_make: Option<String>,
    pub camera_model: Option<String>,
    pub gps: Option<GeoPoint>,
    pub orientation: Option<u16>,
}

pub fn read_exif(bytes: &[u8]) -> ExifFacts {
    let Ok(exif) = Reader::new().read_from_container(&mut std::io::Cursor::new(bytes)) else {
        return ExifFacts::default();
    };
    let ascii = |tag: Tag| -> Option<String> {
        match &exif.get_field(tag, In::PRIMARY)?.value {
            Value::Ascii(parts) => parts
                .first()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    };
    let camera = |tag: Tag| {
        ascii(tag)
            .map(|s| {
                s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .chars()
                    .take(MAX_CAMERA_CHARS)
                    .collect::<String>()
            })
            .filter(|s| !s.is_empty())
    };
    let taken_at = [
        (Tag::DateTimeOriginal, Tag::OffsetTimeOriginal),
        (Tag::DateTimeDigitized, Tag::OffsetTimeDigitized),
        (Tag::DateTime, Tag::OffsetTime),
    ]
    .into_iter()
    .find_map(|(at, offset)| time::from_exif(&ascii(at)?, ascii(offset).as_deref()));
    let orientation = exif
        .get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .map(|o| o as u16);
    ExifFacts {
        taken_at,
        camera_make: camera(Tag::Make),
        camera_model: camera(Tag::Model),
        gps: gps(&exif),
        orientation,
    }
}

/// Degrees from EXIF's three rationals (degrees, minutes, seconds) and a hemisphere letter.
fn coordinate(exif: &exif::Exif, value: Tag, hemisphere: Tag, negative: u8) -> Option<f64> {
    let Value::Rational(parts) = &exif.get_field(value, In::PRIMARY)?.value else {
        return None;
    };
    let mut degrees = 0.0;
    for (part, scale) in parts.iter().zip([1.0, 60.0, 3600.0]) {
        if part.denom == 0 {
            return None;
        }
        degrees += part.to_f64() / scale;
    }
    let sign = match &exif.get_field(hemisphere, In::PRIMARY)?.value {
        Value::Ascii(v) if v.first().and_then(|b| b.first()) == Some(&negative) => -1.0,
        _ => 1.0,
    };
    Some(sign * degrees).filter(|d| d.is_finite())
}

fn gps(exif: &exif::Exif) -> Option<GeoPoint> {
    let lat = coordinate(exif, Tag::GPSLatitude, Tag::GPSLatitudeRef, b'S')?;
    let lon = coordinate(exif, Tag::GPSLongitude, Tag::GPSLongitudeRef, b'W')?;
    GeoPoint::new(lat, lon)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fixture photo reads back as the fixture script wrote it (Pillow wrote the EXIF).
    #[test]
    fn exif_written_by_pillow_reads_back() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exif");
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        for (rel, want) in expected.as_object().unwrap() {
            let got = read_exif(&std::fs::read(dir.join(rel)).unwrap());
            let text = |v: &serde_json::Value| v.as_str().map(String::from);
            assert_eq!(
                got.taken_at.map(|t| t.to_string()),
                text(&want["taken_at"]),
                "{rel}"
            );
            assert_eq!(got.camera_make, text(&want["camera_make"]), "{rel}");
            assert_eq!(got.camera_model, text(&want["camera_model"]), "{rel}");
            assert_eq!(
                got.orientation.map(u64::from),
                want["orientation"].as_u64(),
                "{rel}"
            );
            match (got.gps, want["location"].as_object()) {
                (None, None) => {}
                (Some(g), Some(w)) => {
                    // seconds written to 1/10000: within a metre or so
                    assert!(
                        (g.lat - w["lat"].as_f64().unwrap()).abs() < 1e-5,
                        "{rel} {g:?}"
                    );
                    assert!(
                        (g.lon - w["lon"].as_f64().unwrap()).abs() < 1e-5,
                        "{rel} {g:?}"
                    );
                }
                other => panic!("{rel}: {other:?}"),
            }
        }
    }

    #[test]
    fn files_without_exif_or_with_broken_exif_give_no_facts() {
        assert_eq!(read_exif(b""), ExifFacts::default());
        assert_eq!(read_exif(b"not an image at all"), ExifFacts::default());
        // a JPEG whose APP1 segment claims more bytes than exist
        let truncated = [
            0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, b'E', b'x', b'i', b'f', 0, 0,
        ];
        assert_eq!(read_exif(&truncated), ExifFacts::default());
    }
}
