//! The TUI entry point (being written).

use std::path::Path;
use std::process::ExitCode;

pub fn run(_config: Option<&Path>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the TUI is being written")
}
