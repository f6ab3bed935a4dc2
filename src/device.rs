//! Where tensors live: `--device cpu|cuda[:N]|auto`.

use std::{fmt, str::FromStr};

/// A device request as the user wrote it; resolved to a candle device with [`DeviceSpec::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
    /// CUDA device 0 when this build has the `cuda` feature and a GPU answers, else CPU.
    Auto,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device {0:?}: expected cpu, cuda, cuda:N or auto")]
    Parse(String),
    #[error("device cuda:{0} requested, but this binary was built without the `cuda` feature")]
    NoCudaSupport(usize),
    #[error("cannot open cuda:{0}: {1}")]
    Open(usize, candle_core::Error),
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Parse(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Auto => write!(f, "auto"),
        }
    }
}

impl DeviceSpec {
    pub fn open(self) -> Result<candle_core::Device, DeviceError> {
        match self {
            Self::Cpu => Ok(candle_core::Device::Cpu),
            Self::Cuda(n) if !cfg!(feature = "cuda") => Err(DeviceError::NoCudaSupport(n)),
            Self::Cuda(n) => candle_core::Device::new_cuda(n).map_err(|e| DeviceError::Open(n, e)),
            Self::Auto if !cfg!(feature = "cuda") => Ok(candle_core::Device::Cpu),
            Self::Auto => match candle_core::Device::new_cuda(0) {
                Ok(device) => Ok(device),
                Err(e) => {
                    // say why, instead of quietly running on the CPU
                    tracing::warn!(error = %e, "--device auto: no usable GPU (cuda:0); using the CPU");
                    Ok(candle_core::Device::Cpu)
                }
            },
        }
    }
}

/// What `/ready` and `/metrics` call a device: `cpu` or `cuda:N`.
pub fn name(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Whether our CPU-specialised code may run for data on `device`: BERT's attention and GELU
/// kernels, im2col and depthwise convolutions, ConSE's host top-k, the fused training step and
/// AdamW. Elsewhere the generic path runs: candle ops only, data staying on the device from input
/// to output, which is what a GPU runs.
///
/// `XMODAL_GENERIC_DEVICE_PATH=1` sends the CPU down that generic path too (read once per
/// process), so tests exercise a GPU's code path on machines without one and compare it with the
/// specialised one.
pub fn cpu_kernels(device: &candle_core::Device) -> bool {
    device.is_cpu() && !generic_path_forced()
}

/// [`cpu_kernels`] for one tensor: our CPU kernels are f32 only, so f16/bf16 data (see
/// [`crate::encode::Precision`]) takes the generic path on the CPU too.
pub fn cpu_kernels_for(x: &candle_core::Tensor) -> bool {
    x.dtype() == candle_core::DType::F32 && cpu_kernels(x.device())
}

fn generic_path_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        std::env::var("XMODAL_GENERIC_DEVICE_PATH").is_ok_and(|v| !v.is_empty() && v != "0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA:2".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(2));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        if !cfg!(feature = "cuda") {
            let err = DeviceSpec::Cuda(0).open().unwrap_err();
            assert!(
                err.to_string().contains("without the `cuda` feature"),
                "{err}"
            );
        }
        assert!(DeviceSpec::Auto.open().is_ok());
    }
}
