//! Which encoders a command or the server runs, in one place: the flags (`--image-model`,
//! `--text-model`, `--pooling`, `--image-features`), their defaults (the kit's models), and the
//! loader every command and `serve` share, with the feature sets the encoders produce.

use std::path::{Path, PathBuf};

use candle_core::Device;
use clap::Args;

use super::{import::find_imported, FeatureSpec};
use crate::encode::{ImageEncoder, Pooling, Precision, TextEncoder, TextOptions, TextQuantization};

#[derive(Debug, Clone, Default, Args)]
pub struct EncoderSpec {
    /// A joint text–image model for both sides: a CLIP, SigLIP or OpenCLIP snapshot directory
    /// (the same as `--text-model DIR --image-model DIR`).
    #[arg(long, env = "XMODAL_MODEL", conflicts_with_all = ["image_model", "text_model", "image_features"])]
    pub model: Option<PathBuf>,
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
    /// What BERT and the CNNs compute in: auto = f16 on a GPU, f32 on the CPU. Features are
    /// handed on as f32 either way; a precision other than f32 is a different feature set, which
    /// heads trained on the f32 one accept (and the other way round).
    #[arg(long, env = "XMODAL_PRECISION", value_enum, default_value_t)]
    pub precision: Precision,
    /// BERT's dense layers: auto = int8 on the CPU in f32, none elsewhere (a CLIP-family text
    /// tower: none unless int8 is asked for). int8 is a different feature set, which heads
    /// trained on f32 features accept.
    #[arg(long, env = "XMODAL_TEXT_QUANTIZATION", value_enum, default_value_t = TextQuantization::Auto)]
    pub text_quantization: TextQuantization,
}

/// Loaded encoders and the feature sets they produce.
pub struct Encoders {
    /// `None` when the image features were imported (no encoder can compute more of them).
    pub image: Option<ImageEncoder>,
    pub text: TextEncoder,
    pub image_spec: FeatureSpec,
    pub text_spec: FeatureSpec,
}

impl EncoderSpec {
    pub fn image_dir(&self, models_dir: &Path) -> PathBuf {
        let given = self.model.as_deref().or(self.image_model.as_deref());
        crate::kit::image_model_dir(models_dir, given)
    }

    pub fn text_dir(&self, models_dir: &Path) -> PathBuf {
        let given = self.model.as_deref().or(self.text_model.as_deref());
        crate::kit::text_model_dir(models_dir, given)
    }

    pub fn text_options(&self, models_dir: &Path) -> TextOptions {
        TextOptions {
            pooling: self.pooling,
            precision: self.precision,
            quantization: self.text_quantization,
            models_dir: models_dir.to_path_buf(),
            ..Default::default()
        }
    }

    /// The image encoder alone (with its feature set), for work on images only.
    pub fn load_image(
        &self,
        models_dir: &Path,
        device: &Device,
    ) -> anyhow::Result<(ImageEncoder, FeatureSpec)> {
        let dir = self.image_dir(models_dir);
        let image = ImageEncoder::load(&dir, self.precision, device)?;
        let spec = FeatureSpec::for_image(&dir, &image)?;
        Ok((image, spec))
    }

    /// The text encoder alone (with its feature set).
    pub fn load_text(
        &self,
        models_dir: &Path,
        device: &Device,
    ) -> anyhow::Result<(TextEncoder, FeatureSpec)> {
        let dir = self.text_dir(models_dir);
        let text = TextEncoder::load(&dir, &self.text_options(models_dir), device)?;
        let spec = FeatureSpec::for_text(&dir, &text)?;
        Ok((text, spec))
    }

    /// Both encoders; imported image features (`--image-features`) are found under
    /// `features_dir`, and then no image encoder is loaded.
    pub fn load(
        &self,
        models_dir: &Path,
        features_dir: &Path,
        device: &Device,
    ) -> anyhow::Result<Encoders> {
        let (image, image_spec) = match &self.image_features {
            Some(name) => (None, find_imported(features_dir, name)?),
            None => {
                let (image, spec) = self.load_image(models_dir, device)?;
                (Some(image), spec)
            }
        };
        let (text, text_spec) = self.load_text(models_dir, device)?;
        Ok(Encoders {
            image,
            text,
            image_spec,
            text_spec,
        })
    }
}

impl Encoders {
    /// The model's name when both encoders are the two towers of one CLIP-family snapshot, whose
    /// features then share a space of their own.
    pub fn joint(&self) -> Option<&str> {
        self.image.as_ref()?.zero_shot_logits()?;
        if !self.text.is_joint_tower() {
            return None;
        }
        (self.image_spec.manifest_sha256 == self.text_spec.manifest_sha256)
            .then_some(self.image_spec.encoder.as_str())
    }

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
