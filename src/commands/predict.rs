//! `gradnorm-tui predict`: top-K classes of images.

use crate::cli::PredictArgs;
use candle_core::Tensor;
use gradnorm_engine::classes::Classes;
use gradnorm_engine::data::image::{load_rgb, to_input};
use gradnorm_engine::score;
use std::process::ExitCode;

pub fn run(args: &PredictArgs) -> anyhow::Result<ExitCode> {
    if args.top == 0 {
        return Err(crate::cli::UsageError("--top must be at least 1, got 0".into()).into());
    }
    // The demo's checkpoint is evaluated at the size it was trained at.
    let trained = args.model.checkpoint.as_deref();
    let trained = trained.and_then(gradnorm_engine::demo::trained_image_size);
    let super::Loaded {
        model,
        input,
        device,
        ..
    } = super::load_model(&args.model, trained)?;
    let info = model.info();
    // A names or order file given is read (and its errors reported) even
    // for a model without ImageNet's 1,000 classes.
    let named = args.classes.classes.is_some()
        || args.classes.class_order.is_some()
        || info.num_classes == 1000;
    let classes = if named {
        Some(Classes::for_model(
            info.num_classes,
            args.classes.classes.as_deref(),
            args.classes.class_order.as_deref(),
        )?)
    } else {
        None
    };
    let mut failed = 0usize;
    for path in &args.images {
        let img = match load_rgb(path) {
            Ok(img) => img,
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                continue;
            }
        };
        let x = Tensor::from_vec(
            to_input(&img, &input),
            (1, 3, input.size, input.size),
            &device,
        )?;
        let Some(prediction) = score::predict(model.as_ref(), &x, args.top)?.pop() else {
            continue;
        };
        let top = &prediction.top;
        if args.json {
            let top: Vec<serde_json::Value> = top
                .iter()
                .map(|&(i, p)| {
                    serde_json::json!({
                        "index": i,
                        "name": classes.as_ref().map(|c| c.names[i].clone()),
                        "prob": p,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "image": path,
                    "logits": prediction.logits,
                    "feature_l1": prediction.feature_l1,
                    "top": top,
                })
            );
        } else {
            println!("{}", path.display());
            for (rank, &(i, p)) in top.iter().enumerate() {
                let name = classes.as_ref().map(|c| c.short(i)).unwrap_or("");
                println!("  {:>2}. {i:>5}  {:>6.2}%  {name}", rank + 1, 100.0 * p);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
