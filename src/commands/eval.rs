//! `gradnorm-tui eval`: headless evaluation (being written).

use crate::cli::EvalArgs;
use std::process::ExitCode;

pub fn run(_args: &EvalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("eval is being written")
}
