//! What a run is asked to do: the model, the datasets, the methods and how
//! to run them. Shared by `eval`, the TUI and the config file.
//!
//! Every field is a type that can only hold an allowed value (device, dtype,
//! sizes), so a `RunConfig` is checked once, where it is made: clap parses
//! the flags into these types (its errors name the flag), serde parses the
//! TOML through the same `TryFrom` (its errors name the key), the TUI form
//! uses the same `FromStr`. `RunConfig::validate` adds the checks that span
//! fields. The conversion to candle's types lives in `the engine's `device` module.

use crate::method::Method;
use crate::run::{ModelSpec, Preprocess};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A dataset as the user names it: a list file (with a root), an
/// ImageFolder root, or a plain folder of images.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetSpec {
    pub name: String,
    pub path: PathBuf,
    /// Root that a list file's relative paths are resolved against
    /// (default: the list file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// How a list file's lines read (default: ours, `path label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ListFormat>,
    /// The group an OOD set is averaged in beside the overall average
    /// (OpenOOD's `near` and `far`; any name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The line format of a list file.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum ListFormat {
    /// Ours: `relative/path label`, split at the last whitespace.
    #[default]
    #[serde(rename = "plain")]
    Plain,
    /// OpenOOD's image lists (`benchmark_imglist/...`): `relative/path
    /// extra`, split at the first space as its ImglistDataset does; the
    /// extra is a label, negative for OOD images.
    #[serde(rename = "openood")]
    OpenOod,
}

/// Everything an evaluation needs; `eval`, the TUI and the config file share it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunConfig {
    pub model: ModelSpec,
    /// Class names, one per line (default: ImageNet's when C = 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<PathBuf>,
    /// The model's class order as wnids, when it is not the sorted-wnid order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_order: Option<PathBuf>,
    pub id: DatasetSpec,
    pub ood: Vec<DatasetSpec>,
    pub methods: Vec<Method>,
    /// Fit file (`gradnorm-tui fit`) for the fit-based methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<PathBuf>,
    /// Input size; the model's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<ImageSize>,
    /// Preprocessing preset; the model's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preprocess>,
    pub batch: Batch,
    pub device: Device,
    #[serde(default)]
    pub dtype: DType,
    /// Evaluate at most this many images per dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// Decoding threads (default: every core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Workers>,
}

/// A value outside what a field allows; says what is allowed. The field's
/// name is added by whoever knows it (clap, serde, the form, `validate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

/// A run configuration that does not hold together, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The config key, with the CLI flag where they differ.
    pub field: &'static str,
    pub reason: String,
}

/// Bytes of one decoded batch above which a run is refused before it
/// allocates (a typo such as `--image-size 100000` would ask for 120 GB).
pub const MAX_BATCH_BYTES: u64 = 4 << 30;

impl RunConfig {
    /// The checks that span fields (each field alone is valid by its type).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.methods.is_empty() {
            return Err(ConfigError {
                field: "methods (--methods)",
                reason: "no methods selected".into(),
            });
        }
        for (i, ds) in std::iter::once(&self.id).chain(&self.ood).enumerate() {
            let (name_field, path_field) = if i == 0 {
                ("id.name", "id.path (--id)")
            } else {
                ("ood.name (--ood NAME=PATH)", "ood.path (--ood NAME=PATH)")
            };
            if ds.name.trim().is_empty() {
                return Err(ConfigError {
                    field: name_field,
                    reason: "a dataset needs a name".into(),
                });
            }
            if ds.path.as_os_str().is_empty() {
                return Err(ConfigError {
                    field: path_field,
                    reason: format!("dataset `{}` has an empty path", ds.name),
                });
            }
        }
        if self.id.group.is_some() {
            return Err(ConfigError {
                field: "id.group",
                reason: "the ID set is in no group (groups are of OOD sets)".into(),
            });
        }
        if let Some(ds) = self
            .ood
            .iter()
            .find(|d| d.group.as_ref().is_some_and(|g| g.trim().is_empty()))
        {
            return Err(ConfigError {
                field: "ood.group",
                reason: format!("dataset `{}` has an empty group name", ds.name),
            });
        }
        for (i, ds) in self.ood.iter().enumerate() {
            if self.ood[..i].iter().any(|o| o.name == ds.name) || ds.name == self.id.name {
                return Err(ConfigError {
                    field: "ood.name (--ood NAME=PATH)",
                    reason: format!("two datasets are named `{}`", ds.name),
                });
            }
        }
        // Method parameters are checked by the registry as they are parsed.
        if let Some(size) = self.image_size {
            check_batch_bytes(self.batch, size)?;
        }
        Ok(())
    }
}

/// Refuses a batch whose decoded pixels alone exceed [`MAX_BATCH_BYTES`];
/// the engine calls it again once the model's default size is known.
pub fn check_batch_bytes(batch: Batch, size: ImageSize) -> Result<(), ConfigError> {
    let bytes = batch.get() as u64 * 3 * (size.get() as u64).pow(2) * 4;
    if bytes > MAX_BATCH_BYTES {
        return Err(ConfigError {
            field: "batch (--batch)",
            reason: format!(
                "a batch of {} images of {s}x{s} needs {:.1} GiB; the limit is {} GiB: lower --batch or --image-size",
                batch.get(),
                bytes as f64 / (1u64 << 30) as f64,
                MAX_BATCH_BYTES >> 30,
                s = size.get(),
            ),
        });
    }
    Ok(())
}

/// Where the model runs: `auto` (CUDA when built with it and a GPU
/// answers, else the CPU), `cpu`, `cuda` or `cuda:N`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum Device {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl Device {
    /// The choices a form cycles through.
    pub const CHOICES: [Device; 3] = [Device::Auto, Device::Cpu, Device::Cuda(0)];
}

impl FromStr for Device {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let spec = s.trim().to_ascii_lowercase();
        match spec.as_str() {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => match spec.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Device::Cuda(n)),
                Some(Err(_)) => Err(ValueError(format!(
                    "`{s}`: expected cuda:N with N a GPU number (0, 1, ...)"
                ))),
                None => Err(ValueError(format!(
                    "`{s}`: expected auto, cpu, cuda or cuda:N"
                ))),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Auto => f.write_str("auto"),
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The precision the model runs in (reduced precision is for CUDA; the CPU
/// accepts it but gains nothing).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum DType {
    #[default]
    F32,
    BF16,
    F16,
}

impl DType {
    pub const CHOICES: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }
}

impl FromStr for DType {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "f16" | "fp16" | "float16" | "half" => Ok(DType::F16),
            _ => Err(ValueError(format!("`{s}`: expected f32, bf16 or f16"))),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = ValueError;
            fn try_from(s: String) -> Result<Self, ValueError> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    };
}
string_serde!(Device);
string_serde!(DType);

/// A count that must lie in `MIN..=MAX`; parsed from text or a number, with
/// an error that gives the range.
macro_rules! bounded {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(usize);

        impl $name {
            pub const MIN: usize = $min;
            pub const MAX: usize = $max;

            pub fn new(n: usize) -> Result<Self, ValueError> {
                if (Self::MIN..=Self::MAX).contains(&n) {
                    Ok($name(n))
                } else if Self::MAX == usize::MAX {
                    Err(ValueError(format!(concat!($what, " must be at least {}, got {}"), Self::MIN, n)))
                } else {
                    Err(ValueError(format!(
                        concat!($what, " must be between {} and {}, got {}"),
                        Self::MIN, Self::MAX, n
                    )))
                }
            }

            pub fn get(self) -> usize {
                self.0
            }
        }

        impl TryFrom<u64> for $name {
            type Error = ValueError;
            fn try_from(n: u64) -> Result<Self, ValueError> {
                $name::new(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }

        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0 as u64
            }
        }

        impl FromStr for $name {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                let s = s.trim();
                let n: usize = s.parse().map_err(|_| {
                    if s.starts_with('-') {
                        ValueError(format!(concat!($what, " must be at least {}, got {}"), Self::MIN, s))
                    } else {
                        ValueError(format!(concat!($what, ": `{}` is not a whole number"), s))
                    }
                })?;
                $name::new(n)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

bounded!(
    /// Images per batch.
    Batch, 1, 4096, "the batch size"
);
bounded!(
    /// The square input size N (images are resized to N x N). Below 32 the
    /// models' five stride-2 stages leave nothing to pool.
    ImageSize, 32, 2048, "the image size"
);
bounded!(
    /// At most this many images per dataset.
    Limit, 1, usize::MAX, "the limit"
);
bounded!(
    /// Decoding threads.
    Workers, 1, 1024, "the number of workers"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        for (text, dev) in [
            ("auto", Device::Auto),
            ("CPU", Device::Cpu),
            ("cuda", Device::Cuda(0)),
            (" cuda:3 ", Device::Cuda(3)),
        ] {
            assert_eq!(text.parse::<Device>().unwrap(), dev);
            assert_eq!(dev.to_string().parse::<Device>().unwrap(), dev);
        }
        assert_err_has::<Device>("gpu", "expected auto, cpu, cuda or cuda:N");
        assert_err_has::<Device>("cuda:x", "cuda:N");
    }

    /// The message `text` fails to parse as a `T` with.
    fn parse_err<T: std::str::FromStr>(text: &str) -> String
    where
        T::Err: std::fmt::Display,
    {
        match text.parse::<T>() {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_err_has<T: std::str::FromStr>(text: &str, part: &str)
    where
        T::Err: std::fmt::Display,
    {
        let err = parse_err::<T>(text);
        assert!(err.contains(part), "{err}");
    }

    #[test]
    fn dtypes_parse() {
        assert_eq!("bf16".parse::<DType>().unwrap(), DType::BF16);
        assert_eq!("FP16".parse::<DType>().unwrap(), DType::F16);
        assert_err_has::<DType>("int8", "f32, bf16 or f16");
    }

    #[test]
    fn sizes_give_their_range() {
        assert_eq!("64".parse::<ImageSize>().unwrap().get(), 64);
        assert_eq!(
            parse_err::<ImageSize>("0"),
            "the image size must be between 32 and 2048, got 0"
        );
        assert_err_has::<Batch>("-1", "at least 1");
        assert_eq!(
            parse_err::<Limit>("0"),
            "the limit must be at least 1, got 0"
        );
        assert_err_has::<Workers>("x", "not a whole number");
    }

    #[test]
    fn too_large_a_batch_is_refused_before_allocating() {
        let err =
            check_batch_bytes(Batch::new(128).unwrap(), ImageSize::new(2048).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("lower --batch or --image-size"),
            "{err}"
        );
        assert!(check_batch_bytes(Batch::new(64).unwrap(), ImageSize::new(480).unwrap()).is_ok());
    }
}
