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

/// The file's `store` key: the run store folder its runs are recorded in
/// (`--store` overrides it). It sits beside the run's keys rather than in
/// [`RunConfig`]: where runs are kept is no part of what a run is.
pub const STORE_KEY: &str = "store";

/// The `store` key of the file at `path`, when it has one.
pub fn store(path: &Path) -> Result<Option<PathBuf>> {
    let text = crate::error::read_text(
        path,
        "a config file must be UTF-8 TOML text; this is not text",
    )?;
    store_of(&text).map_err(|reason| Error::data(path, format!("config file: {reason}")))
}

fn store_of(text: &str) -> std::result::Result<Option<PathBuf>, String> {
    #[derive(serde::Deserialize)]
    struct Where {
        #[serde(default)]
        store: Option<PathBuf>,
    }
    let w: Where = toml::from_str(text).map_err(|e| e.to_string())?;
    match w.store {
        Some(p) if p.as_os_str().is_empty() => Err(format!(
            "{STORE_KEY}: an empty path (leave the key out for ./runs)"
        )),
        store => Ok(store),
    }
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
/// leaves the old file intact), keeping the old file's `store` key.
pub fn save(path: &Path, config: &RunConfig) -> Result<()> {
    let mut text = to_toml(config).map_err(|reason| Error::data(path, reason))?;
    let kept = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| store_of(&old).ok().flatten());
    if let Some(store) = kept {
        // A top-level key: before the tables that to_toml writes.
        let value = toml::Value::String(store.to_string_lossy().into_owned());
        text = format!("{STORE_KEY} = {value}\n{text}");
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_key_is_read_and_kept_by_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        let config = parse(
            "batch = 4\ndevice = \"cpu\"\nmethods = [{ method = \"msp\" }]\n\
             [model]\ncheckpoint = \"m.safetensors\"\n[id]\nname = \"id\"\npath = \"id\"\n\
             [[ood]]\nname = \"ood\"\npath = \"ood\"\n",
        )
        .unwrap();
        save(&path, &config).unwrap();
        assert_eq!(store(&path).unwrap(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("store = \"elsewhere/runs\"\n{text}")).unwrap();
        assert_eq!(load(&path).unwrap(), config);
        assert_eq!(store(&path).unwrap(), Some(PathBuf::from("elsewhere/runs")));
        // The TUI's `w` rewrites the file: the key stays.
        save(&path, &config).unwrap();
        assert_eq!(store(&path).unwrap(), Some(PathBuf::from("elsewhere/runs")));
        assert_eq!(load(&path).unwrap(), config);
        std::fs::write(&path, format!("store = \"\"\n{text}")).unwrap();
        assert!(store(&path)
            .unwrap_err()
            .to_string()
            .contains("store: an empty path"));
    }
}
