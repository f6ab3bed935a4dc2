//! Our CLIP-family tokenizers against the reference ones on 320 strings (empty, whitespace,
//! Unicode, emoji, HTML entities, mixed case, punctuation, over 77 tokens, and seeded random
//! mixes): transformers' CLIPTokenizer and open_clip's SimpleTokenizer with CLIP's full
//! vocabulary (the kit's clip-bpe, the file open_clip ships), and transformers' SiglipTokenizer
//! with the SigLIP fixture's SentencePiece model. Made by scripts/fixtures/make_clip_fixtures.py.

use std::path::Path;

use xmodal::encode::clip::{tokenizer::ClipTokenizer, ClipConfig, Family};

use crate::{clip_parity::clip_fixture, common::*};

fn tokenizer(dir: &Path, family: Family) -> ClipTokenizer {
    let cfg = ClipConfig::load(dir, family).unwrap();
    let kit = kit_model("clip-bpe").join("bpe_simple_vocab_16e6.txt.gz");
    ClipTokenizer::load(dir, family, &cfg.text, &kit).unwrap()
}

/// Strings whose ids differ, as (string, ours, theirs).
fn mismatches<'a>(
    strings: &'a [String],
    ours: &[Vec<u32>],
    theirs: &[Vec<u32>],
) -> Vec<(&'a str, Vec<u32>, Vec<u32>)> {
    strings
        .iter()
        .zip(ours.iter().zip(theirs))
        .filter(|(_, (a, b))| a != b)
        .map(|(s, (a, b))| (s.as_str(), a.clone(), b.clone()))
        .collect()
}

/// transformers' CLIPTokenizer with CLIP's full vocabulary, which a snapshot such as
/// openai/clip-vit-base-patch32 carries as vocab.json + merges.txt: written here from the kit's
/// BPE file as that snapshot has them, and read by our vocab.json + merges.txt path.
#[test]
fn clip_tokenizer_matches_transformers_on_320_strings() {
    let fx = read_json("clip/tokenizer_clip.json");
    let strings = strings(&fx["strings"]);
    let dir = tempdir("clip-full-vocab");
    std::fs::copy(
        clip_fixture("clip-tiny").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let (vocab, merges) = xmodal::encode::clip::tokenizer::read_open_clip_bpe(
        &kit_model("clip-bpe").join("bpe_simple_vocab_16e6.txt.gz"),
    )
    .unwrap();
    let rename = |t: String| match t.as_str() {
        "<start_of_text>" => "<|startoftext|>".to_string(),
        "<end_of_text>" => "<|endoftext|>".to_string(),
        _ => t,
    };
    let vocab: serde_json::Map<String, serde_json::Value> = vocab
        .into_iter()
        .map(|(t, i)| (rename(t), i.into()))
        .collect();
    std::fs::write(
        dir.join("vocab.json"),
        serde_json::to_string(&vocab).unwrap(),
    )
    .unwrap();
    let merges: Vec<String> = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
    std::fs::write(
        dir.join("merges.txt"),
        format!("#version: 0.2\n{}\n", merges.join("\n")),
    )
    .unwrap();
    let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
    let ours = tokenizer(&dir, Family::Clip).encode(&refs).unwrap();
    let wrong = mismatches(&strings, &ours, &u32_rows(&fx["hf_ids"]));
    eprintln!(
        "CLIP tokenizer: {}/{} identical to transformers' CLIPTokenizer",
        strings.len() - wrong.len(),
        strings.len()
    );
    assert!(wrong.is_empty(), "differ from transformers: {wrong:?}");
    assert!(ours.iter().all(|t| t.len() <= 77));
}

/// open_clip's tokenizer (its own cleaning: ftfy, html.unescape, its special tokens). The one
/// thing not reproduced is ftfy's mojibake repair, which only the two mojibake strings need.
#[test]
fn open_clip_tokenizer_matches_open_clip_on_320_strings() {
    let fx = read_json("clip/tokenizer_clip.json");
    let strings = strings(&fx["strings"]);
    let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
    let ours = tokenizer(&clip_fixture("openclip-tiny"), Family::OpenClip)
        .encode(&refs)
        .unwrap();
    let wrong = mismatches(&strings, &ours, &u32_rows(&fx["open_clip_ids"]));
    eprintln!(
        "OpenCLIP tokenizer: {}/{} identical to open_clip's SimpleTokenizer; differing: {:?}",
        strings.len() - wrong.len(),
        strings.len(),
        wrong.iter().map(|w| w.0).collect::<Vec<_>>()
    );
    let expected: [&str; 2] = ["cafÃ© mojibake", "ÃƒÂ©"];
    assert!(
        wrong.iter().all(|(s, _, _)| expected.contains(s)),
        "differ from open_clip: {wrong:?}"
    );
}

#[test]
fn siglip_tokenizer_matches_transformers_on_320_strings() {
    let fx = read_json("clip/tokenizer_siglip.json");
    let strings = strings(&fx["strings"]);
    let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
    let ours = tokenizer(&clip_fixture("siglip-tiny"), Family::Siglip)
        .encode(&refs)
        .unwrap();
    let wrong = mismatches(&strings, &ours, &u32_rows(&fx["ids"]));
    eprintln!(
        "SigLIP tokenizer: {}/{} identical to transformers' SiglipTokenizer",
        strings.len() - wrong.len(),
        strings.len()
    );
    assert!(wrong.is_empty(), "differ from transformers: {wrong:?}");
    assert!(ours.iter().all(|t| t.len() == 64));
}
