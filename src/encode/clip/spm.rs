//! A SentencePiece model (`spiece.model`, what google/siglip-* ship) as a `tokenizers` Unigram
//! tokenizer: the protobuf is read here (its pieces and scores, the unknown piece, the
//! normaliser's precompiled character map and whitespace options), and the pipeline is the one
//! SentencePiece runs: character-map normalisation, whitespace runs collapsed, `▁` for spaces and
//! before the first word, Viterbi over the pieces. tests/it/clip_tokenizer.rs holds it to
//! transformers' `SiglipTokenizer` (the sentencepiece library itself) on a few hundred strings.
//!
//! Only the protobuf fields that change tokenization are read; the reader is a few lines of
//! wire-format parsing rather than a protobuf crate with generated code for one message.

use std::path::Path;

use tokenizers::{
    models::unigram::Unigram,
    normalizers::{Precompiled, Replace, Sequence as NormalizerSequence, Strip},
    pre_tokenizers::metaspace::{Metaspace, PrependScheme},
    NormalizerWrapper, Tokenizer,
};

use super::tokenizer::TokenizerError;

/// A piece's type (sentencepiece_model.proto).
const UNKNOWN: u64 = 2;
/// TrainerSpec.model_type: UNIGRAM.
const UNIGRAM: u64 = 1;

struct Model {
    pieces: Vec<(String, f64)>,
    unk_id: Option<usize>,
    byte_fallback: bool,
    charsmap: Vec<u8>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    model_type: u64,
}

/// The tokenizer SentencePiece would run for `path`.
pub fn unigram_tokenizer(path: &Path) -> Result<Tokenizer, TokenizerError> {
    let invalid = |message: String| TokenizerError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let model = parse(&bytes).map_err(|e| invalid(format!("not a SentencePiece model: {e}")))?;
    if model.model_type != UNIGRAM {
        return Err(invalid(format!(
            "SentencePiece model type {} is not supported (unigram is)",
            model.model_type
        )));
    }
    let unigram = Unigram::from(model.pieces, model.unk_id, model.byte_fallback)
        .map_err(|e| invalid(e.to_string()))?;
    let mut t = Tokenizer::new(unigram);
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if !model.charsmap.is_empty() {
        normalizers.push(
            Precompiled::from(&model.charsmap)
                .map_err(|e| invalid(format!("precompiled_charsmap: {e}")))?
                .into(),
        );
    }
    if model.remove_extra_whitespaces {
        normalizers.push(Strip::new(true, true).into());
        let runs = tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into());
        normalizers.push(
            Replace::new(runs, " ")
                .map_err(|e| invalid(e.to_string()))?
                .into(),
        );
    }
    t.with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(|e| invalid(e.to_string()))?;
    let scheme = if model.add_dummy_prefix {
        PrependScheme::Always
    } else {
        PrependScheme::Never
    };
    t.with_pre_tokenizer(Some(Metaspace::new('▁', scheme, true)));
    Ok(t)
}

fn parse(bytes: &[u8]) -> Result<Model, String> {
    let mut model = Model {
        pieces: Vec::new(),
        unk_id: None,
        byte_fallback: false,
        charsmap: Vec::new(),
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
        model_type: UNIGRAM,
    };
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Bytes(piece)) => {
                let (mut text, mut score, mut kind) = (String::new(), 0f64, 1u64);
                for f in Fields::new(piece) {
                    match f? {
                        (1, Value::Bytes(s)) => {
                            text = String::from_utf8(s.to_vec()).map_err(|e| e.to_string())?
                        }
                        (2, Value::Fixed32(bits)) => score = f32::from_bits(bits) as f64,
                        (3, Value::Varint(v)) => kind = v,
                        _ => {}
                    }
                }
                if kind == UNKNOWN {
                    model.unk_id = Some(model.pieces.len());
                }
                model.pieces.push((text, score));
            }
            (2, Value::Bytes(trainer)) => {
                for f in Fields::new(trainer) {
                    match f? {
                        (3, Value::Varint(v)) => model.model_type = v,
                        (35, Value::Varint(v)) => model.byte_fallback = v != 0,
                        _ => {}
                    }
                }
            }
            (3, Value::Bytes(normalizer)) => {
                for f in Fields::new(normalizer) {
                    match f? {
                        (2, Value::Bytes(map)) => model.charsmap = map.to_vec(),
                        (3, Value::Varint(v)) => model.add_dummy_prefix = v != 0,
                        (4, Value::Varint(v)) => model.remove_extra_whitespaces = v != 0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if model.pieces.is_empty() {
        return Err("no pieces".into());
    }
    Ok(model)
}

enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of one protobuf message, in wire order.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at).ok_or("truncated varint")?;
            self.at += 1;
            value |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("truncated field")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let field = (|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Value::Fixed64
                }
                2 => {
                    let n = self.varint()? as usize;
                    Value::Bytes(self.take(n)?)
                }
                5 => {
                    let b = self.take(4)?;
                    Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                }
                w => return Err(format!("wire type {w}")),
            };
            Ok((key >> 3, value))
        })();
        if field.is_err() {
            self.at = self.bytes.len();
        }
        Some(field)
    }
}
