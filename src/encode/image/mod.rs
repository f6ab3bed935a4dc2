//! Image encoders: a photo becomes one vector (the pooled CNN feature before the classifier, or
//! a CLIP-family vision tower's projected embedding).

mod depthwise;
mod depthwise_generic;
mod efficientnet_lite;
mod epilogue;
mod im2col;
mod layers;
mod mobilenet_v2;
pub mod preprocess;
mod resnet;
mod vgg;

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

pub use efficientnet_lite::EfficientNetLite0;
pub use mobilenet_v2::MobileNetV2;
pub use preprocess::ImageError;
pub use resnet::ResNet50;
pub use vgg::Vgg16;

use super::{
    clip::{ClipVision, Family},
    onnx::{LayoutKind, OnnxVision},
    EncodeError, Precision,
};
use crate::kit::{Architecture, Manifest, Modality, Preprocess};

pub enum Backbone {
    EfficientNetLite0(EfficientNetLite0),
    MobileNetV2(MobileNetV2),
    Vgg16(Vgg16),
    ResNet50(ResNet50),
    /// A CLIP-family vision tower (its features are the projected image embeddings).
    Clip(Box<ClipVision>),
    /// A vision tower in an ONNX model directory, run by ONNX Runtime.
    Onnx(Box<OnnxVision>),
}

impl Backbone {
    /// Build `architecture` from tensors under `vb` (torchvision/timm key names).
    pub fn load(architecture: Architecture, vb: VarBuilder) -> Result<Self, EncodeError> {
        Ok(match architecture {
            Architecture::EfficientnetLite0 => {
                Self::EfficientNetLite0(EfficientNetLite0::load(vb)?)
            }
            Architecture::MobilenetV2 => Self::MobileNetV2(MobileNetV2::load(vb)?),
            Architecture::Vgg16 => Self::Vgg16(Vgg16::load(vb)?),
            Architecture::Resnet50 => Self::ResNet50(ResNet50::load(vb)?),
            other => {
                return Err(EncodeError::Config(format!(
                    "{other:?} is not an image architecture"
                )))
            }
        })
    }

    /// `[N, 3, H, W]` normalised images → `[N, dims]` pooled features.
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::EfficientNetLite0(m) => m.features(x),
            Self::MobileNetV2(m) => m.features(x),
            Self::Vgg16(m) => m.features(x),
            Self::ResNet50(m) => m.features(x),
            Self::Clip(m) => m.features(x),
            Self::Onnx(m) => m
                .features(x)
                .map_err(|e| candle_core::Error::Msg(e.to_string())),
        }
    }

    /// The ImageNet-1k classifier on top of the pooled features, when the checkpoint has it.
    pub fn classifier(&self) -> Option<&candle_nn::Linear> {
        match self {
            Self::EfficientNetLite0(m) => m.classifier(),
            Self::MobileNetV2(m) => m.classifier(),
            Self::Vgg16(m) => m.classifier(),
            Self::ResNet50(m) => m.classifier(),
            Self::Clip(_) | Self::Onnx(_) => None,
        }
    }

    /// ImageNet-1k logits from pooled features (in the backbone's dtype), when the checkpoint
    /// has its classifier.
    pub fn logits(&self, features: &Tensor) -> Option<candle_core::Result<Tensor>> {
        Some(self.classifier()?.forward(features))
    }
}

pub struct ImageEncoder {
    pub manifest: Manifest,
    backbone: Backbone,
    /// The ImageNet-1k classifier in f32 whatever the backbone runs in: it reads the f32
    /// features the encoder hands out (ConSE, tags).
    classifier: Option<candle_nn::Linear>,
    preprocess: Preprocess,
    dtype: DType,
    device: Device,
}

impl ImageEncoder {
    pub fn load(dir: &Path, precision: Precision, device: &Device) -> Result<Self, EncodeError> {
        let mut manifest = Manifest::load(dir)?;
        if let Some(kind) = LayoutKind::of(manifest.architecture) {
            let tower =
                OnnxVision::load(dir, &manifest.name, kind, crate::encode::onnx::threads())?;
            manifest.dims = tower.dims();
            manifest.preprocess = Some(tower.preprocess().clone());
            return Ok(Self {
                manifest,
                preprocess: tower.preprocess().clone(),
                backbone: Backbone::Onnx(Box::new(tower)),
                classifier: None,
                dtype: DType::F32,
                device: Device::Cpu,
            });
        }
        if let Some(family) = Family::of(manifest.architecture) {
            let dtype = precision.dtype(device);
            let cfg = crate::encode::clip::load_config(dir, family)?;
            let tower = ClipVision::load(dir, &manifest.name, &cfg, dtype, device)?;
            manifest.dims = tower.dims();
            manifest.preprocess = Some(cfg.preprocess.clone());
            return Ok(Self {
                manifest,
                backbone: Backbone::Clip(Box::new(tower)),
                classifier: None,
                preprocess: cfg.preprocess,
                dtype,
                device: device.clone(),
            });
        }
        if manifest.modality != Modality::Image {
            return Err(EncodeError::Config(format!(
                "{} is a text model, not an image model",
                dir.display()
            )));
        }
        let dtype = precision.dtype(device);
        if dtype == DType::BF16 && device.is_cpu() {
            return Err(EncodeError::Config(
                "bf16 CNNs run on a GPU only: candle's CPU matmul, which convolutions use, has no \
                 bf16 (use --precision f16 or f32 on the CPU)"
                    .into(),
            ));
        }
        let vb = super::mmap_weights(dir, &manifest.name, dtype, device)?;
        let backbone = Backbone::load(manifest.architecture, vb).map_err(|e| match e {
            EncodeError::Tensor(source) => EncodeError::Weights {
                model: manifest.name.clone(),
                source,
            },
            other => other,
        })?;
        let classifier = backbone
            .classifier()
            .map(|c| -> candle_core::Result<_> {
                let bias = c.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
                Ok(candle_nn::Linear::new(
                    c.weight().to_dtype(DType::F32)?,
                    bias,
                ))
            })
            .transpose()?;
        let preprocess = manifest.preprocess.clone().unwrap_or_default();
        Ok(Self {
            manifest,
            backbone,
            classifier,
            preprocess,
            dtype,
            device: device.clone(),
        })
    }

    pub fn dims(&self) -> usize {
        self.manifest.dims
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// What the backbone computes in (its features come out as f32 regardless).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// Decode and preprocess one encoded image into `[3, crop, crop]` on the encoder's device.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Tensor, EncodeError> {
        self.prepare_decoded(&preprocess::decode(bytes)?)
    }

    /// Preprocess a decoded image into `[3, crop, crop]` on the encoder's device.
    pub fn prepare_decoded(&self, decoded: &preprocess::Decoded) -> Result<Tensor, EncodeError> {
        let pixels = decoded.model_input(&self.preprocess);
        Ok(preprocess::to_tensor(
            &pixels,
            &self.preprocess,
            &self.device,
        )?)
    }

    /// Features for already-prepared images (`[3, crop, crop]` each).
    pub fn encode_prepared(&self, images: &[Tensor]) -> Result<Tensor, EncodeError> {
        if images.is_empty() {
            return Ok(Tensor::zeros((0, self.dims()), DType::F32, &self.device)?);
        }
        let batch = Tensor::stack(images, 0)?.to_dtype(self.dtype)?;
        Ok(self.backbone.features(&batch)?.to_dtype(DType::F32)?)
    }

    /// Features for encoded images; the first undecodable one fails the whole call
    /// (callers that want per-image errors use [`Self::prepare`] first).
    pub fn encode_bytes(&self, images: &[&[u8]]) -> Result<Tensor, EncodeError> {
        let prepared = images
            .iter()
            .map(|b| self.prepare(b))
            .collect::<Result<Vec<_>, _>>()?;
        self.encode_prepared(&prepared)
    }

    pub fn classifier(&self) -> Option<&candle_nn::Linear> {
        self.classifier.as_ref()
    }

    /// The CLIP-family vision tower, when this is one of our own.
    pub fn clip(&self) -> Option<&ClipVision> {
        match &self.backbone {
            Backbone::Clip(tower) => Some(tower),
            _ => None,
        }
    }

    /// What runs the model: our own candle code, or ONNX Runtime for an ONNX directory.
    pub fn backend(&self) -> &'static str {
        match &self.backbone {
            Backbone::Onnx(_) => "onnxruntime",
            _ => "candle",
        }
    }

    /// For the image tower of a dual encoder, how its zero-shot classifier turns cosines into
    /// logits: `(scale, bias)`. ONNX graphs carry no `logit_scale`: CLIP's trained value (100,
    /// the clamp it reaches) stands in; it sharpens tag probabilities, never their order.
    pub fn zero_shot_logits(&self) -> Option<(f32, Option<f32>)> {
        match &self.backbone {
            Backbone::Clip(tower) => Some((tower.logit_scale, tower.logit_bias)),
            Backbone::Onnx(_) => Some((100.0, None)),
            _ => None,
        }
    }

    /// ImageNet-1k logits from pooled features, when the checkpoint has its classifier.
    pub fn logits(&self, features: &Tensor) -> Option<Result<Tensor, EncodeError>> {
        Some(
            self.classifier()?
                .forward(features)
                .map_err(EncodeError::from),
        )
    }
}
