//! Static word vectors (GloVe, FastText): a text is the mean or sum of its words' vectors.
//!
//! Out-of-vocabulary policy: unknown words are skipped; a text with no known word at all encodes
//! to the zero vector (its cosine with anything is 0, so it ranks nothing above anything else).

use std::{collections::HashMap, io::BufRead, path::Path};

use candle_core::{DType, Device, Tensor};

use super::{words::split_words, Pooling};
use crate::{
    encode::{l2_normalize, EncodeError},
    kit::{manifest::find_with_extension, Manifest},
};

pub struct StaticVectors {
    index: HashMap<String, usize>,
    /// Row-major `[words, dims]`.
    vectors: Vec<f32>,
    dims: usize,
    pooling: Pooling,
    normalize: bool,
    lowercase: bool,
    name: String,
    device: Device,
}

impl StaticVectors {
    pub fn load(
        dir: &Path,
        manifest: &Manifest,
        pooling: Pooling,
        normalize: bool,
        device: &Device,
    ) -> Result<Self, EncodeError> {
        if pooling == Pooling::Cls {
            return Err(EncodeError::Config(
                "word vectors pool by mean or sum, not cls".into(),
            ));
        }
        let (words, vectors, dims) = if dir.join("vectors.safetensors").exists() {
            load_kit_layout(dir)?
        } else if let Some(vec_file) = find_with_extension(dir, "vec") {
            load_fasttext(&vec_file)?
        } else {
            return Err(EncodeError::Config(format!(
                "{}: no vectors.safetensors or .vec file",
                dir.display()
            )));
        };
        if dims != manifest.dims {
            return Err(EncodeError::Config(format!(
                "{}: vectors have {dims} dims, manifest says {}",
                dir.display(),
                manifest.dims
            )));
        }
        let mut index = HashMap::with_capacity(words.len());
        for (i, w) in words.into_iter().enumerate() {
            index.entry(w).or_insert(i); // first occurrence wins, as in the file's frequency order
        }
        Ok(Self {
            index,
            vectors,
            dims,
            pooling,
            normalize,
            lowercase: manifest.lowercase,
            name: manifest.name.clone(),
            device: device.clone(),
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The options that shape this encoder's output (part of a feature set's identity).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({"model": self.name, "pooling": self.pooling, "normalize": self.normalize, "lowercase": self.lowercase, "oov": "skip"})
    }

    /// The vector of one word, if known.
    pub fn word(&self, word: &str) -> Option<&[f32]> {
        self.index
            .get(word)
            .map(|&i| &self.vectors[i * self.dims..(i + 1) * self.dims])
    }

    /// Words of each text that have a vector (the ones the sentence vector is made of).
    pub fn count_tokens(&self, texts: &[&str]) -> Vec<usize> {
        texts
            .iter()
            .map(|t| {
                split_words(t, self.lowercase)
                    .iter()
                    .filter(|w| self.word(w).is_some())
                    .count()
            })
            .collect()
    }

    pub fn encode(&self, texts: &[&str]) -> Result<Tensor, EncodeError> {
        let mut out = vec![0f32; texts.len() * self.dims];
        for (row, text) in out.chunks_mut(self.dims.max(1)).zip(texts) {
            let mut known = 0usize;
            for word in split_words(text, self.lowercase) {
                if let Some(v) = self.word(&word) {
                    row.iter_mut().zip(v).for_each(|(acc, x)| *acc += x);
                    known += 1;
                }
            }
            if self.pooling == Pooling::Mean && known > 0 {
                row.iter_mut().for_each(|x| *x /= known as f32);
            }
        }
        let t = Tensor::from_vec(out, (texts.len(), self.dims), &self.device)?;
        Ok(if self.normalize { l2_normalize(&t)? } else { t })
    }
}

/// The kit's layout: `vocab.txt` (a word per line) + `vectors.safetensors` holding `vectors`
/// `[words, dims]` or its transpose `vectors_t` (GloVe's .npy ships column-major).
fn load_kit_layout(dir: &Path) -> Result<(Vec<String>, Vec<f32>, usize), EncodeError> {
    let vocab_path = dir.join("vocab.txt");
    let vocab = std::fs::read_to_string(&vocab_path).map_err(|source| EncodeError::Io {
        path: vocab_path,
        source,
    })?;
    let words: Vec<String> = vocab.lines().map(str::to_string).collect();
    let tensors = candle_core::safetensors::load(dir.join("vectors.safetensors"), &Device::Cpu)?;
    let matrix = match (tensors.get("vectors"), tensors.get("vectors_t")) {
        (Some(v), _) => v.clone(),
        (None, Some(t)) => t.t()?.contiguous()?,
        _ => {
            return Err(EncodeError::Config(format!(
                "{}: no `vectors` tensor",
                dir.display()
            )))
        }
    };
    let (rows, dims) = matrix.dims2()?;
    if rows != words.len() {
        return Err(EncodeError::Config(format!(
            "{}: {rows} vectors for {} words",
            dir.display(),
            words.len()
        )));
    }
    Ok((
        words,
        matrix.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
        dims,
    ))
}

/// FastText's text format: a "COUNT DIMS" line, then "word v1 … vD" per line.
fn load_fasttext(path: &Path) -> Result<(Vec<String>, Vec<f32>, usize), EncodeError> {
    let io = |source| EncodeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad =
        |line: usize, what: &str| EncodeError::Config(format!("{}:{line}: {what}", path.display()));
    let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut lines = reader.lines();
    let header = lines
        .next()
        .ok_or_else(|| bad(1, "empty file"))?
        .map_err(io)?;
    let mut fields = header.split_whitespace().map(str::parse::<usize>);
    let (count, dims) = match (fields.next(), fields.next()) {
        (Some(Ok(c)), Some(Ok(d))) if d > 0 => (c, d),
        _ => return Err(bad(1, "expected a \"COUNT DIMS\" header")),
    };
    let mut words = Vec::with_capacity(count);
    let mut vectors = Vec::with_capacity(count * dims);
    for (n, line) in lines.enumerate() {
        let line = line.map_err(io)?;
        let mut parts = line.trim_end().split(' ');
        let word = parts
            .next()
            .filter(|w| !w.is_empty())
            .ok_or_else(|| bad(n + 2, "missing word"))?;
        let before = vectors.len();
        for v in parts {
            vectors.push(
                v.parse::<f32>()
                    .map_err(|_| bad(n + 2, "value is not a number"))?,
            );
        }
        if vectors.len() - before != dims {
            return Err(bad(
                n + 2,
                &format!("expected {dims} values, got {}", vectors.len() - before),
            ));
        }
        words.push(word.to_string());
    }
    Ok((words, vectors, dims))
}
