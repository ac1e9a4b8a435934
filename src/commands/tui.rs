//! `gradnorm-tui [tui] [--config FILE]`: the terminal UI, on the config
//! file when there is one (`--config`, else ./gradnorm-tui.toml), else on
//! the embedded demo (started at once) inside a checkout, else on what is
//! found under checkpoints/ and dataset/.

use crate::cli::UsageError;
use gradnorm_core::run::RunConfig;
use gradnorm_engine::demo;
use gradnorm_engine::engine::{OnStoreError, Run};
use gradnorm_engine::store::{self, Recorder, Store};
use gradnorm_tui::tui::{self, discover, session, Level, SetupState};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

pub fn run(config: Option<&Path>, store: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = gradnorm_core::run::file::path(config);
    // The config is checked first, so that a bad one is reported the same
    // way with or without a terminal.
    let usage = |e: gradnorm_core::Error| UsageError(e.to_string());
    let (loaded, file_store) = if path.exists() {
        (
            Some(gradnorm_core::run::file::load(&path).map_err(usage)?),
            gradnorm_core::run::file::store(&path).map_err(usage)?,
        )
    } else {
        (None, None)
    };
    // --store, else the file's `store` key, else ./runs.
    let store_dir = store
        .map(Path::to_path_buf)
        .or(file_store)
        .unwrap_or_else(|| store::DEFAULT_DIR.into());
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "the TUI needs a terminal; for a headless run use `gradnorm-tui eval` (see --help)"
        );
    }
    super::init_logging();
    // SIGTERM and SIGHUP (a closed terminal window) quit as Ctrl-C does in
    // the UI: the terminal is given back first.
    let _signals = crate::interrupt::listen(|sig, _| {
        tracing::info!("{}: quitting", crate::interrupt::name(sig));
        tui::restore_terminal();
        std::process::exit(128 + sig);
    });
    let checkpoints = discover::checkpoints(Path::new("checkpoints"));
    let datasets = discover::datasets(Path::new("dataset"));
    let mut start = false;
    let (setup, message) = if let Some(cfg) = loaded {
        (
            SetupState::from_config(&cfg, checkpoints, datasets),
            Some((format!("loaded {} · s starts", path.display()), Level::Info)),
        )
    } else if config.is_some() {
        (
            SetupState::new(checkpoints, datasets),
            Some((
                format!("{} does not exist yet: w writes it", path.display()),
                Level::Warn,
            )),
        )
    } else if let Some(root) = demo::locate_project_root() {
        // First run in a checkout: the demo, drawn before the terminal is taken.
        eprintln!(
            "opening the demo (images in {})...",
            root.join(demo::DATA_DIR).display()
        );
        let cfg = demo::run_config(&root)?;
        start = true;
        (
            SetupState::from_config(&cfg, checkpoints, datasets),
            Some((
                format!(
                    "the demo: {} on images the project draws · 1 setup · ? help",
                    demo::CHECKPOINT
                ),
                Level::Info,
            )),
        )
    } else {
        (SetupState::new(checkpoints, datasets), None)
    };
    let recorded_in = store_dir.clone();
    // Fits found on disk are offered in the form; the ones it makes go to fits/.
    let setup = setup.with_fits(
        discover::fits(
            Path::new(discover::FIT_DIR),
            Path::new("checkpoints"),
            Path::new("dataset"),
        ),
        discover::FIT_DIR.into(),
    );
    tui::run(
        setup,
        path,
        store_dir,
        // Every run is recorded in the run store, as `eval` does.
        Box::new(move |config: RunConfig| {
            let recorder = Store::open(&recorded_in).and_then(|s| Recorder::new(s, &config, None));
            let run = match recorder {
                Ok(r) => Run::new(config).record(r, OnStoreError::Notice),
                Err(e) => Run::new(config).notice(format!("not recording this run: {e}")),
            };
            session::RunSession::from_engine(run.spawn())
        }),
        message,
        start,
    )?;
    Ok(ExitCode::SUCCESS)
}
