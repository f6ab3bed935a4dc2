//! Heads named on the command line or in a config: `zero-shot` (a CLIP-family model's own joint
//! space, named after the model; otherwise ConSE over the image model's ImageNet classifier and
//! the text encoder) or a trained heads directory, checked against the feature sets the loaded
//! encoders produce. `serve` and `eval` open heads the same way.

use std::path::Path;

use candle_core::Device;
use sha2::{Digest, Sha256};

use super::{
    class_cache, conse::ClassText, ConSE, HeadsError, Projector, TrainedHeads, HEADS_CONFIG,
    HEADS_WEIGHTS,
};
use crate::features::encoders::Encoders;

/// What `--heads` calls the zero-shot head.
pub const ZERO_SHOT: &str = "zero-shot";

/// An opened projector with its name (what requests pass as `model`) and identity (a hash of its
/// weights or its parameters: derived indexes are valid only for it).
pub struct OpenedHeads {
    pub name: String,
    pub projector: Projector,
    pub id: String,
}

/// Open `heads` (`zero-shot` or a directory) for `encoders`' feature sets, on `device`. The
/// zero-shot head's class embeddings are kept in `features_dir` (the feature cache's directory).
pub fn open(
    heads: &str,
    encoders: &Encoders,
    zero_shot_top: usize,
    features_dir: &Path,
    device: &Device,
) -> Result<OpenedHeads, HeadsError> {
    if heads == ZERO_SHOT {
        if let Some(model) = encoders.joint() {
            return Ok(OpenedHeads {
                name: model.to_string(),
                projector: Projector::Joint,
                id: "joint".into(),
            });
        }
        let image = encoders
            .image
            .as_ref()
            .ok_or_else(|| HeadsError::ImportedFeatures(encoders.image_spec.id().0))?;
        let classifier = image
            .classifier()
            .cloned()
            .ok_or(HeadsError::NoClassifier)?;
        let class_text = ClassText::NameAndGloss;
        let classes = class_cache::load_or_make(
            features_dir,
            &encoders.text,
            &encoders.text_spec.id(),
            class_text,
            device,
        )
        .map_err(|e| HeadsError::ZeroShot(Box::new(e)))?;
        let conse = ConSE::with_class_embeddings(classifier, classes, zero_shot_top);
        return Ok(OpenedHeads {
            name: ZERO_SHOT.to_string(),
            projector: Projector::ZeroShot(Box::new(conse)),
            id: format!("conse:{}:top{zero_shot_top}", class_text.tag()),
        });
    }
    let dir = Path::new(heads);
    let trained = TrainedHeads::load(dir, device)?;
    trained.check_features(&encoders.image_spec, &encoders.text_spec)?;
    let mut hash = Sha256::new();
    for file in [HEADS_WEIGHTS, HEADS_CONFIG] {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|source| HeadsError::Io { path, source })?;
        hash.update(bytes);
    }
    Ok(OpenedHeads {
        name: trained.config.name.clone(),
        projector: Projector::Trained(Box::new(trained)),
        id: format!("heads:{:x}", hash.finalize()),
    })
}
