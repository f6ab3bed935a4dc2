//! Encoder selection shared by commands that work on features: which model directories, and the
//! feature sets they produce.

use std::path::{Path, PathBuf};

use candle_core::Device;
use clap::Args;

use crate::{
    encode::{ImageEncoder, Pooling, TextEncoder, TextOptions},
    features::FeatureSpec,
};

#[derive(Debug, Clone, Args)]
pub struct EncoderArgs {
    /// Image encoder directory (default: MODELS_DIR/efficientnet-lite0).
    #[arg(long, env = "XMODAL_IMAGE_MODEL")]
    pub image_model: Option<PathBuf>,
    /// Text encoder directory (default: MODELS_DIR/minilm-l6).
    #[arg(long, env = "XMODAL_TEXT_MODEL")]
    pub text_model: Option<PathBuf>,
    /// Text pooling override (BERT: cls|mean; word vectors: mean|sum).
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
}

pub struct Encoders {
    pub image: ImageEncoder,
    pub text: TextEncoder,
    pub image_spec: FeatureSpec,
    pub text_spec: FeatureSpec,
}

impl EncoderArgs {
    pub fn image_dir(&self, models_dir: &Path) -> PathBuf {
        self.image_model
            .clone()
            .unwrap_or_else(|| models_dir.join("efficientnet-lite0"))
    }

    pub fn text_dir(&self, models_dir: &Path) -> PathBuf {
        self.text_model
            .clone()
            .unwrap_or_else(|| models_dir.join("minilm-l6"))
    }

    pub fn load(&self, models_dir: &Path, device: &Device) -> anyhow::Result<Encoders> {
        let (image_dir, text_dir) = (self.image_dir(models_dir), self.text_dir(models_dir));
        let image = ImageEncoder::load(&image_dir, device)?;
        let text = TextEncoder::load(
            &text_dir,
            &TextOptions {
                pooling: self.pooling,
                ..Default::default()
            },
            device,
        )?;
        let image_spec = FeatureSpec::for_image(&image_dir, &image)?;
        let text_spec = FeatureSpec::for_text(&text_dir, &text)?;
        Ok(Encoders {
            image,
            text,
            image_spec,
            text_spec,
        })
    }
}
