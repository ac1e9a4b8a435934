//! The run configuration file: [`RunConfig`] as TOML
//! (`gradnorm-tui.toml` by default), read by the TUI and `eval --config`.

use crate::error::{Error, Result};
use crate::run::RunConfig;
use std::path::{Path, PathBuf};

/// The file read when no `--config` is given, in the working directory.
pub const DEFAULT_FILE: &str = "gradnorm-tui.toml";

/// `--config FILE`, else `./gradnorm-tui.toml`.
pub fn path(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE))
}

pub fn load(path: &Path) -> Result<RunConfig> {
    let text = crate::error::read_text(
        path,
        "a config file must be UTF-8 TOML text; this is not text",
    )?;
    parse(&text).map_err(|reason| Error::data(path, format!("config file: {reason}")))
}

/// Parses and validates a config (the types check each key; `validate`
/// what spans keys).
pub fn parse(text: &str) -> std::result::Result<RunConfig, String> {
    let config: RunConfig = toml::from_str(text).map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

pub fn to_toml(config: &RunConfig) -> std::result::Result<String, String> {
    toml::to_string_pretty(config).map_err(|e| e.to_string())
}

/// Writes `config` to `path` (through a temporary file, so a failed write
/// leaves the old file intact).
pub fn save(path: &Path, config: &RunConfig) -> Result<()> {
    let text = to_toml(config).map_err(|reason| Error::data(path, reason))?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
