//! `gradnorm-tui tune-mahalanobis`: the seed's tune_mahalanobis script. The
//! work is the library's (`score::tune`); this checks the flags and the
//! labels, shows progress and writes the parameters file.

use crate::cli::{FgsmClampArg, TuneMahalanobisArgs};
use anyhow::{bail, Context};
use gradnorm_engine::data::dataset::{Dataset, Item};
use gradnorm_engine::score::mahalanobis::{
    FgsmClamp, MahalanobisParams, ModelStamp, FGSM_STEP, MAGNITUDES,
};
use gradnorm_engine::score::tune::{self, Feed, Labelled, TuneEvent};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(args: &TuneMahalanobisArgs) -> anyhow::Result<ExitCode> {
    let loaded = super::load_model(&args.model, None)?;
    let (model, input, dtype) = (&loaded.model, loaded.input, loaded.dtype);
    let info = model.info().clone();
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
    let feed = Feed {
        input,
        batch: args.batch.get(),
        workers: args.workers.threads(),
    };
    let started = Instant::now();
    eprintln!(
        "model {} ({} classes, taps {:?}), input {} px, {}",
        info.name,
        info.num_classes,
        info.tap_dims,
        input.size,
        gradnorm_engine::device::device_name(&loaded.device)
    );
    let mut progress = Progress::default();
    let mut events = |e: TuneEvent| progress.show(e);

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
    let stats = tune::fit_class_statistics(model.as_ref(), &train, &feed, &mut events)?;
    let missing = info.num_classes - stats.classes().len();
    eprintln!(
        "fit on {} images of {} classes{}",
        stats.images,
        stats.classes().len(),
        if missing > 0 {
            format!(" ({missing} classes have no image and take no part)")
        } else {
            String::new()
        }
    );
    if stats.one_image_per_class() {
        bail!(crate::cli::UsageError(
            "every class has a single training image, so the class-centred features \
             are all zero and the covariance vanishes: give several images per class"
                .into()
        ));
    }
    let gaussians = stats.gaussians(&mut events)?;

    // 2. Layer scores of the tuning images and their FGSM counterparts, and
    // the seed's choice.
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
    let images = labelled(
        val.items.into_iter().take(2 * m).collect(),
        info.num_classes,
        "validation",
    )?;
    let (tuned, scores) = tune::tune(
        model.as_ref(),
        &gaussians,
        &images,
        m,
        clamp,
        &feed,
        &mut events,
    )?;

    if let Some(path) = &args.scores_out {
        let json = serde_json::json!({
            "magnitudes": MAGNITUDES,
            "train_id": scores.train_id, "train_ood": scores.train_ood,
            "val_id": scores.val_id, "val_ood": scores.val_ood,
        });
        std::fs::write(path, json.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }

    // 3. The file.
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
        "train_images": stats.images,
        "covariance_ranks": gaussians.ranks,
        "val": args.val,
        "tune_count": m,
        "tune_images": {
            "train_id": scores.train_id[0].len(), "val_id": scores.val_id[0].len(),
        },
        "fgsm_step": FGSM_STEP,
        "fgsm_clamp": clamp,
        "trials": tuned.trials,
        "dtype": gradnorm_engine::device::dtype_name(dtype),
        "seconds": started.elapsed().as_secs_f64(),
    });
    let params = MahalanobisParams {
        model: ModelStamp::of(model.as_ref(), input.size)?,
        classes: gaussians.classes,
        means: gaussians.means,
        precisions: gaussians.precisions,
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
fn labelled(items: Vec<Item>, classes: usize, what: &str) -> anyhow::Result<Vec<Labelled>> {
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

/// The tuning's events on stderr: per pass images done / total, images/s
/// and ETA at most once a second; skipped images; each layer's inversion.
struct Progress {
    what: &'static str,
    total: usize,
    done: usize,
    start: Instant,
    last: Option<Instant>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            what: "",
            total: 0,
            done: 0,
            start: Instant::now(),
            last: None,
        }
    }
}

impl Progress {
    fn show(&mut self, event: TuneEvent) {
        match event {
            TuneEvent::PassStarted { pass, total } => {
                *self = Progress {
                    what: pass,
                    total,
                    ..Progress::default()
                }
            }
            TuneEvent::Progress { done, .. } => self.step(done),
            TuneEvent::Skipped(why) => eprintln!("\nskipped: {why}"),
            TuneEvent::PassDone(_) => self.finish(),
            TuneEvent::Layer {
                layer,
                dim,
                rank,
                seconds,
            } => eprintln!(
                "layer {layer}: dim {dim}, covariance rank {rank}, pseudo-inverse in {seconds:.1}s"
            ),
        }
    }

    fn step(&mut self, done: usize) {
        self.done = done;
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
            gradnorm_core::run::report::duration(eta)
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
