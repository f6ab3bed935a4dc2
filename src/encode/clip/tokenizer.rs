//! Text → token ids exactly as each family's reference tokenizer does it.
//!
//! - CLIP in transformers' layout: its `tokenizer.json` when the snapshot has one, else the same
//!   tokenizer built from `vocab.json` + `merges.txt` the way transformers' `CLIPTokenizer` builds
//!   it (NFC, whitespace runs to one space, lower case; CLIP's split pattern; byte-level BPE with
//!   `</w>` word ends; `<|startoftext|>` … `<|endoftext|>`).
//! - OpenCLIP: snapshots carry no vocabulary (open_clip ships it in its wheel), so it comes from
//!   the kit's `clip-bpe` (the same file, pinned), with open_clip's cleaning before it
//!   ([`super::clean`]) and its special tokens `<start_of_text>` / `<end_of_text>`.
//! - SigLIP: its SentencePiece `spiece.model` ([`super::spm`]), after transformers'
//!   `SiglipTokenizer` canonicalisation (lower case, ASCII punctuation removed, whitespace
//!   collapsed), `</s>` appended, padded to the context with the pad token.
//! - SigLIP2 at a fixed resolution (`model_type: siglip` with Gemma's `tokenizer.json` and no
//!   `spiece.model`): that tokenizer as is (it appends `<eos>`), padded to the context on the side
//!   `tokenizer_config.json` says (GemmaTokenizer's default: the left).
//!
//! Every text is cut to the model's context (the end token kept last), so any text is valid input.

use std::path::{Path, PathBuf};

use tokenizers::{
    models::bpe::BPE,
    normalizers::{Lowercase, Replace, Sequence as NormalizerSequence, NFC},
    pre_tokenizers::{byte_level::ByteLevel, sequence::Sequence, split::Split},
    processors::roberta::RobertaProcessing,
    AddedToken, SplitDelimiterBehavior, Tokenizer, TruncationParams,
};

use super::config::{Family, TextConfig, TextPooling};

/// CLIP's pre-tokenizer pattern, with the family's special tokens first.
fn split_pattern(start: &str, end: &str) -> String {
    let esc = |t: &str| regex_escape(t);
    format!(
        r"{}|{}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
        esc(start),
        esc(end)
    )
}

fn regex_escape(t: &str) -> String {
    t.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{dir}: no tokenizer (expected {expected})")]
    Missing {
        dir: PathBuf,
        expected: &'static str,
    },
    #[error("open_clip snapshots carry no vocabulary: it comes from the kit's clip-bpe ({0}), which is missing; run `xmodal models fetch`")]
    NoKitVocabulary(PathBuf),
    #[error("tokenizing: {0}")]
    Encode(String),
}

/// How texts are prepared before the tokenizer proper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clean {
    /// The tokenizer's own normaliser does it (transformers' CLIP).
    None,
    /// open_clip's `basic_clean` + `whitespace_clean` + lower case.
    OpenClip,
    /// transformers' `SiglipTokenizer.canonicalize_text`.
    Siglip,
    /// SigLIP2's Gemma `tokenizer.json`: its own normaliser and post-processor do everything.
    Gemma,
}

pub struct ClipTokenizer {
    inner: Tokenizer,
    clean: Clean,
    /// Tokens per text at most (the model's positions), the end token included.
    context: usize,
    /// Pad every text to `context` with this id (SigLIP pools the last position).
    pad: Option<u32>,
    /// Pads go before the text (GemmaTokenizer's `padding_side` default).
    pad_left: bool,
    eos: u32,
    /// What the tokenizer was built from (part of the feature set's identity).
    source: &'static str,
}

impl ClipTokenizer {
    /// The tokenizer for a snapshot `dir` of `family`; `kit_bpe` is the kit's CLIP vocabulary
    /// (`models/clip-bpe/bpe_simple_vocab_16e6.txt.gz`), needed by open_clip snapshots only.
    pub fn load(
        dir: &Path,
        family: Family,
        text: &TextConfig,
        kit_bpe: &Path,
    ) -> Result<Self, TokenizerError> {
        let (inner, clean, source) = match family {
            Family::Clip => {
                let json = dir.join("tokenizer.json");
                if json.exists() {
                    let t = Tokenizer::from_file(&json).map_err(|e| TokenizerError::Invalid {
                        path: json.clone(),
                        message: e.to_string(),
                    })?;
                    (t, Clean::None, "tokenizer.json")
                } else if dir.join("vocab.json").exists() && dir.join("merges.txt").exists() {
                    let (vocab, merges) = read_vocab_and_merges(dir)?;
                    (
                        bpe_tokenizer(vocab, merges, "<|startoftext|>", "<|endoftext|>", dir)?,
                        Clean::None,
                        "vocab.json+merges.txt",
                    )
                } else {
                    return Err(TokenizerError::Missing {
                        dir: dir.to_path_buf(),
                        expected: "tokenizer.json, or vocab.json and merges.txt",
                    });
                }
            }
            Family::OpenClip => {
                if !kit_bpe.exists() {
                    return Err(TokenizerError::NoKitVocabulary(kit_bpe.to_path_buf()));
                }
                let (vocab, merges) = read_open_clip_bpe(kit_bpe)?;
                (
                    bpe_tokenizer(vocab, merges, "<start_of_text>", "<end_of_text>", kit_bpe)?,
                    Clean::OpenClip,
                    "open_clip-bpe",
                )
            }
            Family::Siglip => {
                let model = dir.join("spiece.model");
                let json = dir.join("tokenizer.json");
                if model.exists() {
                    (
                        super::spm::unigram_tokenizer(&model)?,
                        Clean::Siglip,
                        "spiece.model",
                    )
                } else if json.exists() {
                    let t = Tokenizer::from_file(&json).map_err(|e| TokenizerError::Invalid {
                        path: json.clone(),
                        message: e.to_string(),
                    })?;
                    (t, Clean::Gemma, "tokenizer.json")
                } else {
                    return Err(TokenizerError::Missing {
                        dir: dir.to_path_buf(),
                        expected: "spiece.model, or SigLIP2's tokenizer.json",
                    });
                }
            }
        };
        let mut tokenizer = Self::finish(inner, clean, text, source)?;
        if family == Family::Siglip {
            let config = tokenizer_config(dir);
            let default_pad = if clean == Clean::Gemma {
                "<pad>"
            } else {
                "</s>"
            };
            let name = config
                .as_ref()
                .and_then(pad_token)
                .unwrap_or_else(|| default_pad.into());
            let pad = tokenizer.inner.token_to_id(&name).ok_or_else(|| {
                TokenizerError::Encode(format!(
                    "the pad token {name:?} is not in {}",
                    tokenizer.source
                ))
            })?;
            tokenizer.pad = Some(pad);
            tokenizer.pad_left = clean == Clean::Gemma && padding_side_is_left(config.as_ref());
        }
        Ok(tokenizer)
    }

    fn finish(
        mut inner: Tokenizer,
        clean: Clean,
        text: &TextConfig,
        source: &'static str,
    ) -> Result<Self, TokenizerError> {
        let eos_name = match clean {
            Clean::None => "<|endoftext|>",
            Clean::OpenClip => "<end_of_text>",
            Clean::Siglip => "</s>",
            Clean::Gemma => "<eos>",
        };
        let eos = inner
            .token_to_id(eos_name)
            .ok_or_else(|| TokenizerError::Encode(format!("the vocabulary has no {eos_name}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: text.context,
                ..Default::default()
            }))
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        if text.pooling == TextPooling::Last && !matches!(clean, Clean::Siglip | Clean::Gemma) {
            return Err(TokenizerError::Encode(
                "last-position pooling needs SigLIP's tokenizer".into(),
            ));
        }
        Ok(Self {
            inner,
            clean,
            context: text.context,
            pad: None,
            pad_left: false,
            eos,
            source,
        })
    }

    pub fn source(&self) -> &'static str {
        self.source
    }

    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Each text's ids: start token (CLIP), the text's tokens, the end token; at most `context`
    /// of them, and exactly `context` where the model pads (SigLIP).
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let cleaned: Vec<String> = texts
            .iter()
            .map(|t| match self.clean {
                Clean::None | Clean::Gemma => (*t).to_string(),
                Clean::OpenClip => super::clean::open_clip(t),
                Clean::Siglip => super::clean::siglip(t),
            })
            .collect();
        let encodings = self
            .inner
            .encode_batch(cleaned.iter().map(String::as_str).collect::<Vec<_>>(), true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|e| {
                let mut ids = e.get_ids().to_vec();
                if self.clean == Clean::Siglip {
                    // SentencePiece gives the pieces; SiglipTokenizer appends </s> itself
                    ids.truncate(self.context - 1);
                    ids.push(self.eos);
                }
                match self.pad {
                    Some(pad) if self.pad_left => {
                        let mut padded = vec![pad; self.context - ids.len()];
                        padded.extend(ids);
                        padded
                    }
                    Some(pad) => {
                        ids.resize(self.context, pad);
                        ids
                    }
                    None => ids,
                }
            })
            .collect())
    }
}

fn tokenizer_config(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// `padding_side` of a Gemma tokenizer's config; GemmaTokenizer's class default is the left.
fn padding_side_is_left(cfg: Option<&serde_json::Value>) -> bool {
    cfg.and_then(|c| c.get("padding_side"))
        .and_then(serde_json::Value::as_str)
        .is_none_or(|side| side == "left")
}

/// `tokenizer_config.json`'s `pad_token` (a string, or an added token's `content`).
pub(crate) fn pad_token(cfg: &serde_json::Value) -> Option<String> {
    match cfg.get("pad_token")? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => other.get("content")?.as_str().map(String::from),
    }
}

/// A BPE vocabulary (token, id) and its merges in rank order.
pub type Bpe = (Vec<(String, u32)>, Vec<(String, String)>);

/// vocab.json (token → id) and merges.txt (one "a b" pair per line after a `#version` header).
fn read_vocab_and_merges(dir: &Path) -> Result<Bpe, TokenizerError> {
    let vocab_path = dir.join("vocab.json");
    let invalid = |path: &Path, message: String| TokenizerError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let text =
        std::fs::read_to_string(&vocab_path).map_err(|e| invalid(&vocab_path, e.to_string()))?;
    let vocab: std::collections::HashMap<String, u32> =
        serde_json::from_str(&text).map_err(|e| invalid(&vocab_path, e.to_string()))?;
    let merges_path = dir.join("merges.txt");
    let text =
        std::fs::read_to_string(&merges_path).map_err(|e| invalid(&merges_path, e.to_string()))?;
    let merges = parse_merges(text.lines().filter(|l| !l.starts_with("#version")))
        .map_err(|m| invalid(&merges_path, m))?;
    Ok((vocab.into_iter().collect(), merges))
}

fn parse_merges<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Vec<(String, String)>, String> {
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
                _ => Err(format!("merge line {l:?} is not two symbols")),
            }
        })
        .collect()
}

/// open_clip's `bpe_simple_vocab_16e6.txt.gz`: its first 48,894 merges make the vocabulary
/// (256 byte symbols, the same with `</w>`, one token per merge, then the two special tokens),
/// exactly as `open_clip.tokenizer.SimpleTokenizer` reads it.
pub fn read_open_clip_bpe(path: &Path) -> Result<Bpe, TokenizerError> {
    use std::io::Read;
    let invalid = |message: String| TokenizerError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| invalid(e.to_string()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(|e| invalid(e.to_string()))?;
    const MERGES: usize = 49152 - 256 - 2;
    let lines: Vec<&str> = text.split('\n').skip(1).take(MERGES).collect();
    if lines.len() != MERGES {
        return Err(invalid(format!(
            "{} merges, expected {MERGES}",
            lines.len()
        )));
    }
    let merges = parse_merges(lines.into_iter()).map_err(invalid)?;
    let symbols = byte_symbols();
    let mut tokens: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
    tokens.extend(symbols.iter().map(|c| format!("{c}</w>")));
    tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    tokens.push("<start_of_text>".into());
    tokens.push("<end_of_text>".into());
    let vocab = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect();
    Ok((vocab, merges))
}

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the others are shifted to
/// 256 and up, in byte order.
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut order: Vec<u32> = (0..256).filter(|&b| printable(b)).collect();
    let mut symbols: Vec<u32> = order.clone();
    let mut next = 256;
    for b in 0..256 {
        if !printable(b) {
            order.push(b);
            symbols.push(next);
            next += 1;
        }
    }
    symbols
        .into_iter()
        .map(|c| char::from_u32(c).expect("a valid scalar"))
        .collect()
}

/// transformers' `CLIPTokenizer` pipeline over a vocabulary and merges, with `start`/`end` as
/// the special tokens.
fn bpe_tokenizer(
    vocab: Vec<(String, u32)>,
    merges: Vec<(String, String)>,
    start: &str,
    end: &str,
    path: &Path,
) -> Result<Tokenizer, TokenizerError> {
    let invalid = |message: String| TokenizerError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let id = |t: &str| {
        vocab
            .iter()
            .find(|(k, _)| k == t)
            .map(|(_, i)| *i)
            .ok_or_else(|| invalid(format!("the vocabulary has no {t}")))
    };
    let (start_id, end_id) = (id(start)?, id(end)?);
    let bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .into_iter()
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .unk_token(end.to_string())
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix("</w>".to_string())
        .fuse_unk(false)
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    let mut t = Tokenizer::new(bpe);
    let regex = |p: &str| tokenizers::normalizers::replace::ReplacePattern::Regex(p.to_string());
    t.with_normalizer(Some(NormalizerSequence::new(vec![
        NFC.into(),
        Replace::new(regex(r"\s+"), " ")
            .map_err(|e| invalid(e.to_string()))?
            .into(),
        Lowercase.into(),
    ])))
    .map_err(|e| invalid(e.to_string()))?;
    let split = Split::new(
        tokenizers::pre_tokenizers::split::SplitPattern::Regex(split_pattern(start, end)),
        SplitDelimiterBehavior::Removed,
        true,
    )
    .map_err(|e| invalid(e.to_string()))?;
    t.with_pre_tokenizer(Some(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    t.with_post_processor(Some(
        RobertaProcessing::new((end.to_string(), end_id), (start.to_string(), start_id))
            .trim_offsets(false)
            .add_prefix_space(false),
    ));
    t.add_special_tokens(vec![
        AddedToken::from(start.to_string(), true),
        AddedToken::from(end.to_string(), true),
    ])
    .map_err(|e| invalid(e.to_string()))?;
    Ok(t)
}
