//! The headless commands and the TUI entry point. Each takes its parsed
//! arguments and returns an exit code; errors go up to `main`.

pub mod bench;
pub mod eval;
pub mod metrics;
pub mod predict;
pub mod runs;
pub mod selftest;
pub mod train_demo;
pub mod tui;
pub mod tune_mahalanobis;

use crate::cli::{ModelArgs, UsageError};
use crate::score::Method;
use anyhow::Context;
use candle_core::{DType, Device};
use std::path::Path;

/// Device, dtype and model spec from the shared model flags.
pub(crate) fn model_setup(
    args: &ModelArgs,
) -> anyhow::Result<(Device, DType, crate::model::ModelSpec)> {
    let device = crate::device::parse_device(&args.device)?;
    let dtype = crate::device::parse_dtype(&args.dtype)?;
    let spec = crate::model::ModelSpec {
        name: args.model.clone(),
        checkpoint: args.checkpoint.clone(),
    };
    Ok((device, dtype, spec))
}

/// Logs go to a file (never the terminal the TUI draws on):
/// $GRADNORM_LOG or ./gradnorm-tui.log, filtered by $RUST_LOG (default info).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let path = std::env::var_os("GRADNORM_LOG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("gradnorm-tui.log"));
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening log file {}", path.display()))
    else {
        return;
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

/// First Ctrl-C sets `cancel` (the run stops after its batch and keeps its
/// results); a second one exits at once.
pub fn cancel_on_ctrl_c(cancel: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\nCtrl-C: stopping after the current batch (again to quit now)");
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!("no Ctrl-C handler: {e}");
    }
}

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
    Ok(methods)
}
