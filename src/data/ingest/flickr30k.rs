//! Flickr30k as Kaggle distributes it: `results.csv` (`image_name| comment_number| comment`,
//! pipe-separated with stray spaces) beside a `flickr30k_images/` folder, optionally with
//! Karpathy's `dataset_flickr30k.json` for the standard 29000/1014/1000 split.
//!
//! The real file has a known defect: at least one line lost the separator between the caption
//! number and the caption (`2199200615.jpg| 4 A dog runs on the green grass near a wooden
//! fence .`). Such lines are repaired, and counted in the report, rather than dropped.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use super::{
    read_file,
    split::{derived_splits, karpathy_splits, read_karpathy},
    Candidate, IngestError, Parsed, SkipReason,
};
use crate::data::{ImageId, Split};

pub struct Flickr30kSource<'a> {
    /// `results.csv`; without it, captions come from the Karpathy file.
    pub captions: Option<&'a Path>,
    /// The image folder (`flickr30k_images/`).
    pub images: &'a Path,
    pub karpathy: Option<&'a Path>,
    pub seed: u64,
}

pub fn parse(src: &Flickr30kSource) -> Result<Parsed, IngestError> {
    let mut parsed = Parsed::default();
    let karpathy = src.karpathy.map(read_karpathy).transpose()?;
    // image name → (caption number → text), plus where the image was first seen
    let mut captions: BTreeMap<String, BTreeMap<u32, String>> = BTreeMap::new();
    let mut origin: HashMap<String, String> = HashMap::new();
    match (src.captions, &karpathy) {
        (Some(csv), _) => parse_results_csv(csv, &mut parsed, &mut captions, &mut origin)?,
        (None, Some(k)) => {
            let name = src.karpathy.unwrap().display().to_string();
            for (i, img) in k.images.iter().enumerate() {
                parsed.read += 1;
                let entry = captions.entry(img.filename.clone()).or_default();
                for (n, s) in img.sentences.iter().enumerate() {
                    entry.insert(n as u32, s.raw.trim().to_string());
                }
                origin
                    .entry(img.filename.clone())
                    .or_insert_with(|| format!("{name}#{i}"));
            }
        }
        (None, None) => {
            return Err(IngestError::Format(
                "flickr30k needs results.csv, a Karpathy split file, or both".into(),
            ))
        }
    }
    let names: Vec<String> = captions.keys().cloned().collect();
    let splits = match &karpathy {
        Some(k) => karpathy_splits(k)?,
        None => derived_splits(&names, src.seed),
    };
    for (name, caps) in captions {
        let at = origin.remove(&name).unwrap_or_default();
        let id = match ImageId::new(name.clone()) {
            Ok(id) => id,
            Err(e) => {
                parsed
                    .problems
                    .push((at, SkipReason::InvalidId(e.to_string())));
                continue;
            }
        };
        let split: Option<Split> = splits.get(&name).copied();
        parsed.candidates.push(Candidate {
            id,
            file: Some(src.images.join(&name)),
            captions: caps.into_values().collect(),
            split,
            fields: Default::default(),
            origin: at,
        });
    }
    Ok(parsed)
}

fn parse_results_csv(
    path: &Path,
    parsed: &mut Parsed,
    captions: &mut BTreeMap<String, BTreeMap<u32, String>>,
    origin: &mut HashMap<String, String>,
) -> Result<(), IngestError> {
    let text = read_file(path)?;
    let file = path.display().to_string();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let at = format!("{file}:{line_no}");
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line_no == 1 && line.replace(' ', "").starts_with("image_name|") {
            continue; // header
        }
        parsed.read += 1;
        let fields: Vec<&str> = line.splitn(3, '|').map(str::trim).collect();
        let (name, number, comment) = match fields.as_slice() {
            [name, number, comment] => (*name, number.parse::<u32>().ok(), comment.to_string()),
            // the known defect: "name| 4 A dog runs …"
            [name, rest] => match rest.split_once(' ') {
                Some((n, c)) if n.parse::<u32>().is_ok() => {
                    (*name, n.parse().ok(), c.trim().to_string())
                }
                _ => (*name, None, String::new()),
            },
            _ => ("", None, String::new()),
        };
        let Some(number) = number.filter(|_| !name.is_empty() && !comment.is_empty()) else {
            parsed.problems.push((
                at,
                SkipReason::Malformed(format!(
                    "expected `image_name| number| comment`, got {:?}",
                    truncate(line)
                )),
            ));
            continue;
        };
        let entry = captions.entry(name.to_string()).or_default();
        if entry.contains_key(&number) {
            parsed.problems.push((
                at,
                SkipReason::DuplicateCaption(format!("{name} caption {number} appears twice")),
            ));
            continue;
        }
        entry.insert(number, comment);
        origin.entry(name.to_string()).or_insert(at);
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
