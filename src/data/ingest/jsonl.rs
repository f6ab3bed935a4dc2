//! JSON lines, one image per line: `{"image": path, "captions": [...], "split": "train|val|test",
//! "id": optional, "metadata": {the user's own fields}}`. Paths are relative to the file's directory; ids default to the file name.

use std::path::Path;

use serde::Deserialize;

use super::{read_file, Candidate, IngestError, Parsed, SkipReason};
use crate::data::{metadata::UserFields, ImageId, Split};

#[derive(Deserialize)]
struct Line {
    image: String,
    captions: Vec<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    id: Option<String>,
    /// The user's own fields (strings, numbers, booleans, dates, or lists of them).
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

pub fn parse(path: &Path) -> Result<Parsed, IngestError> {
    let text = read_file(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let file = path.display().to_string();
    let mut parsed = Parsed::default();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        parsed.read += 1;
        let at = format!("{file}:{}", i + 1);
        let line: Line = match serde_json::from_str(raw) {
            Ok(l) => l,
            Err(e) => {
                parsed
                    .problems
                    .push((at, SkipReason::Malformed(e.to_string())));
                continue;
            }
        };
        let split = match line.split.as_deref().map(str::parse::<Split>).transpose() {
            Ok(s) => s,
            Err(e) => {
                parsed.problems.push((at, SkipReason::Malformed(e)));
                continue;
            }
        };
        let captions: Vec<String> = line
            .captions
            .iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if captions.is_empty() {
            parsed.problems.push((at, SkipReason::NoCaptions));
            continue;
        }
        let id = match line.id {
            Some(id) => ImageId::new(id),
            None => ImageId::sanitized(
                Path::new(&line.image)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
                    .as_str(),
            ),
        };
        let id = match id {
            Ok(id) => id,
            Err(e) => {
                parsed
                    .problems
                    .push((at, SkipReason::InvalidId(e.to_string())));
                continue;
            }
        };
        let fields = match line
            .metadata
            .as_ref()
            .map(UserFields::from_json)
            .transpose()
        {
            Ok(f) => f.unwrap_or_default(),
            Err(e) => {
                parsed
                    .problems
                    .push((at, SkipReason::Malformed(e.to_string())));
                continue;
            }
        };
        parsed.candidates.push(Candidate {
            id,
            file: Some(base.join(&line.image)),
            captions,
            split,
            fields,
            origin: at,
        });
    }
    Ok(parsed)
}
