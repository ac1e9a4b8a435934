//! `gradnorm-tui tune-mahalanobis`: the seed's tune_mahalanobis script.
//! 1. Class means and shared precisions of the five taps over the training
//!    set, in one streaming pass.
//! 2. The first --tune-count labelled validation images and the next
//!    --tune-count, with their FGSM counterparts as the "OOD" side; their
//!    layer scores at every magnitude of the seed's grid (the input
//!    gradients are shared by all magnitudes, so this is one pass).
//! 3. Per magnitude a cross-validated logistic regression on the first half,
//!    FPR95 on the second; the lowest wins. Everything goes to one file.

use crate::cli::{FgsmClampArg, TuneMahalanobisArgs};
use crate::data::dataset::{Dataset, Item};
use crate::data::loader::{self, LoaderConfig};
use crate::model::{self, InputSpec};
use crate::score::gaussian::{pinvh, GaussianFit};
use crate::score::mahalanobis::{
    choose_magnitude, fgsm, FgsmClamp, GaussianLayers, MahalanobisParams, ModelStamp, ScoreTable,
    FGSM_STEP, MAGNITUDES,
};
use anyhow::{bail, Context};
use candle_core::{DType, Tensor};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

pub fn run(args: &TuneMahalanobisArgs) -> anyhow::Result<ExitCode> {
    let (device, dtype, spec) = super::model_setup(&args.model)?;
    let model = model::load(&spec, &device, dtype)?;
    let info = model.info().clone();
    let input = model.preprocess().with_overrides(
        args.model.image_size.map(|s| s.get()),
        args.model.preprocess,
    );
    if args.tune_count == 0 {
        bail!(crate::cli::UsageError(
            "--tune-count must be at least 1".into()
        ));
    }
    let clamp = match args.fgsm_clamp {
        FgsmClampArg::Unit => FgsmClamp::Unit,
        FgsmClampArg::Valid => FgsmClamp::Valid,
        FgsmClampArg::None => FgsmClamp::None,
    };
    let started = Instant::now();
    eprintln!(
        "model {} ({} classes, taps {:?}), input {} px, {}",
        info.name,
        info.num_classes,
        info.tap_dims,
        input.size,
        crate::device::device_name(&device)
    );

    // 1. Means and precisions.
    let mut train: Vec<Item> = Vec::new();
    for path in &args.train.train {
        let ds = Dataset::open(path, args.train.train_root.as_deref())
            .with_context(|| format!("training set {}", path.display()))?;
        train.extend(ds.items);
    }
    if let Some(limit) = args.train_limit {
        train.truncate(limit);
    }
    let train = labelled(train, info.num_classes, "training")?;
    let mut fit = GaussianFit::new(&info.tap_dims, info.num_classes, &device)?;
    let mut progress = Progress::new("fit", train.len());
    for batch in batches(&train, &input, args)? {
        let labels: Vec<usize> = batch.indices.iter().map(|&i| train[i].1).collect();
        let x = tensor(batch.data, labels.len(), &input, &device)?;
        let (_, taps) = model.forward_taps(&x)?;
        fit.add(&taps, &labels)?;
        progress.step(labels.len() + batch.failures.len());
        report_failures(&batch.failures);
    }
    progress.finish();
    let layers = fit.finish()?;
    let missing = info.num_classes - layers[0].classes.len();
    eprintln!(
        "fit on {} images of {} classes{}",
        fit.count(),
        layers[0].classes.len(),
        if missing > 0 {
            format!(" ({missing} classes have no image and take no part)")
        } else {
            String::new()
        }
    );
    if fit.count() as usize == layers[0].classes.len() {
        bail!(crate::cli::UsageError(
            "every class has a single training image, so the class-centred features \
             are all zero and the covariance vanishes: give several images per class"
                .into()
        ));
    }
    let mut means = Vec::new();
    let mut precisions = Vec::new();
    let mut ranks = Vec::new();
    for (l, g) in layers.iter().enumerate() {
        let t0 = Instant::now();
        let (p, rank) = pinvh(&g.covariance, g.dim)?;
        eprintln!(
            "layer {l}: dim {}, covariance rank {rank}, pseudo-inverse in {:.1}s",
            g.dim,
            t0.elapsed().as_secs_f64()
        );
        ranks.push(rank);
        let k = g.classes.len();
        let m: Vec<f32> = g.means.iter().map(|&v| v as f32).collect();
        let p: Vec<f32> = p.iter().map(|&v| v as f32).collect();
        means.push(Tensor::from_vec(m, (k, g.dim), &candle_core::Device::Cpu)?);
        precisions.push(Tensor::from_vec(
            p,
            (g.dim, g.dim),
            &candle_core::Device::Cpu,
        )?);
    }

    // 2. Layer scores of the tuning images and their FGSM counterparts.
    let val = Dataset::open(&args.val, args.val_root.as_deref())
        .with_context(|| format!("validation set {}", args.val.display()))?;
    let m = args.tune_count;
    if val.items.len() < 2 * m {
        bail!(crate::cli::UsageError(format!(
            "{} holds {} images; the tuning needs 2 x --tune-count = {}",
            args.val.display(),
            val.items.len(),
            2 * m
        )));
    }
    let tune = labelled(
        val.items.into_iter().take(2 * m).collect(),
        info.num_classes,
        "validation",
    )?;
    let gaussians = GaussianLayers::new(&means, &precisions, &device)?;
    let k = MAGNITUDES.len();
    let empty = || -> ScoreTable { vec![Vec::new(); k] };
    let (mut train_id, mut train_ood, mut val_id, mut val_ood) =
        (empty(), empty(), empty(), empty());
    let mut progress = Progress::new("tune", tune.len());
    for batch in batches(&tune, &input, args)? {
        let labels: Vec<usize> = batch.indices.iter().map(|&i| tune[i].1).collect();
        let x = tensor(batch.data, labels.len(), &input, &device)?;
        let adv = fgsm(model.as_ref(), &x, &labels, FGSM_STEP, clamp, &input)?;
        let clean = gaussians.scores(model.as_ref(), &x, &MAGNITUDES)?;
        let attacked = gaussians.scores(model.as_ref(), &adv, &MAGNITUDES)?;
        for mag in 0..k {
            let clean = rows(&clean[mag])?;
            let attacked = rows(&attacked[mag])?;
            for (j, &i) in batch.indices.iter().enumerate() {
                let (id, ood) = if i < m {
                    (&mut train_id, &mut train_ood)
                } else {
                    (&mut val_id, &mut val_ood)
                };
                id[mag].push(clean[j].clone());
                ood[mag].push(attacked[j].clone());
            }
        }
        progress.step(labels.len() + batch.failures.len());
        report_failures(&batch.failures);
    }
    progress.finish();

    if let Some(path) = &args.scores_out {
        let json = serde_json::json!({
            "magnitudes": MAGNITUDES,
            "train_id": train_id, "train_ood": train_ood,
            "val_id": val_id, "val_ood": val_ood,
        });
        std::fs::write(path, json.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }

    // 3. The seed's choice, then the file.
    let tuned = choose_magnitude(&MAGNITUDES, &train_id, &train_ood, &val_id, &val_ood)?;
    println!("magnitude   C           val FPR95   weights / bias");
    for t in &tuned.trials {
        println!(
            "{:<11} {:<11.4e} {:>8.2}%   {:?} / {}",
            t.magnitude,
            t.c,
            100.0 * t.val_fpr95,
            t.regression.weights,
            t.regression.bias
        );
    }
    println!("best magnitude: {} (C = {:.4e})", tuned.magnitude, tuned.c);
    let provenance = serde_json::json!({
        "train": args.train.train,
        "train_images": fit.count(),
        "covariance_ranks": ranks,
        "val": args.val,
        "tune_count": m,
        "tune_images": {
            "train_id": train_id[0].len(), "val_id": val_id[0].len(),
        },
        "fgsm_step": FGSM_STEP,
        "fgsm_clamp": clamp,
        "trials": tuned.trials,
        "dtype": crate::device::dtype_name(dtype),
        "seconds": started.elapsed().as_secs_f64(),
    });
    let params = MahalanobisParams {
        model: ModelStamp::of(model.as_ref(), input.size)?,
        classes: layers[0].classes.clone(),
        means,
        precisions,
        magnitude: tuned.magnitude,
        regression: tuned.regression,
        provenance,
    };
    params.save(&args.out)?;
    eprintln!(
        "wrote {} in {:.0}s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// (path, label) of every item, each label checked against the model.
fn labelled(
    items: Vec<Item>,
    classes: usize,
    what: &str,
) -> anyhow::Result<Vec<(std::path::PathBuf, usize)>> {
    items
        .into_iter()
        .map(|it| match it.label {
            Some(l) if l < classes => Ok((it.path, l)),
            Some(l) => bail!(crate::cli::UsageError(format!(
                "{}: label {l} is out of range for a model with {classes} classes",
                it.path.display()
            ))),
            None => bail!(crate::cli::UsageError(format!(
                "{}: the {what} set needs labels (a list file or an ImageFolder)",
                it.path.display()
            ))),
        })
        .collect()
}

fn batches(
    items: &[(std::path::PathBuf, usize)],
    input: &InputSpec,
    args: &TuneMahalanobisArgs,
) -> anyhow::Result<impl Iterator<Item = loader::Batch>> {
    let items: Vec<Item> = items
        .iter()
        .map(|(p, l)| Item {
            path: p.clone(),
            label: Some(*l),
        })
        .collect();
    Ok(loader::batches(
        items.into(),
        LoaderConfig {
            input: *input,
            batch: args.batch.get(),
            workers: args.workers.threads(),
            prefetch: 2,
        },
        Arc::new(AtomicBool::new(false)),
    ))
}

fn tensor(
    data: Vec<f32>,
    n: usize,
    input: &InputSpec,
    device: &candle_core::Device,
) -> anyhow::Result<Tensor> {
    Ok(Tensor::from_vec(
        data,
        (n, 3, input.size, input.size),
        device,
    )?)
}

fn rows(t: &Tensor) -> anyhow::Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

fn report_failures(failures: &[(usize, String)]) {
    for (_, why) in failures {
        eprintln!("\nskipped: {why}");
    }
}

/// Images done / total, images/s and ETA on stderr, at most once a second.
struct Progress {
    what: &'static str,
    total: usize,
    done: usize,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    fn new(what: &'static str, total: usize) -> Self {
        Progress {
            what,
            total,
            done: 0,
            start: Instant::now(),
            last: None,
        }
    }

    fn step(&mut self, n: usize) {
        self.done += n;
        if self.last.is_none_or(|t| t.elapsed().as_secs_f64() >= 1.0) || self.done == self.total {
            self.last = Some(Instant::now());
            self.print();
        }
    }

    fn print(&self) {
        let secs = self.start.elapsed().as_secs_f64();
        let rate = self.done as f64 / secs.max(1e-9);
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(self.done)) as f64 / rate
        } else {
            f64::NAN
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{}: {}/{} images, {:.1} images/s, ETA {}   ",
            self.what,
            self.done,
            self.total,
            rate,
            crate::run::report::duration(eta)
        );
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.done != self.total {
            self.print();
        }
        eprintln!();
    }
}
