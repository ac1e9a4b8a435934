//! `gradnorm-tui bench`: images/s for decoding alone, the forward pass alone
//! (inputs already on the device), and end to end with the chosen methods.

use crate::cli::{BenchArgs, UsageError};
use candle_core::{DType, Device, Tensor};
use gradnorm_core::run::{Batch, DatasetSpec, Event, ImageSize, Limit, RunConfig};
use gradnorm_engine::data::dataset::Dataset;
use gradnorm_engine::data::loader::{self, LoaderConfig};
use gradnorm_engine::engine;
use gradnorm_engine::model::{Classifier, InputSpec};
use gradnorm_engine::score::{InMemory, Scorer};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    if args.model.checkpoint.is_none() && args.model.model.is_none() {
        return Err(UsageError("bench needs --checkpoint FILE or --model NAME".into()).into());
    }
    if args.images == 0 {
        return Err(UsageError("--images must be at least 1".into()).into());
    }
    let super::Loaded {
        model,
        input,
        spec,
        device,
        dtype,
    } = super::load_model(&args.model, None)?;
    let info = model.info().clone();
    let wants_mahalanobis = args
        .methods
        .iter()
        .any(|k| k.trim().starts_with("mahalanobis"));
    let synthetic = match (&args.mahalanobis_params, wants_mahalanobis) {
        (None, true) => Some(synthetic_params(model.as_ref(), input.size)?),
        _ => None,
    };
    let methods = super::parse_methods(&super::MethodFlags {
        specs: &args.methods,
        odin: args.odin,
        temperature_energy: None,
        temperature_gradnorm: None,
        mahalanobis_params: args.mahalanobis_params.as_deref(),
        mahalanobis_in_memory: synthetic.is_some(),
    })?;
    let fit = match &args.fit {
        Some(path) => Some(gradnorm_engine::score::fit::Fit::load_for(
            path,
            model.as_ref(),
        )?),
        None => None,
    };
    let given = InMemory {
        mahalanobis: synthetic.as_ref(),
        fit: fit.as_ref(),
    };
    if synthetic.is_some() && !args.json {
        eprintln!(
            "note: Mahalanobis timed on synthetic Gaussians (random class means, identity \
             precisions, magnitude {SYNTHETIC_MAGNITUDE}); its cost does not depend on their values"
        );
    }
    let device_name = gradnorm_engine::device::device_name(&device);
    if !args.json {
        eprintln!(
            "{} ({} parameters) on {device_name} ({}), {}x{}, batch {}, {} images per measurement",
            info.name,
            info.num_params,
            args.model.on.dtype,
            input.size,
            input.size,
            args.batch,
            args.images
        );
    }

    let mut batch = args.batch.get();
    let forward = time_random(
        model.as_ref(),
        None,
        &device,
        &input,
        &mut batch,
        args.images,
    )?;
    let (decode, end_to_end) = if args.source == "synthetic" {
        let scorer = Scorer::with_params(&methods, model.as_ref(), given)?;
        (
            None,
            time_random(
                model.as_ref(),
                Some(&scorer),
                &device,
                &input,
                &mut batch,
                args.images,
            )?,
        )
    } else {
        let source = std::path::PathBuf::from(&args.source);
        let decode = time_decode(
            &source,
            &input,
            batch,
            args.workers.workers.map(|w| w.get()),
            args.images,
        )?;
        drop(model);
        let config = RunConfig {
            model: spec,
            class_names: None,
            class_order: None,
            id: DatasetSpec {
                name: "bench".into(),
                path: source,
                root: None,
                format: None,
                group: None,
            },
            ood: Vec::new(),
            methods: methods.clone(),
            fit: args.fit.clone(),
            image_size: Some(ImageSize::new(input.size)?),
            preprocess: args.model.preprocess,
            batch: Batch::new(batch)?,
            device: args.model.on.device,
            dtype: args.model.on.dtype,
            limit: Some(Limit::new(args.images)?),
            workers: args.workers.workers,
        };
        (Some(decode), time_engine(&config, given)?)
    };

    let methods_text: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "device": device_name,
                "model": info.name,
                "image_size": input.size,
                "batch": batch,
                "dtype": gradnorm_engine::device::dtype_name(dtype),
                "decode_img_per_s": decode,
                "forward_img_per_s": forward,
                "end_to_end_img_per_s": end_to_end,
                "methods": methods.iter().map(|m| m.key()).collect::<Vec<_>>(),
                "epsilon_odin": args.odin.epsilon_odin,
                "fit": args.fit.as_ref().map(|p| p.display().to_string()),
                "mahalanobis_params": if synthetic.is_some() {
                    Some("synthetic".to_string())
                } else {
                    args.mahalanobis_params.as_ref().map(|p| p.display().to_string())
                },
                "source": args.source,
                "images": args.images,
            })
        );
    } else {
        if let Some(d) = decode {
            println!("decode + resize   {d:>9.1} images/s");
        }
        println!("forward pass      {forward:>9.1} images/s");
        println!(
            "end to end        {end_to_end:>9.1} images/s  ({}; {})",
            methods_text.join(", "),
            if args.source == "synthetic" {
                "synthetic inputs copied from host memory"
            } else {
                "from files"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The input-preprocessing magnitude of synthetic Mahalanobis parameters:
/// any m > 0 costs the same (one tracked forward, five backward passes, five
/// partial forward passes).
const SYNTHETIC_MAGNITUDE: f64 = 0.001;

/// Mahalanobis parameters of the loaded model's shapes (random class
/// means, identity precisions), given to the Scorer in memory for timing
/// without `--mahalanobis-params`. They fit any checkpoint and BiT's random
/// weights (whose head is zero), not EfficientNet's random head when the
/// engine reloads the model.
fn synthetic_params(
    model: &dyn Classifier,
    image_size: usize,
) -> anyhow::Result<gradnorm_engine::score::mahalanobis::MahalanobisParams> {
    use gradnorm_engine::score::logistic::Logistic;
    use gradnorm_engine::score::mahalanobis::{MahalanobisParams, ModelStamp};
    let info = model.info();
    let k = info.num_classes;
    let mut means = Vec::new();
    let mut precisions = Vec::new();
    for &d in &info.tap_dims {
        means.push(Tensor::randn(0f32, 1., (k, d), &Device::Cpu)?);
        precisions.push(Tensor::eye(d, DType::F32, &Device::Cpu)?);
    }
    let params = MahalanobisParams {
        model: ModelStamp::of(model, image_size)?,
        classes: (0..k).collect(),
        means,
        precisions,
        magnitude: SYNTHETIC_MAGNITUDE,
        regression: Logistic {
            weights: vec![1e-3; info.tap_dims.len()],
            bias: 0.0,
        },
        provenance: serde_json::json!({"bench": "synthetic"}),
    };
    Ok(params)
}

/// Runs `f` on batches of `*batch` images, halving the batch on
/// out-of-memory errors; returns images/s over `images` images after one
/// warm-up batch.
fn timed(
    device: &Device,
    batch: &mut usize,
    images: usize,
    mut f: impl FnMut(usize) -> gradnorm_engine::Result<()>,
) -> anyhow::Result<f64> {
    // Warm-up (kernel loading, allocator), and the place where a batch that
    // does not fit is found out.
    loop {
        match f(*batch) {
            Ok(()) => break,
            Err(e) if engine::is_out_of_memory(&e) && *batch > 1 => {
                *batch /= 2;
                eprintln!("note: out of device memory: batch reduced to {}", *batch);
            }
            Err(e) => return Err(e.into()),
        }
    }
    device.synchronize()?;
    let steps = images.div_ceil(*batch);
    let start = Instant::now();
    for _ in 0..steps {
        f(*batch)?;
    }
    device.synchronize()?;
    Ok((steps * *batch) as f64 / start.elapsed().as_secs_f64())
}

/// A batch of `b` random inputs in [-1, 1) on `device`, kept in `slot` and
/// drawn again only when the batch size changes.
fn random_batch<'a>(
    slot: &'a mut Option<Tensor>,
    b: usize,
    input: &InputSpec,
    device: &Device,
) -> candle_core::Result<&'a Tensor> {
    if slot.as_ref().map(|t| t.dim(0).ok()) != Some(Some(b)) {
        *slot = Some(Tensor::rand(
            -1f32,
            1.,
            (b, 3, input.size, input.size),
            device,
        )?);
    }
    Ok(slot.as_ref().expect("set above"))
}

/// Images per second on random inputs, without decoding: the forward pass
/// alone on inputs kept on the device (`scorer` None), or end to end with
/// `scorer`: host-resident inputs copied to the device and scored, results
/// copied back.
fn time_random(
    model: &dyn Classifier,
    scorer: Option<&Scorer>,
    device: &Device,
    input: &InputSpec,
    batch: &mut usize,
    images: usize,
) -> anyhow::Result<f64> {
    let mut x: Option<Tensor> = None;
    timed(device, batch, images, |b| {
        match scorer {
            None => {
                let out = model.forward(random_batch(&mut x, b, input, device)?)?;
                // Keep the result alive until the work is queued.
                let _ = out.logits.dims();
            }
            Some(scorer) => {
                let x = random_batch(&mut x, b, input, &Device::Cpu)?
                    .to_device(device)?
                    .to_dtype(DType::F32)?;
                scorer.score(model, &x)?;
            }
        }
        Ok(())
    })
}

/// Decoding and preprocessing alone, on all cores, no model.
fn time_decode(
    source: &std::path::Path,
    input: &InputSpec,
    batch: usize,
    workers: Option<usize>,
    images: usize,
) -> anyhow::Result<f64> {
    let ds = Dataset::open(source, None)?;
    let items: Vec<_> = ds.items.into_iter().take(images).collect();
    let n = items.len();
    if n == 0 {
        return Err(UsageError(format!("{}: no images", source.display())).into());
    }
    let start = Instant::now();
    let cfg = LoaderConfig {
        input: *input,
        batch,
        workers: workers.unwrap_or(0),
        prefetch: 4,
    };
    let mut seen = 0;
    for b in loader::batches(items.into(), cfg, Arc::new(AtomicBool::new(false))) {
        seen += b.indices.len() + b.failures.len();
    }
    debug_assert_eq!(seen, n);
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The engine from files: decoding, transfer, model and scores overlapped.
fn time_engine(config: &RunConfig, given: InMemory) -> anyhow::Result<f64> {
    let cancel = Arc::new(AtomicBool::new(false));
    let mut started: Option<Instant> = None;
    let mut images = 0usize;
    let mut elapsed = 0f64;
    let mut run = engine::Run::new(config.clone()).cancel(cancel);
    if let Some(params) = given.mahalanobis {
        run = run.mahalanobis(params);
    }
    run.run(&mut |e| match e {
        // The clock starts once the model is loaded and the files listed.
        Event::Started(_) => started = Some(Instant::now()),
        Event::Records { records, .. } => images += records.len(),
        Event::Finished { .. } => {
            elapsed = started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0)
        }
        Event::Notice(msg) => eprintln!("note: {msg}"),
        _ => {}
    })?;
    Ok(images as f64 / elapsed.max(1e-9))
}
