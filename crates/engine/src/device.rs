//! From the run's `Device`/`DType` (plain configuration, in `gradnorm_core::run`) to
//! candle's: the only place that opens a device.

use crate::error::{Error, Result};
use candle_core::{DType, Device};
use gradnorm_core::run;

/// Opens a device. `auto` is CUDA device 0 when built with the `cuda`
/// feature and a GPU answers, the CPU otherwise.
pub fn open(spec: run::Device) -> Result<Device> {
    match spec {
        run::Device::Cpu => Ok(Device::Cpu),
        run::Device::Auto => {
            if cfg!(feature = "cuda") {
                match Device::new_cuda(0) {
                    Ok(d) => Ok(d),
                    Err(e) => {
                        tracing::info!("no CUDA device, using the CPU: {e}");
                        Ok(Device::Cpu)
                    }
                }
            } else {
                Ok(Device::Cpu)
            }
        }
        run::Device::Cuda(ordinal) => {
            if !cfg!(feature = "cuda") {
                return Err(Error::Device(
                    spec.to_string(),
                    "this binary was built without the `cuda` feature (cargo build --release --features cuda)"
                        .into(),
                ));
            }
            Device::new_cuda(ordinal).map_err(|e| Error::Device(spec.to_string(), e.to_string()))
        }
    }
}

/// Parses and opens a device name (`auto`, `cpu`, `cuda`, `cuda:N`).
pub fn parse_device(spec: &str) -> Result<Device> {
    let parsed: run::Device = spec
        .parse()
        .map_err(|e: run::ValueError| Error::Device(spec.trim().to_string(), e.to_string()))?;
    open(parsed)
}

/// A short human name: "cpu", "cuda:0".
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// candle's dtype for the run's.
pub fn dtype(d: run::DType) -> DType {
    match d {
        run::DType::F32 => DType::F32,
        run::DType::BF16 => DType::BF16,
        run::DType::F16 => DType::F16,
    }
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F64 => "f64",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_devices() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("AUTO").is_ok());
        assert!(parse_device("gpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        if !cfg!(feature = "cuda") {
            let err = parse_device("cuda").unwrap_err().to_string();
            assert!(err.contains("without the `cuda` feature"), "{err}");
        }
    }

    #[test]
    fn converts_dtypes() {
        assert_eq!(dtype(run::DType::BF16), DType::BF16);
        assert_eq!(dtype_name(dtype(run::DType::F16)), "f16");
    }
}
