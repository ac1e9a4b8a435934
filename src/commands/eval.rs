//! `gradnorm-tui eval`: the headless evaluation. Prints the paper's table,
//! writes summary.json and scores.csv, shows progress on stderr, and stops
//! cleanly on Ctrl-C with what was computed.

use crate::cli::{EvalArgs, UsageError};
use crate::demo;
use crate::engine;
use crate::model::ModelSpec;
use crate::run::report;
use crate::run::{self, RunResults};
use crate::run::{DatasetSpec, Event, RunConfig};
use crate::score::Method;
use crate::store::{Recorder, Store};
use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let config = config_from_args(args)?;
    let cancel = Arc::new(AtomicBool::new(false));
    super::cancel_on_ctrl_c(cancel.clone());

    let mut results = RunResults::new();
    let mut progress = ProgressLine::new(std::io::stderr().is_terminal());
    let recorder = if args.no_store {
        None
    } else {
        let store = Store::open(&args.store)?;
        Some(RefCell::new(Recorder::new(store, &config, args.shard)?))
    };
    // A store that cannot be written stops the run (what it records is the
    // point of a long run); the error is reported after the table.
    let mut store_error: Option<crate::Error> = None;
    let mut known = |d: usize, p: &std::path::Path, l: Option<usize>| {
        recorder.as_ref()?.borrow_mut().known(d, p, l)
    };
    let options = engine::RunOptions {
        shard: args.shard,
        known: recorder.is_some().then_some(&mut known as engine::Known),
    };
    let outcome = engine::run_with(&config, options, &cancel, &mut |event: Event| {
        if let (Some(r), None) = (&recorder, &store_error) {
            if let Err(e) = r.borrow_mut().on(&event) {
                store_error = Some(e);
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        progress.on(&event);
        results.apply(event);
    });
    progress.finish();
    if let (Some(r), Err(e)) = (&recorder, &outcome) {
        let _ = r.borrow_mut().finish("failed", Some(&e.to_string()));
    }
    let run_id = recorder.as_ref().and_then(|r| r.borrow().run_id());

    // What was computed is written even when the run stopped early.
    if results.info.is_some() {
        run::write_run(&args.out, &results)?;
    }
    outcome?;
    if let Some(e) = store_error {
        return Err(anyhow::Error::new(e).context("recording the run"));
    }
    let summary = results
        .summary()
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
            args.out.join("summary.json").display(),
            args.out.join("scores.csv").display()
        );
        if let Some(id) = run_id {
            println!(
                "recorded as run {id} in {}",
                args.store.join(crate::store::FILE_NAME).display()
            );
        }
    }
    if summary.cancelled {
        eprintln!("interrupted: the results above cover the images evaluated before Ctrl-C");
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// The run configuration the flags describe.
pub fn config_from_args(args: &EvalArgs) -> Result<RunConfig, UsageError> {
    let usage = |s: String| UsageError(s);
    if args.demo {
        return demo_config(args);
    }
    let checkpoint = args
        .model
        .checkpoint
        .clone()
        .ok_or_else(|| usage("eval needs --checkpoint FILE (or --demo)".into()))?;
    let id = args.id.clone().ok_or_else(|| {
        usage("eval needs --id PATH (a list file, an ImageFolder or a folder)".into())
    })?;
    if args.ood.is_empty() {
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
        });
    }
    let methods = methods_from_args(args)?;
    Ok(RunConfig {
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
        },
        ood,
        methods,
        image_size: args.model.image_size,
        batch: args.batch,
        device: args.model.device.clone(),
        dtype: args.model.dtype.clone(),
        limit: args.limit,
        workers: args.workers,
    })
}

fn methods_from_args(args: &EvalArgs) -> Result<Vec<Method>, UsageError> {
    super::parse_methods(&super::MethodFlags {
        keys: &args.methods,
        temperature_odin: args.temperature_odin,
        epsilon_odin: args.epsilon_odin,
        temperature_energy: args.temperature_energy,
        temperature_gradnorm: args.temperature_gradnorm,
        mahalanobis_params: args.mahalanobis_params.as_deref(),
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
    config.methods = methods_from_args(args)?;
    config.device = args.model.device.clone();
    config.dtype = args.model.dtype.clone();
    config.batch = args.batch;
    config.limit = args.limit;
    config.workers = args.workers;
    if args.model.image_size.is_some() {
        config.image_size = args.model.image_size;
    }
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
                    info.device,
                    info.dtype,
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
                    .map(format_secs)
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
            Event::Failed(msg) => {
                self.clear();
                eprintln!("run failed: {msg}");
            }
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

fn format_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}
