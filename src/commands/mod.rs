//! The headless commands and the TUI entry point. Each takes its parsed
//! arguments and returns an exit code; errors go up to `main`.

pub mod bench;
pub mod eval;
pub mod logging;
pub mod metrics;
pub mod predict;
pub mod selftest;
pub mod train_demo;
pub mod tui;
pub mod tune_mahalanobis;

use crate::cli::{ModelArgs, UsageError};
use crate::score::Method;
use candle_core::{DType, Device};
use std::path::Path;

/// Device, dtype and model spec from the shared model flags.
pub(crate) fn model_setup(
    args: &ModelArgs,
) -> anyhow::Result<(Device, DType, crate::model::ModelSpec)> {
    let device = crate::device::open(args.device)?;
    let dtype = crate::device::dtype(args.dtype);
    let spec = crate::model::ModelSpec {
        name: args.model.clone(),
        checkpoint: args.checkpoint.clone(),
    };
    Ok((device, dtype, spec))
}

pub use logging::init as init_logging;

/// The method flags shared by `eval` and `bench`.
pub(crate) struct MethodFlags<'a> {
    pub keys: &'a [String],
    pub temperature_odin: f64,
    pub epsilon_odin: f64,
    pub temperature_energy: f64,
    pub temperature_gradnorm: f64,
    pub mahalanobis_params: Option<&'a Path>,
}

/// `--methods` keys with their hyperparameters; unknown or repeated keys
/// and bad temperatures are usage errors.
pub(crate) fn parse_methods(args: &MethodFlags) -> Result<Vec<Method>, UsageError> {
    let mut methods: Vec<Method> = Vec::new();
    for key in args.keys.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
        let method = match Method::from_key(key) {
            Some(Method::Odin { .. }) => Method::Odin {
                temperature: args.temperature_odin,
                epsilon: args.epsilon_odin,
            },
            Some(Method::Energy { .. }) => Method::Energy {
                temperature: args.temperature_energy,
            },
            Some(Method::GradNorm { .. }) => Method::GradNorm {
                temperature: args.temperature_gradnorm,
            },
            Some(Method::Mahalanobis { .. }) => Method::Mahalanobis {
                params: args.mahalanobis_params.map(Path::to_path_buf).ok_or_else(|| {
                    UsageError(
                        "--methods mahalanobis needs --mahalanobis-params FILE (from tune-mahalanobis)"
                            .into(),
                    )
                })?,
            },
            Some(m) => m,
            None => {
                return Err(UsageError(format!(
                    "unknown method `{key}` (choose from {})",
                    Method::KEYS.join(", ")
                )))
            }
        };
        if methods.iter().any(|m| m.key() == method.key()) {
            return Err(UsageError(format!("method `{key}` given twice")));
        }
        methods.push(method);
    }
    if methods.is_empty() {
        return Err(UsageError("no methods given".into()));
    }
    for t in [
        args.temperature_odin,
        args.temperature_energy,
        args.temperature_gradnorm,
    ] {
        if !(t.is_finite() && t > 0.0) {
            return Err(UsageError(format!(
                "temperatures must be positive, got {t}"
            )));
        }
    }
    if !(args.epsilon_odin.is_finite() && args.epsilon_odin >= 0.0) {
        return Err(UsageError(format!(
            "--epsilon-odin must be a finite number >= 0, got {}",
            args.epsilon_odin
        )));
    }
    Ok(methods)
}
