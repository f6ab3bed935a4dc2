//! What a model directory holds, and how to read it: ours carry `xmodal.json`; a directory a user
//! brings (HF-layout BERT, torchvision/timm safetensors, a FastText `.vec`) is recognised by its
//! files and tensor names.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub const MANIFEST_FILE: &str = "xmodal.json";

/// ImageNet statistics used by torchvision and timm models.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Text,
    Image,
    /// Not a model: data the kit ships (the demo gallery).
    Dataset,
    /// Not a model: the font figures are drawn with.
    Font,
    /// A text tower and an image tower sharing one embedding space (the CLIP family).
    Joint,
    /// Not a model: a tokenizer's vocabulary that snapshots leave to the kit.
    Vocabulary,
    /// Not a model: an inference engine's shared library (ONNX Runtime).
    Runtime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Any BERT-family encoder in HF layout (MiniLM, bert-base-uncased, …).
    Bert,
    /// Static word vectors (GloVe, FastText).
    Static,
    EfficientnetLite0,
    MobilenetV2,
    Vgg16,
    Resnet50,
    /// A dataset in the JSONL ingest format.
    Jsonl,
    /// A TrueType font.
    Ttf,
    /// transformers' CLIPModel snapshot (`config.json` `model_type` `clip`).
    Clip,
    /// transformers' SiglipModel snapshot (`model_type` `siglip`).
    Siglip,
    /// open_clip's hub layout (`open_clip_config.json` + `open_clip_model.safetensors`).
    OpenClip,
    /// CLIP's byte-level BPE vocabulary (open_clip's `bpe_simple_vocab_16e6.txt.gz`).
    ClipBpe,
    /// Immich's ONNX directory (`textual/model.onnx`, `visual/model.onnx`, open_clip's config).
    ImmichOnnx,
    /// transformers.js' ONNX directory (`onnx/text_model.onnx`, `onnx/vision_model.onnx`).
    TransformersJsOnnx,
    /// ONNX Runtime's shared library (onnxruntime's wheel).
    Onnxruntime,
}

impl Architecture {
    pub fn modality(self) -> Modality {
        match self {
            Self::Bert | Self::Static => Modality::Text,
            Self::Jsonl => Modality::Dataset,
            Self::Ttf => Modality::Font,
            Self::Clip
            | Self::Siglip
            | Self::OpenClip
            | Self::ImmichOnnx
            | Self::TransformersJsOnnx => Modality::Joint,
            Self::ClipBpe => Modality::Vocabulary,
            Self::Onnxruntime => Modality::Runtime,
            _ => Modality::Image,
        }
    }

    /// Width of the pooled feature an image model yields before its classifier.
    pub fn image_dims(self) -> Option<usize> {
        match self {
            Self::EfficientnetLite0 | Self::MobilenetV2 => Some(1280),
            Self::Vgg16 => Some(4096),
            Self::Resnet50 => Some(2048),
            Self::Bert
            | Self::Static
            | Self::Jsonl
            | Self::Ttf
            | Self::Clip
            | Self::Siglip
            | Self::OpenClip
            | Self::ClipBpe
            | Self::ImmichOnnx
            | Self::TransformersJsOnnx
            | Self::Onnxruntime => None,
        }
    }
}

/// How an image becomes the model's input tensor (torchvision's eval transform).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Shorter side after resizing.
    pub resize: u32,
    /// Side of the centre crop.
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The resize filter of the model's reference eval transform. Left out of the manifest (and
    /// of feature-set ids) when bilinear, so ids from before the field existed stay valid.
    #[serde(default, skip_serializing_if = "Resample::is_bilinear")]
    pub resample: Resample,
    /// How the image reaches `crop`×`crop`. Left out when it is torchvision's (the shorter side
    /// to `resize`, then a centre crop), so older ids stay valid.
    #[serde(default, skip_serializing_if = "ResizeMode::is_shorter_side")]
    pub resize_mode: ResizeMode,
    /// How the centre crop's offsets round. Left out when torchvision's.
    #[serde(default, skip_serializing_if = "CropOffsets::is_round")]
    pub crop_offsets: CropOffsets,
}

/// How an image is brought to the model's square input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// The shorter side to `resize`, then the centre `crop` (torchvision, CLIP's processors).
    #[default]
    ShorterSide,
    /// Straight to `crop`×`crop`, the aspect ratio not kept (SigLIP's processors).
    Squash,
}

impl ResizeMode {
    fn is_shorter_side(&self) -> bool {
        *self == Self::ShorterSide
    }
}

/// How a centre crop's left and top offsets round when the margin is odd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropOffsets {
    /// Python's `round` (ties to even): torchvision's `CenterCrop`, open_clip.
    #[default]
    Round,
    /// Integer division: transformers' image processors.
    Floor,
}

impl CropOffsets {
    fn is_round(&self) -> bool {
        *self == Self::Round
    }
}

/// PIL's antialiased resize filters, as the reference eval transforms use them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    /// torchvision's models.
    #[default]
    Bilinear,
    /// EfficientNet's eval transform (PIL's bicubic is Catmull-Rom, a = -0.5).
    Bicubic,
}

impl Resample {
    fn is_bilinear(&self) -> bool {
        *self == Self::Bilinear
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Self {
            resize: 256,
            crop: 224,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            resample: Resample::Bilinear,
            resize_mode: ResizeMode::ShorterSide,
            crop_offsets: CropOffsets::Round,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub modality: Modality,
    pub architecture: Architecture,
    pub dims: usize,
    /// Text only: `mean` or `cls` for BERT, `mean` or `sum` for static vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<String>,
    #[serde(default)]
    pub normalize: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default)]
    pub lowercase: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preprocess>,
    #[serde(default)]
    pub source: serde_json::Value,
    /// File name → sha256, for the files the kit built.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("model directory {0} does not exist (run `xmodal models fetch`, or pass a directory you brought)")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid manifest: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}: cannot tell which model this is (no xmodal.json, config.json, open_clip_config.json, *.vec or known safetensors layout)")]
    Unrecognised(PathBuf),
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("{path}: cannot read safetensors header: {message}")]
    Safetensors { path: PathBuf, message: String },
}

impl Manifest {
    /// Read `dir/xmodal.json`, or recognise a user-supplied layout.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        if !dir.is_dir() {
            return Err(ManifestError::Missing(dir.to_path_buf()));
        }
        let path = dir.join(MANIFEST_FILE);
        if path.exists() {
            let text = read(&path)?;
            return serde_json::from_str(&text)
                .map_err(|source| ManifestError::Parse { path, source });
        }
        Self::recognise(dir)
    }

    fn recognise(dir: &Path) -> Result<Self, ManifestError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // before config.json: Immich's is open_clip's, transformers.js' names a model_type whose
        // safetensors are absent
        if let Some(architecture) = crate::encode::onnx::layout::sniff(dir) {
            return Ok(Self::joint(name, architecture));
        }
        let config = dir.join("config.json");
        if config.exists() {
            let cfg: serde_json::Value =
                serde_json::from_str(&read(&config)?).map_err(|source| ManifestError::Parse {
                    path: config.clone(),
                    source,
                })?;
            match cfg.get("model_type").and_then(|v| v.as_str()) {
                Some("clip") => return Ok(Self::joint(name, Architecture::Clip)),
                Some("siglip") => return Ok(Self::joint(name, Architecture::Siglip)),
                Some("siglip2") => {
                    return Err(ManifestError::Unsupported {
                        path: config,
                        message: "model_type \"siglip2\" is SigLIP2's NaFlex (variable resolution \
                                  and aspect ratio), which is not supported; SigLIP2 at a fixed \
                                  resolution (model_type \"siglip\", e.g. \
                                  google/siglip2-base-patch16-224) is"
                            .into(),
                    })
                }
                Some(other @ ("chinese_clip" | "clip_vision_model" | "clip_text_model")) => {
                    return Err(ManifestError::Unsupported {
                        path: config,
                        message: format!(
                            "model_type {other:?} is not supported (clip and siglip snapshots are)"
                        ),
                    })
                }
                _ => {}
            }
            if let Some(hidden) = cfg.get("hidden_size").and_then(|v| v.as_u64()) {
                let max_length = cfg
                    .get("max_position_embeddings")
                    .and_then(|v| v.as_u64())
                    .map(|v| v as usize);
                return Ok(Self::text(
                    name,
                    Architecture::Bert,
                    hidden as usize,
                    "cls",
                    max_length,
                ));
            }
        }
        if dir.join("open_clip_config.json").exists() {
            return Ok(Self::joint(name, Architecture::OpenClip));
        }
        if let Some(vec_file) = find_with_extension(dir, "vec") {
            let dims = fasttext_dims(&vec_file)?;
            return Ok(Self {
                lowercase: false,
                ..Self::text(name, Architecture::Static, dims, "mean", None)
            });
        }
        let weights = dir.join("model.safetensors");
        if weights.exists() {
            if let Some(arch) = sniff_image_architecture(&weights)? {
                return Ok(Self::image(name, arch, Preprocess::default()));
            }
        }
        Err(ManifestError::Unrecognised(dir.to_path_buf()))
    }

    fn text(
        name: String,
        architecture: Architecture,
        dims: usize,
        pooling: &str,
        max_length: Option<usize>,
    ) -> Self {
        Self {
            name,
            modality: Modality::Text,
            architecture,
            dims,
            pooling: Some(pooling.to_string()),
            normalize: false,
            max_length,
            lowercase: true,
            preprocess: None,
            source: serde_json::Value::Null,
            files: BTreeMap::new(),
        }
    }

    /// A CLIP-family snapshot; its width and preprocessing come from its own config files when
    /// the encoders load it (`encode::clip::config`).
    fn joint(name: String, architecture: Architecture) -> Self {
        Self {
            name,
            modality: Modality::Joint,
            architecture,
            dims: 0,
            pooling: None,
            normalize: false,
            max_length: None,
            lowercase: false,
            preprocess: None,
            source: serde_json::Value::Null,
            files: BTreeMap::new(),
        }
    }

    pub fn image(name: String, architecture: Architecture, preprocess: Preprocess) -> Self {
        Self {
            name,
            modality: Modality::Image,
            dims: architecture.image_dims().unwrap_or(0),
            architecture,
            pooling: None,
            normalize: false,
            max_length: None,
            lowercase: false,
            preprocess: Some(preprocess),
            source: serde_json::Value::Null,
            files: BTreeMap::new(),
        }
    }
}

fn read(path: &Path) -> Result<String, ManifestError> {
    std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn find_with_extension(dir: &Path, ext: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// FastText `.vec` files start with a "COUNT DIMS" line.
fn fasttext_dims(path: &Path) -> Result<usize, ManifestError> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut first = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut first)
        .map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    first
        .split_whitespace()
        .nth(1)
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| ManifestError::Unrecognised(path.to_path_buf()))
}

/// Tensor names in a safetensors file, reading only its header (VGG16 weighs half a gigabyte).
pub fn safetensors_names(path: &Path) -> Result<Vec<String>, ManifestError> {
    use std::io::Read;
    let bad = |message: String| ManifestError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let io = |source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad(format!("header of {len} bytes is implausible")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    Ok(header
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k != "__metadata__")
        .collect())
}

/// Tell torchvision/timm CNNs apart by a tensor name only that layout has.
fn sniff_image_architecture(path: &Path) -> Result<Option<Architecture>, ManifestError> {
    let names = safetensors_names(path)?;
    let has = |k: &str| names.iter().any(|n| n == k);
    Ok(if has("_conv_stem.weight") {
        Some(Architecture::EfficientnetLite0)
    } else if has("features.18.0.weight") {
        Some(Architecture::MobilenetV2)
    } else if has("layer4.2.conv3.weight") {
        Some(Architecture::Resnet50)
    } else if has("features.28.weight") || has("pre_logits.fc1.weight") {
        Some(Architecture::Vgg16)
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bilinear stays out of the JSON (feature-set ids made before `resample` existed stay
    /// valid); bicubic is written and read back; a manifest without the field means bilinear.
    #[test]
    fn resample_is_recorded_only_when_not_bilinear() {
        let bilinear = serde_json::to_value(Preprocess::default()).unwrap();
        assert!(bilinear.get("resample").is_none(), "{bilinear}");
        let bicubic = Preprocess {
            resample: Resample::Bicubic,
            ..Default::default()
        };
        let json = serde_json::to_value(&bicubic).unwrap();
        assert_eq!(json["resample"], "bicubic");
        assert_eq!(serde_json::from_value::<Preprocess>(json).unwrap(), bicubic);
        assert_eq!(
            serde_json::from_value::<Preprocess>(bilinear)
                .unwrap()
                .resample,
            Resample::Bilinear
        );
    }
}
