//! `gradnorm-tui fit`: one pass over labelled ID images, written to a fit
//! file for the fit-based methods (see `score::fit`), and the statistics
//! they derive at their default parameters.

use crate::cli::{FitArgs, UsageError};
use anyhow::Context;
use gradnorm_engine::data::dataset::{Dataset, Item};
use gradnorm_engine::score::fit::{fit_images, Fit, FitOptions};
use gradnorm_engine::score::{Method, Scorer};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(args: &FitArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let super::Loaded {
        model,
        input,
        device,
        ..
    } = super::load_model(&args.model, None)?;
    let info = model.info().clone();
    if args.bank == 0 || args.batch == 0 {
        anyhow::bail!(UsageError("--bank and --batch must be at least 1".into()));
    }
    let mut items: Vec<Item> = Vec::new();
    for path in &args.train.train {
        let mut ds = Dataset::open(path, args.train.train_root.as_deref())
            .with_context(|| format!("fit set {}", path.display()))?;
        if let Some(n) = args.limit {
            ds.limit(n);
        }
        items.extend(ds.items);
    }
    let interrupts = crate::interrupt::listen(|sig, _| {
        eprintln!(
            "\n{}: stopping after the current batch",
            crate::interrupt::name(sig)
        )
    });
    let cancel = interrupts.cancel.clone();
    let started = Instant::now();
    eprintln!(
        "fit: {} on {} images at {} px, {}",
        info.name,
        items.len(),
        input.size,
        gradnorm_engine::device::device_name(&device)
    );
    let opts = FitOptions {
        input,
        batch: args.batch,
        workers: args.workers.threads(),
        bank: args.bank,
        nac_rows: args.nac_rows,
    };
    let mut last = Instant::now();
    let (fit, skipped) = fit_images(model.as_ref(), items, opts, cancel, &mut |done, total| {
        if last.elapsed().as_secs_f64() >= 1.0 || done == total {
            last = Instant::now();
            eprint!("\rfit: {done}/{total} images");
            let _ = std::io::stderr().flush();
        }
    })?;
    eprintln!();
    for (path, why) in &skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    fit.save(&args.out)?;
    println!(
        "fit of {} images ({} classes, feature dim {}, bank {}) in {:.1} s: wrote {}",
        fit.images,
        fit.by_class.classes.len(),
        fit.feature_dim,
        fit.bank_rows,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    for line in default_stats(model.as_ref(), &fit)? {
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
        let dim = vim.number("dim").unwrap_or(0.0) as usize;
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
