//! `gradnorm-tui train-demo`: trains the demo's small BiT on generated
//! shapes, saves it, and measures it on the demo's OOD sets.

use crate::cli::{TrainDemoArgs, UsageError};
use anyhow::Context;
use candle_core::DType;
use gradnorm_engine::demo::{self, train};
use gradnorm_engine::model;
use std::io::Write;
use std::process::ExitCode;

pub fn run(args: &TrainDemoArgs) -> anyhow::Result<ExitCode> {
    validate(args)?;
    let device = gradnorm_engine::device::open(args.device)?;
    let cfg = train::TrainConfig {
        train_per_class: args.per_class,
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
        max_steps: args.max_steps,
        ..train::TrainConfig::default()
    };
    eprintln!(
        "train-demo: {} ({} parameters) on {}, seed {}, {} epochs of {} images per class, batch {}, lr {}",
        cfg.bit.describe(),
        cfg.bit.num_params(),
        gradnorm_engine::device::device_name(&device),
        cfg.seed,
        cfg.epochs,
        cfg.train_per_class,
        cfg.batch,
        cfg.lr,
    );
    let mut stderr = std::io::stderr();
    let trained = train::train(&cfg, &device, &mut |p| match p {
        train::TrainProgress::Data {
            train,
            heldout,
            secs,
        } => {
            eprintln!("drew {train} training and {heldout} held-out images in {secs:.1} s");
        }
        train::TrainProgress::Step {
            epoch,
            step,
            steps,
            loss,
            lr,
        } => {
            if step % 20 == 0 || step == steps {
                let _ = write!(
                    stderr,
                    "\repoch {epoch:>2}  step {step:>4}/{steps}  loss {loss:.4}  lr {lr:.2e}   "
                );
                let _ = stderr.flush();
            }
        }
        train::TrainProgress::Epoch(s) => {
            eprintln!(
                "\repoch {:>2}  loss {:.4}  train {:>6.2}%  held-out {:>6.2}%  {:>5.0} img/s  {:>6.1} s",
                s.epoch,
                s.mean_loss,
                100.0 * s.train_accuracy,
                100.0 * s.heldout_accuracy,
                s.images_per_sec,
                s.elapsed_secs
            );
        }
    })?;
    train::save(&trained.varmap, &args.out)?;
    let size = std::fs::metadata(&args.out)
        .with_context(|| format!("reading {}", args.out.display()))?
        .len();
    let last = trained.epochs.last();
    eprintln!(
        "saved {} ({:.2} MB, f16) after {:.1} s; held-out accuracy {:.2}%",
        args.out.display(),
        size as f64 / 1e6,
        trained.elapsed_secs,
        100.0 * last.map_or(f64::NAN, |e| e.heldout_accuracy)
    );
    if args.no_check {
        return Ok(ExitCode::SUCCESS);
    }
    // Measure what was saved (f16 weights), the way the demo will load it.
    let model = model::load_checkpoint(&args.out, None, &device, DType::F32)?;
    let check = train::check(model.as_ref(), &demo::DataSpec::default(), &demo::methods())?;
    println!(
        "demo sets: ID accuracy {:.2}%; {} images scored in {:.1} s",
        100.0 * check.id_accuracy,
        check.images,
        check.secs
    );
    println!("FPR95 / AUROC in percent");
    print!("{:<10}", "method");
    for s in &check.sets {
        print!("  {s:>15}");
    }
    println!();
    for (label, measures) in &check.methods {
        print!("{label:<10}");
        for m in measures {
            print!(
                "  {:>15}",
                format!("{:.2} / {:.2}", 100.0 * m.fpr95, 100.0 * m.auroc)
            );
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// Every flag checked before the images are drawn.
fn validate(args: &TrainDemoArgs) -> Result<(), UsageError> {
    let bad = |s: String| Err(UsageError(s));
    if !(args.lr.is_finite() && args.lr > 0.0 && args.lr <= 1.0) {
        return bad(format!("--lr must be a number in (0, 1], got {}", args.lr));
    }
    for (flag, v) in [
        ("--epochs", args.epochs),
        ("--per-class", args.per_class),
        ("--batch", args.batch),
    ] {
        if v == 0 {
            return bad(format!("{flag} must be at least 1, got 0"));
        }
    }
    if args.max_steps == Some(0) {
        return bad("--max-steps must be at least 1, got 0".into());
    }
    if args.out.is_dir() {
        return bad(format!(
            "--out {} is a folder; give the weights file to write (.safetensors)",
            args.out.display()
        ));
    }
    Ok(())
}
