//! `gradnorm-tui fit`: one pass over labelled ID images, written to a fit
//! file for the fit-based methods (see `score::fit`), and the statistics
//! they derive at their default parameters.

use crate::cli::{FitArgs, UsageError};
use anyhow::Context;
use gradnorm_core::run::DatasetSpec;
use gradnorm_engine::engine::fit::{make_fit, FitJob, FitStep};
use gradnorm_engine::score::fit::Fit;
use gradnorm_engine::score::{Method, Scorer};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

/// The job `fit`'s flags describe (the engine makes it, as for the TUI).
pub fn job(args: &FitArgs) -> anyhow::Result<FitJob> {
    if args.bank == 0 || args.batch == 0 {
        anyhow::bail!(UsageError("--bank and --batch must be at least 1".into()));
    }
    let m = &args.model;
    Ok(FitJob {
        model: gradnorm_engine::model::ModelSpec {
            name: m.model.clone(),
            checkpoint: m.checkpoint.clone(),
        },
        device: m.on.device,
        dtype: m.on.dtype,
        image_size: m.image_size.map(|s| s.get()),
        preprocess: m.preprocess,
        sets: args
            .train
            .train
            .iter()
            .map(|path| DatasetSpec {
                name: path.display().to_string(),
                path: path.clone(),
                root: args.train.train_root.clone(),
                format: None,
                group: None,
            })
            .collect(),
        limit: args.limit,
        bank: args.bank,
        nac_rows: args.nac_rows,
        batch: args.batch,
        workers: args.workers.threads(),
        out: args.out.clone(),
    })
}

pub fn run(args: &FitArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let job = job(args)?;
    let interrupts = crate::interrupt::listen(|sig, _| {
        eprintln!(
            "\n{}: stopping after the current batch",
            crate::interrupt::name(sig)
        )
    });
    let cancel = interrupts.cancel.clone();
    let started = Instant::now();
    let mut last = Instant::now();
    let made = make_fit(&job, cancel, &mut |step| match step {
        FitStep::Started {
            model,
            images,
            size,
            device,
        } => eprintln!("fit: {model} on {images} images at {size} px, {device}"),
        FitStep::Images { done, total } => {
            if last.elapsed().as_secs_f64() >= 1.0 || done == total {
                last = Instant::now();
                eprint!("\rfit: {done}/{total} images");
                let _ = std::io::stderr().flush();
            }
        }
    })
    .with_context(|| format!("fit {}", args.out.display()))?;
    eprintln!();
    for (path, why) in &made.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    let fit = &made.fit;
    println!(
        "fit of {} images ({} classes, feature dim {}, bank {}) in {:.1} s: wrote {}",
        fit.images,
        fit.by_class.classes.len(),
        fit.feature_dim,
        fit.bank_rows,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    for line in default_stats(made.model.as_ref(), fit)? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// ReAct's and DICE's thresholds and ViM's alpha at their default
/// parameters (ViM's dim capped below the feature dimension).
pub fn default_stats(
    model: &dyn gradnorm_engine::model::Classifier,
    fit: &Fit,
) -> anyhow::Result<Vec<String>> {
    let mut methods: Vec<Method> = ["react", "dice"]
        .iter()
        .filter_map(|k| Method::from_key(k))
        .collect();
    if let Some(mut vim) = Method::from_key("vim") {
        // The registry's default dim, capped below the feature dimension.
        let dim = vim
            .number("dim")
            .context("vim's registry entry declares no dim")? as usize;
        if dim < fit.feature_dim {
            methods.push(vim);
        } else if fit.feature_dim > 1 {
            vim.set_number("dim", (fit.feature_dim / 2) as f64)?;
            methods.push(vim);
        }
    }
    let scorer = Scorer::with_fit(&methods, model, Some(fit))?;
    Ok(methods
        .iter()
        .zip(scorer.stats())
        .map(|(m, (_, stat, v))| format!("{m}: {stat} = {v}"))
        .collect())
}
