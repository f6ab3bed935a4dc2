//! The number format encoders compute in: `--precision auto|f32|f16|bf16`.
//!
//! Weights are stored as f32 in the kit and cast once at load; activations follow the weights.
//! Encoders always hand back f32 features (one cast per batch), so heads, the feature cache and
//! the indexes never see a half-precision number. On the CPU only f32 runs our specialised kernels
//! (attention, GELU, im2col, depthwise convolution); f16/bf16 there take candle's generic ops,
//! which is what a GPU runs, and exist to check the GPU's numbers on a machine without one.

use candle_core::{DType, Device};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f16 on a GPU (what GPU serving stacks such as TEI default to), f32 on the CPU.
    #[default]
    Auto,
    F32,
    F16,
    Bf16,
}

impl Precision {
    /// The candle dtype this precision means on `device`.
    pub fn dtype(self, device: &Device) -> DType {
        match self {
            Self::Auto if device.is_cpu() => DType::F32,
            Self::Auto => DType::F16,
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// How a feature set records a dtype: nothing for f32 (so feature sets extracted before
/// precision was an option keep their ids), else its name.
pub fn feature_tag(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::F32 => None,
        other => Some(other.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_f32_on_the_cpu_and_explicit_choices_hold() {
        assert_eq!(Precision::Auto.dtype(&Device::Cpu), DType::F32);
        assert_eq!(Precision::F16.dtype(&Device::Cpu), DType::F16);
        assert_eq!(Precision::Bf16.dtype(&Device::Cpu), DType::BF16);
        assert_eq!(feature_tag(DType::F32), None);
        assert_eq!(feature_tag(DType::F16), Some("f16"));
    }
}
