//! `--device auto|cpu|cuda|cuda:N` and `--dtype f32|bf16|f16`.

use crate::error::{Error, Result};
use candle_core::{DType, Device};

/// Parses a device name. `auto` is CUDA device 0 when built with the `cuda`
/// feature and a GPU answers, the CPU otherwise.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
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
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n.parse::<usize>().map_err(|_| {
                    Error::Device(spec.clone(), "expected cuda:N with N a number".into())
                })?,
            };
            if !cfg!(feature = "cuda") {
                return Err(Error::Device(
                    spec.clone(),
                    "this binary was built without the `cuda` feature (cargo build --release --features cuda)"
                        .into(),
                ));
            }
            Device::new_cuda(ordinal).map_err(|e| Error::Device(spec.clone(), e.to_string()))
        }
        _ => Err(Error::Device(
            spec.clone(),
            "expected auto, cpu, cuda or cuda:N".into(),
        )),
    }
}

/// A short human name: "cpu", "cuda:0".
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Parses `f32`, `bf16` or `f16`. Reduced precision is for CUDA; the CPU
/// accepts it but gains nothing.
pub fn parse_dtype(spec: &str) -> Result<DType> {
    match spec.trim().to_ascii_lowercase().as_str() {
        "f32" | "fp32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "fp16" | "float16" | "half" => Ok(DType::F16),
        other => Err(Error::Invalid(format!(
            "bad dtype `{other}`: expected f32, bf16 or f16"
        ))),
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
    fn parses_devices() {
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
    fn parses_dtypes() {
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert_eq!(parse_dtype("F32").unwrap(), DType::F32);
        assert!(parse_dtype("int8").is_err());
    }
}
