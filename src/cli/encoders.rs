//! Encoder selection shared by commands that work on features: which model directories, and the
//! feature sets they produce.

use std::path::{Path, PathBuf};

use candle_core::Device;
use clap::Args;

use crate::{
    encode::{ImageEncoder, Pooling, TextEncoder, TextOptions},
    features::{import::find_imported, FeatureSpec},
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
    #[arg(long, env = "XMODAL_POOLING", value_enum)]
    pub pooling: Option<Pooling>,
    /// Use imported image features (`xmodal import`) instead of an image encoder: the feature
    /// set's id, or the encoder name given at import.
    #[arg(long, env = "XMODAL_IMAGE_FEATURES", conflicts_with = "image_model")]
    pub image_features: Option<String>,
}

pub struct Encoders {
    /// `None` when the image features were imported (no encoder can compute more of them).
    pub image: Option<ImageEncoder>,
    pub text: TextEncoder,
    pub image_spec: FeatureSpec,
    pub text_spec: FeatureSpec,
}

impl EncoderArgs {
    pub fn image_dir(&self, models_dir: &Path) -> PathBuf {
        crate::kit::image_model_dir(models_dir, self.image_model.as_deref())
    }

    pub fn text_dir(&self, models_dir: &Path) -> PathBuf {
        crate::kit::text_model_dir(models_dir, self.text_model.as_deref())
    }

    pub fn load(
        &self,
        models_dir: &Path,
        data_dir: &Path,
        device: &Device,
    ) -> anyhow::Result<Encoders> {
        let (image_dir, text_dir) = (self.image_dir(models_dir), self.text_dir(models_dir));
        let (image, image_spec) = match &self.image_features {
            Some(name) => (None, find_imported(&data_dir.join("features"), name)?),
            None => {
                let image = ImageEncoder::load(&image_dir, device)?;
                let spec = FeatureSpec::for_image(&image_dir, &image)?;
                (Some(image), spec)
            }
        };
        let text = TextEncoder::load(
            &text_dir,
            &TextOptions {
                pooling: self.pooling,
                ..Default::default()
            },
            device,
        )?;
        let text_spec = FeatureSpec::for_text(&text_dir, &text)?;
        Ok(Encoders {
            image,
            text,
            image_spec,
            text_spec,
        })
    }
}

impl Encoders {
    /// The image encoder, for work that computes image features.
    pub fn image_encoder(&self) -> anyhow::Result<&ImageEncoder> {
        self.image.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "image features {} were imported; this needs an image encoder (drop --image-features)",
                self.image_spec.id()
            )
        })
    }
}
