//! The headless commands and the TUI entry point. Each takes its parsed
//! arguments and returns an exit code; errors go up to `main`.

pub mod eval;
pub mod metrics;
pub mod predict;
pub mod train_demo;
pub mod tui;

use crate::cli::ModelArgs;
use anyhow::Context;
use candle_core::{DType, Device};

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
