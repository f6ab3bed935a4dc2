//! A CLIP-family snapshot's configuration, read from whichever layout it comes in: transformers'
//! `config.json` (`model_type` `clip` or `siglip`) or open_clip's `open_clip_config.json`. All
//! three become the same [`ClipConfig`]: two towers described by width, depth, heads, activation,
//! pooling and projection, which `text.rs` and `vision.rs` build from.
//!
//! What a layout can say but these towers do not do (open_clip's timm or ResNet towers, layer
//! scale, attentional pooling, SigLIP2's NaFlex…) is refused by name, never silently ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    encode::transformer::kernels::Activation,
    kit::{Architecture, CropOffsets, Preprocess, Resample, ResizeMode},
};

/// Which reference implementation the snapshot's weights follow (their key names and details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// transformers' `CLIPModel` (OpenAI's checkpoints, LAION's converted ones).
    Clip,
    /// transformers' `SiglipModel`.
    Siglip,
    /// open_clip's `CLIP` with ViT towers, in its hub layout.
    OpenClip,
}

impl Family {
    /// The family of a kit architecture, when it is a CLIP-family one.
    pub fn of(architecture: Architecture) -> Option<Self> {
        match architecture {
            Architecture::Clip => Some(Self::Clip),
            Architecture::Siglip => Some(Self::Siglip),
            Architecture::OpenClip => Some(Self::OpenClip),
            _ => None,
        }
    }

    pub fn weights_file(self) -> &'static str {
        match self {
            Self::Clip | Self::Siglip => "model.safetensors",
            Self::OpenClip => "open_clip_model.safetensors",
        }
    }

    pub fn config_file(self) -> &'static str {
        match self {
            Self::Clip | Self::Siglip => "config.json",
            Self::OpenClip => "open_clip_config.json",
        }
    }
}

/// One transformer stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Tower {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub activation: Activation,
    pub eps: f64,
}

/// Where the text tower reads its sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPooling {
    /// The first end-of-text token (CLIP: the tokenizer's highest id, so this is also the
    /// reference's `argmax` pooling).
    FirstEos,
    /// The last position of a sequence padded to the context length (SigLIP).
    Last,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub tower: Tower,
    pub vocab: usize,
    /// Positions the model has: the tokenizer's context length.
    pub context: usize,
    pub causal: bool,
    pub pooling: TextPooling,
    /// Output width of the projection (`get_text_features`).
    pub projection: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub tower: Tower,
    pub image_size: usize,
    pub patch_size: usize,
    /// Output width: the projection's, or the tower's own when it has none (SigLIP).
    pub projection: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub family: Family,
    pub text: TextConfig,
    pub vision: VisionConfig,
    /// How images become the vision tower's input.
    pub preprocess: Preprocess,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// CLIP's image statistics (OpenAI's; most CLIP-family checkpoints keep them).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl ClipConfig {
    pub fn load(dir: &Path, family: Family) -> Result<Self, ConfigError> {
        let path = dir.join(family.config_file());
        let cfg = read_json(&path)?;
        let r = Reader { path: &path };
        match family {
            Family::Clip => r.hf_clip(&cfg, dir),
            Family::Siglip => r.hf_siglip(&cfg, dir),
            Family::OpenClip => r.open_clip(&cfg),
        }
    }
}

fn read_json(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| invalid(path, e.to_string()))
}

fn invalid(path: &Path, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    }
}

/// Reads fields with defaults, naming the file in every error.
struct Reader<'a> {
    path: &'a Path,
}

impl Reader<'_> {
    fn err(&self, message: String) -> ConfigError {
        invalid(self.path, message)
    }

    fn usize(&self, v: &Value, key: &str, default: usize) -> Result<usize, ConfigError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| self.err(format!("{key} must be a positive integer, not {x}"))),
        }
    }

    fn f64(&self, v: &Value, key: &str, default: f64) -> Result<f64, ConfigError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_f64()
                .ok_or_else(|| self.err(format!("{key} must be a number, not {x}"))),
        }
    }

    fn activation(&self, v: &Value, default: &str) -> Result<Activation, ConfigError> {
        let name = v
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or(default);
        Activation::from_name(name).ok_or_else(|| {
            self.err(format!(
                "hidden_act {name:?} is not supported (gelu, gelu_pytorch_tanh, quick_gelu are)"
            ))
        })
    }

    fn hf_tower(&self, v: &Value, d: HfDefaults) -> Result<Tower, ConfigError> {
        let hidden = self.usize(v, "hidden_size", d.hidden)?;
        let heads = self.usize(v, "num_attention_heads", d.heads)?;
        if hidden % heads != 0 {
            return Err(self.err(format!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            )));
        }
        Ok(Tower {
            hidden,
            heads,
            layers: self.usize(v, "num_hidden_layers", d.layers)?,
            intermediate: self.usize(v, "intermediate_size", d.intermediate)?,
            activation: self.activation(v, d.act)?,
            eps: self.f64(v, "layer_norm_eps", d.eps)?,
        })
    }

    fn section<'v>(&self, cfg: &'v Value, key: &str) -> &'v Value {
        static EMPTY: Value = Value::Null;
        cfg.get(key).unwrap_or(&EMPTY)
    }

    /// transformers' `CLIPConfig` (defaults: openai/clip-vit-base-patch32).
    fn hf_clip(&self, cfg: &Value, dir: &Path) -> Result<ClipConfig, ConfigError> {
        let t = self.section(cfg, "text_config");
        let v = self.section(cfg, "vision_config");
        let projection = self.usize(cfg, "projection_dim", 512)?;
        let text = TextConfig {
            tower: self.hf_tower(t, HfDefaults::CLIP_TEXT)?,
            vocab: self.usize(t, "vocab_size", 49408)?,
            context: self.usize(t, "max_position_embeddings", 77)?,
            causal: true,
            pooling: TextPooling::FirstEos,
            projection,
        };
        let vision = VisionConfig {
            tower: self.hf_tower(v, HfDefaults::CLIP_VISION)?,
            image_size: self.usize(v, "image_size", 224)?,
            patch_size: self.usize(v, "patch_size", 32)?,
            projection,
        };
        self.check_channels(v)?;
        let preprocess = hf_preprocess(dir, vision.image_size, CLIP_MEAN, CLIP_STD, true)?;
        Ok(ClipConfig {
            family: Family::Clip,
            text,
            vision,
            preprocess,
        })
    }

    /// transformers' `SiglipConfig` (defaults: google/siglip-base-patch16-224).
    fn hf_siglip(&self, cfg: &Value, dir: &Path) -> Result<ClipConfig, ConfigError> {
        let t = self.section(cfg, "text_config");
        let v = self.section(cfg, "vision_config");
        let text_tower = self.hf_tower(t, HfDefaults::SIGLIP)?;
        if v.get("vision_use_head").and_then(Value::as_bool) == Some(false) {
            return Err(self.err(
                "vision_use_head false (a tower without its pooling head) is not supported".into(),
            ));
        }
        let text = TextConfig {
            projection: self.usize(t, "projection_size", text_tower.hidden)?,
            tower: text_tower,
            vocab: self.usize(t, "vocab_size", 32000)?,
            context: self.usize(t, "max_position_embeddings", 64)?,
            causal: false,
            pooling: TextPooling::Last,
        };
        let vision_tower = self.hf_tower(v, HfDefaults::SIGLIP)?;
        let vision = VisionConfig {
            projection: vision_tower.hidden,
            tower: vision_tower,
            image_size: self.usize(v, "image_size", 224)?,
            patch_size: self.usize(v, "patch_size", 16)?,
        };
        if text.projection != vision.projection {
            return Err(self.err(format!(
                "text projection_size {} differs from the vision width {}: the two embeddings must share a space",
                text.projection, vision.projection
            )));
        }
        self.check_channels(v)?;
        let preprocess = hf_preprocess(dir, vision.image_size, [0.5; 3], [0.5; 3], false)?;
        Ok(ClipConfig {
            family: Family::Siglip,
            text,
            vision,
            preprocess,
        })
    }

    fn check_channels(&self, v: &Value) -> Result<(), ConfigError> {
        match self.usize(v, "num_channels", 3)? {
            3 => Ok(()),
            n => Err(self.err(format!("num_channels {n}: only RGB (3) is supported"))),
        }
    }

    /// open_clip's hub config: `{"model_cfg": {...}, "preprocess_cfg": {...}}`, ViT towers only.
    fn open_clip(&self, cfg: &Value) -> Result<ClipConfig, ConfigError> {
        let model = cfg
            .get("model_cfg")
            .ok_or_else(|| self.err("no model_cfg".into()))?;
        let v = self.section(model, "vision_cfg");
        let t = self.section(model, "text_cfg");
        self.refuse(
            model,
            "model_cfg",
            &[
                "embed_dim",
                "vision_cfg",
                "text_cfg",
                "quick_gelu",
                "custom_text",
                "cast_dtype",
            ],
        )?;
        self.refuse(
            v,
            "vision_cfg",
            &[
                "image_size",
                "layers",
                "width",
                "head_width",
                "mlp_ratio",
                "patch_size",
            ],
        )?;
        self.refuse(
            t,
            "text_cfg",
            &[
                "context_length",
                "vocab_size",
                "width",
                "heads",
                "layers",
                "mlp_ratio",
            ],
        )?;
        let act = if model.get("quick_gelu").and_then(Value::as_bool) == Some(true) {
            Activation::QuickGelu
        } else {
            Activation::GeluErf
        };
        let embed = self.usize(model, "embed_dim", 512)?;
        let vision_width = self.usize(v, "width", 768)?;
        let head_width = self.usize(v, "head_width", 64)?;
        if !v.get("layers").is_none_or(Value::is_u64) {
            return Err(self.err(
                "vision_cfg.layers is a list: ResNet image towers are not supported (ViT are)"
                    .into(),
            ));
        }
        let vision = VisionConfig {
            tower: Tower {
                hidden: vision_width,
                layers: self.usize(v, "layers", 12)?,
                heads: vision_width / head_width,
                intermediate: (vision_width as f64 * self.f64(v, "mlp_ratio", 4.0)?) as usize,
                activation: act,
                eps: 1e-5,
            },
            image_size: self.usize(v, "image_size", 224)?,
            patch_size: self.usize(v, "patch_size", 16)?,
            projection: embed,
        };
        let text_width = self.usize(t, "width", 512)?;
        let text = TextConfig {
            tower: Tower {
                hidden: text_width,
                layers: self.usize(t, "layers", 12)?,
                heads: self.usize(t, "heads", 8)?,
                intermediate: (text_width as f64 * self.f64(t, "mlp_ratio", 4.0)?) as usize,
                activation: act,
                eps: 1e-5,
            },
            vocab: self.usize(t, "vocab_size", 49408)?,
            context: self.usize(t, "context_length", 77)?,
            causal: true,
            pooling: TextPooling::FirstEos,
            projection: embed,
        };
        for (what, tower) in [("vision", &vision.tower), ("text", &text.tower)] {
            if tower.heads == 0 || tower.hidden % tower.heads != 0 {
                return Err(self.err(format!(
                    "{what} width {} does not split into {} heads",
                    tower.hidden, tower.heads
                )));
            }
        }
        let pp = self.section(cfg, "preprocess_cfg");
        self.refuse(
            pp,
            "preprocess_cfg",
            &[
                "mean",
                "std",
                "interpolation",
                "resize_mode",
                "size",
                "mode",
            ],
        )?;
        let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3], ConfigError> {
            match pp.get(key) {
                None => Ok(default),
                Some(x) => serde_json::from_value::<[f32; 3]>(x.clone())
                    .map_err(|_| self.err(format!("preprocess_cfg.{key} must be 3 numbers"))),
            }
        };
        let resample = match pp.get("interpolation").and_then(Value::as_str) {
            None | Some("bicubic") => Resample::Bicubic,
            Some("bilinear") => Resample::Bilinear,
            Some(other) => {
                return Err(self.err(format!(
                    "preprocess_cfg.interpolation {other:?} is not supported (bicubic, bilinear)"
                )))
            }
        };
        let resize_mode = match pp.get("resize_mode").and_then(Value::as_str) {
            None | Some("shortest") => ResizeMode::ShorterSide,
            Some("squash") => ResizeMode::Squash,
            Some(other) => {
                return Err(self.err(format!(
                    "preprocess_cfg.resize_mode {other:?} is not supported (shortest, squash)"
                )))
            }
        };
        let size = vision.image_size as u32;
        let preprocess = Preprocess {
            resize: size,
            crop: size,
            mean: triple("mean", CLIP_MEAN)?,
            std: triple("std", CLIP_STD)?,
            resample,
            resize_mode,
            crop_offsets: CropOffsets::Round,
        };
        Ok(ClipConfig {
            family: Family::OpenClip,
            text,
            vision,
            preprocess,
        })
    }

    /// Any key of `section` outside `known` is an option these towers do not implement.
    fn refuse(&self, section: &Value, name: &str, known: &[&str]) -> Result<(), ConfigError> {
        let Some(map) = section.as_object() else {
            return Ok(());
        };
        for (key, value) in map {
            if known.contains(&key.as_str()) {
                continue;
            }
            // options at their defaults change nothing
            let harmless = matches!(
                (key.as_str(), value),
                ("custom_text", Value::Bool(false))
                    | ("no_causal_mask", Value::Bool(false))
                    | ("proj_bias", Value::Bool(false))
                    | ("ls_init_value", Value::Null)
                    | ("attentional_pool", Value::Bool(false))
                    | ("no_ln_pre", Value::Bool(false))
                    | ("final_ln_after_pool", Value::Bool(false))
                    | ("output_tokens", Value::Bool(false))
                    | ("fill_color", _)
            ) || (key == "pool_type"
                && matches!(value.as_str(), Some("argmax" | "tok")));
            if !harmless {
                return Err(self.err(format!(
                    "{name}.{key} = {value} is not supported: xmodal runs open_clip's ViT towers \
                     with their default options (a SigLIP model loads from its transformers snapshot)"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct HfDefaults {
    hidden: usize,
    heads: usize,
    layers: usize,
    intermediate: usize,
    act: &'static str,
    eps: f64,
}

impl HfDefaults {
    const CLIP_TEXT: Self = Self {
        hidden: 512,
        heads: 8,
        layers: 12,
        intermediate: 2048,
        act: "quick_gelu",
        eps: 1e-5,
    };
    const CLIP_VISION: Self = Self {
        hidden: 768,
        heads: 12,
        layers: 12,
        intermediate: 3072,
        act: "quick_gelu",
        eps: 1e-5,
    };
    const SIGLIP: Self = Self {
        hidden: 768,
        heads: 12,
        layers: 12,
        intermediate: 3072,
        act: "gelu_pytorch_tanh",
        eps: 1e-6,
    };
}

/// transformers' image processor config (`preprocessor_config.json`) as our [`Preprocess`]:
/// CLIP's resizes the shorter side and centre-crops; SigLIP's resizes to a square. Without the
/// file, the family's defaults (what its processor class defaults to).
fn hf_preprocess(
    dir: &Path,
    image_size: usize,
    mean: [f32; 3],
    std: [f32; 3],
    crop_default: bool,
) -> Result<Preprocess, ConfigError> {
    let path = dir.join("preprocessor_config.json");
    let size = image_size as u32;
    if !path.exists() {
        return Ok(Preprocess {
            resize: size,
            crop: size,
            mean,
            std,
            resample: Resample::Bicubic,
            resize_mode: if crop_default {
                ResizeMode::ShorterSide
            } else {
                ResizeMode::Squash
            },
            crop_offsets: CropOffsets::Floor,
        });
    }
    let p = read_json(&path)?;
    let bad = |m: String| invalid(&path, m);
    let flag = |key: &str, default: bool| p.get(key).and_then(Value::as_bool).unwrap_or(default);
    if !flag("do_resize", true) || !flag("do_normalize", true) || !flag("do_rescale", true) {
        return Err(bad(
            "do_resize, do_rescale and do_normalize must be true (the model expects resized, \
             rescaled, normalised pixels)"
                .into(),
        ));
    }
    if let Some(f) = p.get("rescale_factor").and_then(Value::as_f64) {
        if (f - 1.0 / 255.0).abs() > 1e-9 {
            return Err(bad(format!("rescale_factor {f} is not 1/255")));
        }
    }
    let resample = match p.get("resample").and_then(Value::as_u64) {
        None | Some(3) => Resample::Bicubic,
        Some(2) => Resample::Bilinear,
        Some(other) => {
            return Err(bad(format!(
                "resample {other} is not supported (3 = bicubic, 2 = bilinear)"
            )))
        }
    };
    // `size` is {"shortest_edge": n}, {"height": h, "width": w} or (older files) a number
    let side = |v: &Value, what: &str| -> Result<(Option<u32>, Option<u32>), ConfigError> {
        match v {
            Value::Number(n) => Ok((n.as_u64().map(|n| n as u32), None)),
            Value::Object(m) => {
                if let Some(s) = m.get("shortest_edge").and_then(Value::as_u64) {
                    return Ok((Some(s as u32), None));
                }
                let (h, w) = (
                    m.get("height").and_then(Value::as_u64),
                    m.get("width").and_then(Value::as_u64),
                );
                match (h, w) {
                    (Some(h), Some(w)) if h == w => Ok((None, Some(h as u32))),
                    _ => Err(bad(format!(
                        "{what} {v}: only square sizes or a shortest_edge are supported"
                    ))),
                }
            }
            _ => Err(bad(format!("{what} {v} is not a size"))),
        }
    };
    let (shortest, square) = match p.get("size") {
        Some(v) => side(v, "size")?,
        None => (Some(size), None),
    };
    let do_crop = flag("do_center_crop", crop_default);
    let crop = match (do_crop, p.get("crop_size")) {
        (true, Some(v)) => {
            let (a, b) = side(v, "crop_size")?;
            a.or(b).unwrap_or(size)
        }
        (true, None) => size,
        (false, _) => square.or(shortest).unwrap_or(size),
    };
    if crop != size {
        return Err(bad(format!(
            "the processor makes {crop}×{crop} images but the vision tower takes {size}×{size}"
        )));
    }
    let (resize, resize_mode) = match (shortest, square, do_crop) {
        (Some(s), _, true) => (s, ResizeMode::ShorterSide),
        (None, Some(s), _) => (s, ResizeMode::Squash),
        (Some(s), None, false) if s == crop => (s, ResizeMode::Squash),
        _ => {
            return Err(bad(
                "a shortest_edge resize without a centre crop gives non-square images".into(),
            ))
        }
    };
    let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3], ConfigError> {
        match p.get(key) {
            None => Ok(default),
            Some(x) => serde_json::from_value::<[f32; 3]>(x.clone())
                .map_err(|_| bad(format!("{key} must be 3 numbers"))),
        }
    };
    Ok(Preprocess {
        resize,
        crop,
        mean: triple("image_mean", mean)?,
        std: triple("image_std", std)?,
        resample,
        resize_mode,
        crop_offsets: CropOffsets::Floor,
    })
}
