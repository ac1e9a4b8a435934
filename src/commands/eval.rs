//! `gradnorm-tui eval`: the headless evaluation. Prints the paper's table,
//! writes summary.json and scores.csv, shows progress on stderr, and stops
//! cleanly on Ctrl-C with what was computed.

use crate::cli::{EvalArgs, UsageError};
use crate::interrupt;
use gradnorm_core::run::report;
use gradnorm_core::run::{self, RunResults};
use gradnorm_core::run::{DatasetSpec, Event, RunConfig};
use gradnorm_engine::demo;
use gradnorm_engine::engine::{OnStoreError, Run};
use gradnorm_engine::model::ModelSpec;
use gradnorm_engine::score::Method;
use gradnorm_engine::store::{Recorder, Store};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let config = config_from_args(args)?;
    check_listed_files(&config)?;
    let store_dir = store_dir(args)?;
    // `latest` is per store: a run into another store leaves ./runs alone.
    let out = args.out.clone().unwrap_or_else(|| store_dir.join("latest"));
    check_writable(&out)?;
    let interrupts = interrupt::listen(|sig, n| {
        if n == 1 {
            eprintln!(
                "\n{}: stopping after the current batch (again to stop at once; what was computed is kept)",
                interrupt::name(sig)
            );
        } else {
            eprintln!(
                "\n{} again: stopping now with what was computed",
                interrupt::name(sig)
            );
        }
    });

    // The store is opened before the run, so that one that cannot be used
    // is reported before a large model loads.
    let mut run = Run::new(config.clone()).cancel(interrupts.cancel.clone());
    if !args.no_store {
        let store = Store::open(&store_dir)?;
        let recorder = Recorder::new(store, &config, args.shard)?;
        // A store that cannot be written stops the run (what it records is
        // the point of a long run); the error is reported after the results
        // are written.
        run = run.record(recorder, OnStoreError::Stop);
    }
    let handle = run.spawn();
    let run_id = (!args.no_store).then(|| handle.run_id.clone());
    let mut results = RunResults::new();
    let mut progress = ProgressLine::new(std::io::stderr().is_terminal());
    let mut abandoned = false;
    loop {
        // A second signal stops waiting for the batch in flight: what the
        // engine has sent is all there is.
        if interrupts.count() >= 2 {
            abandoned = true;
            break;
        }
        match handle.events.recv_timeout(Duration::from_millis(50)) {
            Ok(event) => {
                progress.on(&event);
                results.apply(event);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    progress.finish();
    if !abandoned {
        handle.join();
    }
    let interrupted = interrupts.exit_status();
    if results.finished.is_none() && results.failed.is_none() && interrupted.is_none() {
        // The engine thread ended without a word: it panicked (the panic
        // hook has printed it). Keep what it computed all the same.
        results.failed = Some("the run stopped on an internal error (a bug)".into());
    }

    // What was computed is written even when the run stopped early.
    if results.info.is_some() {
        run::write_run_in(&out, &results, args.convention)?;
    }
    if let Some(msg) = &results.failed {
        anyhow::bail!("{msg}");
    }
    if let (Some(code), None) = (interrupted, &results.info) {
        eprintln!("interrupted before any image was evaluated");
        return Ok(ExitCode::from(code));
    }
    let summary = results
        .summary_in(args.convention)
        .ok_or_else(|| anyhow::anyhow!("the run produced no results"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
    } else {
        print!("{}", report::run_header(&summary));
        println!();
        print!("{}", report::paper_table(&summary));
        println!();
        println!(
            "{} images in {:.1} s; wrote {} and {}",
            summary.datasets.iter().map(|d| d.evaluated).sum::<usize>(),
            summary.elapsed_secs,
            out.join("summary.json").display(),
            out.join("scores.csv").display()
        );
        if let Some(id) = run_id.as_ref().and_then(|id| id.get()) {
            println!(
                "recorded as run {id} in {}",
                store_dir.join(gradnorm_engine::store::FILE_NAME).display()
            );
        }
    }
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(code) = interrupted {
        eprintln!("interrupted: the results above cover the images evaluated before the signal");
        return Ok(ExitCode::from(code));
    }
    // A set that evaluated nothing has no figure: the run did not do what
    // was asked (a wrong --id-root, files that do not decode).
    let empty: Vec<String> = summary
        .datasets
        .iter()
        .filter(|d| d.evaluated == 0)
        .map(|d| {
            let why = d
                .skipped
                .first()
                .map(|s| format!(" (e.g. {}: {})", s.path.display(), s.reason))
                .unwrap_or_default();
            format!("`{}`: 0 of {} images evaluated{why}", d.name, d.images)
        })
        .collect();
    if !empty.is_empty() {
        anyhow::bail!("nothing evaluated in {}", empty.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The run store folder: `--store`, else the config file's `store` key,
/// else ./runs.
fn store_dir(args: &EvalArgs) -> Result<PathBuf, UsageError> {
    if let Some(dir) = &args.store {
        return Ok(dir.clone());
    }
    let from_file = match &args.config {
        Some(path) => {
            gradnorm_core::run::file::store(path).map_err(|e| UsageError(e.to_string()))?
        }
        None => None,
    };
    Ok(from_file.unwrap_or_else(|| gradnorm_engine::store::DEFAULT_DIR.into()))
}

/// Fails early (before the model loads) when `--out` cannot take the
/// results: a file in the way, a read-only place.
fn check_writable(out: &Path) -> Result<(), UsageError> {
    let bad = |why: String| UsageError(format!("--out {}: {why}", out.display()));
    if out.exists() && !out.is_dir() {
        return Err(bad("exists and is not a folder".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| {
        bad(format!(
            "cannot create the folder ({})",
            gradnorm_engine::error::io_reason(&e)
        ))
    })?;
    let probe = out.join(format!(".gradnorm-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        bad(format!(
            "cannot write there ({})",
            gradnorm_engine::error::io_reason(&e)
        ))
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The run configuration the flags describe.
pub fn config_from_args(args: &EvalArgs) -> Result<RunConfig, UsageError> {
    let usage = |s: String| UsageError(s);
    if args.demo {
        return demo_config(args);
    }
    if let Some(path) = &args.config {
        // The file decides everything; flags with defaults do not override it.
        return gradnorm_core::run::file::load(path).map_err(|e| usage(e.to_string()));
    }
    let checkpoint = args
        .model
        .checkpoint
        .clone()
        .ok_or_else(|| usage("eval needs --checkpoint FILE (or --demo)".into()))?;
    let id = match args.benchmark {
        // Replaced by the benchmark's sets below.
        Some(_) => PathBuf::new(),
        None => args.id.clone().ok_or_else(|| {
            usage("eval needs --id PATH (a list file, an ImageFolder or a folder)".into())
        })?,
    };
    if args.ood.is_empty() && args.benchmark.is_none() {
        return Err(usage("eval needs at least one --ood NAME=PATH".into()));
    }
    let mut ood: Vec<DatasetSpec> = Vec::new();
    for spec in &args.ood {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) if !n.is_empty() && !p.is_empty() => (n.to_string(), PathBuf::from(p)),
            Some(_) => return Err(usage(format!("--ood `{spec}`: expected NAME=PATH"))),
            None => {
                let p = PathBuf::from(spec);
                let name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| spec.clone());
                (name, p)
            }
        };
        if ood.iter().any(|o| o.name == name) {
            return Err(usage(format!("two OOD sets are named `{name}`")));
        }
        ood.push(DatasetSpec {
            name,
            path,
            root: None,
            format: None,
            group: None,
        });
    }
    let methods = methods_from_args(args)?;
    let checkpoint_path = checkpoint.clone();
    let mut config = RunConfig {
        model: ModelSpec {
            name: args.model.model.clone(),
            checkpoint: Some(checkpoint),
        },
        class_names: args.classes.classes.clone(),
        class_order: args.classes.class_order.clone(),
        id: DatasetSpec {
            name: "id".into(),
            path: id,
            root: args.id_root.clone(),
            format: None,
            group: None,
        },
        ood,
        methods,
        fit: args.fit.clone(),
        image_size: match args.model.image_size {
            Some(s) => Some(s),
            None => demo_size(&checkpoint_path)?,
        },
        preprocess: args.model.preprocess,
        batch: args.batch,
        device: args.model.on.device,
        dtype: args.model.on.dtype,
        limit: args.limit,
        workers: args.workers.workers,
    };
    if let (Some(benchmark), Some(root)) = (args.benchmark, &args.data_root) {
        (config.id, config.ood) = benchmark.datasets(root);
    }
    for spec in &args.group {
        let Some((group, sets)) = spec
            .split_once('=')
            .filter(|(g, s)| !g.is_empty() && !s.is_empty())
        else {
            return Err(usage(format!(
                "--group `{spec}`: expected GROUP=SET[,SET...]"
            )));
        };
        for set in sets.split(',').map(str::trim) {
            let ds = config
                .ood
                .iter_mut()
                .find(|d| d.name == set)
                .ok_or_else(|| usage(format!("--group `{spec}`: no OOD set is named `{set}`")))?;
            if let Some(other) = ds.group.as_ref().filter(|g| *g != group) {
                return Err(usage(format!(
                    "--group `{spec}`: `{set}` is already in group `{other}`"
                )));
            }
            ds.group = Some(group.to_string());
        }
    }
    config.validate().map_err(|e| usage(e.to_string()))?;
    Ok(config)
}

/// Says, before the model loads, how many of the files the list files
/// name are missing (OpenOOD's lists are often used with part of the
/// images): a warning with the first few per set; an error when a set has
/// none of its files or a list is absent (a wrong --data-root).
fn check_listed_files(config: &RunConfig) -> anyhow::Result<()> {
    for spec in std::iter::once(&config.id).chain(&config.ood) {
        if spec.format != Some(gradnorm_core::run::ListFormat::OpenOod) {
            continue;
        }
        let Some(missing) = gradnorm_engine::data::openood::missing(spec, 3)? else {
            continue;
        };
        if missing.missing == missing.listed {
            anyhow::bail!(
                "{missing}: is the images folder {} right?",
                spec.root.as_deref().unwrap_or(Path::new(".")).display()
            );
        }
        eprintln!("warning: {missing}; they will be skipped and counted");
    }
    Ok(())
}

/// The methods of --methods, else the registry's defaults, with the legacy
/// flags.
fn methods_from_args(args: &EvalArgs) -> Result<Vec<Method>, UsageError> {
    methods_or(args, &[])
}

/// The methods of --methods, else `defaults` (else the registry's), with
/// the legacy flags.
fn methods_or(args: &EvalArgs, defaults: &[String]) -> Result<Vec<Method>, UsageError> {
    let specs = if args.methods.is_empty() {
        defaults
    } else {
        &args.methods
    };
    super::parse_methods(&super::MethodFlags {
        specs,
        odin: args.odin,
        temperature_energy: args.temperature_energy,
        temperature_gradnorm: args.temperature_gradnorm,
        mahalanobis_params: args.mahalanobis_params.as_deref(),
        mahalanobis_in_memory: false,
    })
}

/// The embedded demo, with the flags that make sense for it (methods and
/// their parameters, device, dtype, batch, limit, workers) applied.
fn demo_config(args: &EvalArgs) -> Result<RunConfig, UsageError> {
    if args.model.checkpoint.is_some() || args.id.is_some() || !args.ood.is_empty() {
        return Err(UsageError(
            "--demo brings its own model and datasets: drop --checkpoint, --id and --ood".into(),
        ));
    }
    let root = demo::locate_project_root().ok_or_else(|| {
        UsageError(format!(
            "--demo runs inside the repository: {} was not found here or above",
            demo::CHECKPOINT
        ))
    })?;
    eprintln!(
        "the demo: {} on images drawn into {}",
        demo::CHECKPOINT,
        root.join(demo::DATA_DIR).display()
    );
    let mut config = demo::run_config(&root).map_err(|e| UsageError(e.to_string()))?;
    let demo_methods: Vec<String> = config
        .methods
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    config.methods = methods_or(args, &demo_methods)?;
    if args.fit.is_some() {
        config.fit = args.fit.clone();
    }
    config.device = args.model.on.device;
    config.dtype = args.model.on.dtype;
    config.batch = args.batch;
    config.limit = args.limit;
    config.workers = args.workers.workers;
    if args.model.image_size.is_some() {
        config.image_size = args.model.image_size;
    }
    if args.model.preprocess.is_some() {
        config.preprocess = args.model.preprocess;
    }
    config.validate().map_err(|e| UsageError(e.to_string()))?;
    Ok(config)
}

/// Progress on stderr: a redrawn bar on a terminal, a line every few
/// seconds otherwise (logs, CI).
struct ProgressLine {
    terminal: bool,
    last: Option<Instant>,
    names: Vec<String>,
    drawn: bool,
}

impl ProgressLine {
    fn new(terminal: bool) -> Self {
        ProgressLine {
            terminal,
            last: None,
            names: Vec::new(),
            drawn: false,
        }
    }

    fn on(&mut self, event: &Event) {
        match event {
            Event::Started(info) => {
                self.names = info.datasets.iter().map(|d| d.name.clone()).collect();
                let total: usize = info.datasets.iter().map(|d| d.count).sum();
                eprintln!(
                    "{} on {} ({}), {} images in {} sets, methods: {}",
                    info.model.name,
                    info.setup.device,
                    info.setup.dtype,
                    total,
                    info.datasets.len(),
                    info.methods
                        .iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Event::Skipped { path, reason, .. } => {
                self.clear();
                eprintln!("skipped {}: {reason}", path.display());
            }
            Event::Progress(p) => {
                let now = Instant::now();
                let due = self.last.is_none_or(|t| {
                    now - t >= Duration::from_millis(if self.terminal { 100 } else { 5000 })
                });
                let dataset_done = p.done == p.total;
                if !(due || dataset_done) {
                    return;
                }
                self.last = Some(now);
                let name = self.names.get(p.dataset).map(String::as_str).unwrap_or("?");
                let eta = p
                    .eta_secs()
                    .map(report::duration)
                    .unwrap_or_else(|| "--:--".into());
                let line = format!(
                    "{name:<12} {:>6}/{:<6} all {:>6}/{:<6} {:>7.1} img/s  ETA {eta}",
                    p.done, p.total, p.run_done, p.run_total, p.images_per_sec
                );
                if self.terminal {
                    let width = 24usize;
                    let filled = (width * p.run_done) / p.run_total.max(1);
                    eprint!(
                        "\r[{}{}] {line}",
                        "#".repeat(filled),
                        ".".repeat(width - filled)
                    );
                    let _ = std::io::stderr().flush();
                    self.drawn = true;
                } else {
                    eprintln!("{line}");
                }
            }
            // `main` prints the error once.
            Event::Failed(_) => self.clear(),
            Event::Notice(msg) => {
                self.clear();
                eprintln!("note: {msg}");
            }
            Event::Records { .. } | Event::Finished { .. } => {}
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }

    fn finish(&mut self) {
        self.clear();
    }
}

/// The demo checkpoint runs at the size it was trained at unless told.
fn demo_size(checkpoint: &Path) -> Result<Option<gradnorm_core::run::ImageSize>, UsageError> {
    match demo::trained_image_size(checkpoint) {
        Some(n) => {
            eprintln!("note: the demo checkpoint runs at {n} x {n}, the size it was trained at (--image-size to change)");
            gradnorm_core::run::ImageSize::new(n)
                .map(Some)
                .map_err(|e| UsageError(e.to_string()))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_flags_group_the_ood_sets_by_name() {
        fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
            let mut v = vec![
                "gradnorm-tui",
                "eval",
                "--checkpoint",
                "c.pth",
                "--id",
                "id.txt",
                "--ood",
                "textures=t",
                "--ood",
                "scenes=s",
                "--ood",
                "cifar10=c",
            ];
            v.extend_from_slice(extra);
            v
        }
        let config = |extra: &[&str]| {
            use clap::Parser;
            let cli = crate::cli::Cli::try_parse_from(args(extra)).unwrap();
            let Some(crate::cli::Command::Eval(eval)) = cli.command else {
                panic!("not eval")
            };
            super::config_from_args(&eval)
        };
        let c = config(&["--group", "near=scenes", "--group", "far=textures,cifar10"]).unwrap();
        let groups: Vec<Option<&str>> = c.ood.iter().map(|d| d.group.as_deref()).collect();
        assert_eq!(groups, [Some("far"), Some("near"), Some("far")]);
        let error = |extra: &[&str]| config(extra).unwrap_err().to_string();
        assert!(error(&["--group", "near=sun"]).contains("no OOD set is named `sun`"));
        assert!(error(&["--group", "near=scenes", "--group", "far=scenes"])
            .contains("already in group `near`"));
        assert!(error(&["--group", "near"]).contains("GROUP=SET"));
    }
}
