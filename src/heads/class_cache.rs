//! The zero-shot head's class embeddings, kept on disk beside the feature cache: making them runs
//! the text encoder over 2,000 class descriptions (6.6 s at start-up in a release build on 2
//! cores), and they change only with the text encoder or the class texts.

use std::{collections::HashMap, path::Path};

use candle_core::{DType, Device, Tensor};

use super::conse::{class_embeddings, class_texts_hash, ClassText};
use crate::{
    encode::{EncodeError, TextEncoder},
    features::FeatureSetId,
};

const TENSOR: &str = "class_embeddings";
const TEXTS: &str = "class_texts_sha256";

/// The class embeddings for `text` (feature set `text_set`): read from `dir` when a file made
/// from the same texts and encoder is there, else computed and written (atomically; a failed
/// write costs only the next start's time, so it is logged, not fatal).
pub fn load_or_make(
    dir: &Path,
    text: &TextEncoder,
    text_set: &FeatureSetId,
    class_text: ClassText,
    device: &Device,
) -> Result<Tensor, EncodeError> {
    let path = dir.join(format!(
        "zero-shot-{}-{text_set}.safetensors",
        class_text.tag()
    ));
    let hash = class_texts_hash(class_text);
    if let Some(found) = read(&path, &hash, text.dims(), device) {
        return Ok(found);
    }
    let made = class_embeddings(text, class_text)?;
    if let Err(e) = write(&path, &made, &hash) {
        tracing::warn!(
            "cannot keep the zero-shot class embeddings at {}: {e}",
            path.display()
        );
    }
    Ok(made)
}

fn read(path: &Path, hash: &str, dims: usize, device: &Device) -> Option<Tensor> {
    let bytes = std::fs::read(path).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    if meta.metadata().as_ref()?.get(TEXTS)? != hash {
        return None;
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).ok()?;
    let t = tensors.get(TENSOR)?;
    (t.dims() == [crate::heads::conse::CLASSES, dims] && t.dtype() == DType::F32).then(|| t.clone())
}

fn write(path: &Path, embeddings: &Tensor, hash: &str) -> Result<(), Box<dyn std::error::Error>> {
    let data = embeddings.to_device(&Device::Cpu)?.contiguous()?;
    let meta: HashMap<String, String> = [(TEXTS.to_string(), hash.to_string())].into();
    let bytes = safetensors::serialize([(TENSOR, &data)], Some(meta))?;
    crate::fsutil::write_atomic(path, &bytes)?;
    Ok(())
}
