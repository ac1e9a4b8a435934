//! Where logs go: `$GRADNORM_LOG` (`off` for none), else the platform's
//! state folder (`$XDG_STATE_HOME` or `~/.local/state` on Linux,
//! `~/Library/Logs` on macOS, `%LOCALAPPDATA%` on Windows) under
//! `gradnorm-tui/`, never the working directory. Level from `$RUST_LOG`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The log file in use, once `init` has run and opened it.
pub fn path() -> Option<&'static Path> {
    PATH.get().and_then(|p| p.as_deref())
}

/// The log file this environment asks for (None: logging is off, or no
/// home folder to put it in).
pub fn default_path() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("GRADNORM_LOG") {
        return (p.as_os_str() != "off").then_some(p);
    }
    let dir = if cfg!(target_os = "macos") {
        env("HOME").map(|h| h.join("Library/Logs"))
    } else if cfg!(windows) {
        env("LOCALAPPDATA")
    } else {
        env("XDG_STATE_HOME").or_else(|| env("HOME").map(|h| h.join(".local/state")))
    }?;
    Some(dir.join("gradnorm-tui").join("gradnorm-tui.log"))
}

/// Opens the log (creating its folder) and routes `tracing` to it. A log
/// that cannot be opened is not an error: the run goes on without one.
pub fn init() {
    use tracing_subscriber::EnvFilter;
    let opened = default_path().and_then(|path| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).ok()?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok()?;
        Some((path, file))
    });
    let Some((path, file)) = opened else {
        let _ = PATH.set(None);
        return;
    };
    let _ = PATH.set(Some(path));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}
