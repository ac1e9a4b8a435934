//! Training the demo's small BiT on generated shapes (candle autograd,
//! AdamW), and a quick OOD check of the result.
//!
//! Everything random comes from `rng` under one seed: weights, the training
//! images and their order, so a rerun reproduces the weights up to float
//! summation order.

use super::generate::{self, OodKind, CLASSES};
use super::DataSpec;
use crate::data::image::to_input;
use crate::error::{Error, Result};
use crate::model::bit::{Bit, BitConfig, Mode};
use crate::model::{Classifier, InputSpec};
use crate::rng::{derive, Pcg32};
use crate::score::{Method, Scorer};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use gradnorm_core::metrics::{self, Measures};
use image::RgbImage;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// The demo network: one unit per stage, root width 32 (GroupNorm's 32
/// groups need widths that are multiples of 32), ten classes.
pub fn demo_bit() -> BitConfig {
    BitConfig {
        units: [1, 1, 1, 1],
        width: 32,
        num_classes: CLASSES.len(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub bit: BitConfig,
    /// Training images per class and epoch.
    pub train_per_class: usize,
    /// Draw new training images every epoch (the generator is cheap, and a
    /// fixed set is memorized long before the shapes are learnt), or
    /// repeat the first epoch's.
    pub fresh_each_epoch: bool,
    pub heldout_per_class: usize,
    pub epochs: usize,
    pub batch: usize,
    /// Peak learning rate (linear warm-up, then cosine decay to zero).
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Stop after this many steps (quick checks).
    pub max_steps: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            bit: demo_bit(),
            train_per_class: 150,
            fresh_each_epoch: true,
            heldout_per_class: 100,
            epochs: 40,
            batch: 16,
            lr: 2e-3,
            weight_decay: 0.05,
            seed: 0,
            max_steps: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    pub mean_loss: f64,
    pub train_accuracy: f64,
    pub heldout_accuracy: f64,
    pub images_per_sec: f64,
    pub elapsed_secs: f64,
}

/// What training reports as it goes.
#[derive(Debug, Clone)]
pub enum TrainProgress {
    Data {
        train: usize,
        heldout: usize,
        secs: f64,
    },
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
        loss: f32,
        lr: f64,
    },
    Epoch(EpochStats),
}

pub struct Trained {
    pub varmap: VarMap,
    pub model: Bit,
    pub epochs: Vec<EpochStats>,
    /// The loss of every step, in order.
    pub step_losses: Vec<f32>,
    pub elapsed_secs: f64,
}

/// The generated examples of one split, `per_class` of each class.
pub fn split(seed: u64, tag: &str, per_class: usize) -> (Vec<RgbImage>, Vec<u32>) {
    split_range(seed, tag, 0, per_class)
}

/// Images `first..first + per_class` of each class of a stream.
fn split_range(seed: u64, tag: &str, first: usize, per_class: usize) -> (Vec<RgbImage>, Vec<u32>) {
    let items: Vec<(usize, usize)> = (first..first + per_class)
        .flat_map(|i| (0..CLASSES.len()).map(move |c| (c, i)))
        .collect();
    let images = items
        .par_iter()
        .map(|&(c, i)| generate::class_image(seed, tag, c, i))
        .collect();
    (images, items.iter().map(|&(c, _)| c as u32).collect())
}

/// Normalized inputs [n, 3, S, S] of the images `idx`.
pub fn batch_tensor(images: &[RgbImage], idx: &[usize], device: &Device) -> Result<Tensor> {
    let spec = InputSpec::half(generate::SIZE as usize);
    let mut data = Vec::with_capacity(idx.len() * 3 * spec.size * spec.size);
    for &i in idx {
        data.extend(to_input(&images[i], &spec));
    }
    Ok(Tensor::from_vec(
        data,
        (idx.len(), 3, spec.size, spec.size),
        device,
    )?)
}

/// Kaiming-normal convolutions, unit GroupNorm gains, zero biases and a
/// zero head (as BiT), all from our own generator.
fn init_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Invalid("variable map poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = Pcg32::new(derive(seed, "init", 0));
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if name.starts_with("head.") || name.ends_with(".bias") {
            vec![0.0; n]
        } else if dims.len() == 1 {
            vec![1.0; n]
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let std = (2.0 / fan_in as f32).sqrt();
            (0..n).map(|_| std * rng.normal()).collect()
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

fn learning_rate(cfg: &TrainConfig, step: usize, total: usize) -> f64 {
    let warmup = (total / 10).clamp(1, 100);
    if step < warmup {
        cfg.lr * (step + 1) as f64 / warmup as f64
    } else {
        let t = (step - warmup) as f64 / (total - warmup).max(1) as f64;
        cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// Correct predictions among `labels`.
fn correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    Ok(pred.iter().zip(labels).filter(|(p, l)| p == l).count())
}

/// Top-1 accuracy of `model` on `images`.
pub fn accuracy(
    model: &dyn Classifier,
    images: &[RgbImage],
    labels: &[u32],
    batch: usize,
) -> Result<f64> {
    let mut right = 0;
    let idx: Vec<usize> = (0..images.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(images, chunk, model.device())?;
        let out = model.forward(&x)?;
        let want: Vec<u32> = chunk.iter().map(|&i| labels[i]).collect();
        right += correct(&out.logits.detach(), &want)?;
    }
    Ok(right as f64 / images.len().max(1) as f64)
}

/// Trains the demo network from scratch.
pub fn train(
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(&TrainProgress),
) -> Result<Trained> {
    if cfg.batch == 0 || cfg.train_per_class == 0 || cfg.epochs == 0 {
        return Err(Error::Invalid(
            "batch, images per class and epochs must be positive".into(),
        ));
    }
    let start = Instant::now();
    let (mut images, mut labels) = split(cfg.seed, "train", cfg.train_per_class);
    let (held, held_labels) = split(cfg.seed, "heldout", cfg.heldout_per_class);
    progress(&TrainProgress::Data {
        train: images.len(),
        heldout: held.len(),
        secs: start.elapsed().as_secs_f64(),
    });

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let model = Bit::new(&cfg.bit, vb, Mode::Training, DType::F32)?;
    init_weights(&varmap, cfg.seed)?;
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;

    let steps = images.len() / cfg.batch;
    if steps == 0 {
        return Err(Error::Invalid(format!(
            "{} training images make no batch of {}",
            images.len(),
            cfg.batch
        )));
    }
    let total = (steps * cfg.epochs).min(cfg.max_steps.unwrap_or(usize::MAX));
    let mut order: Vec<usize> = (0..images.len()).collect();
    let mut shuffle = Pcg32::new(derive(cfg.seed, "shuffle", 0));
    let mut step_losses = Vec::with_capacity(total);
    let mut epochs = Vec::new();
    let mut step = 0;
    'epochs: for epoch in 1..=cfg.epochs {
        if cfg.fresh_each_epoch && epoch > 1 {
            let first = (epoch - 1) * cfg.train_per_class;
            (images, labels) = split_range(cfg.seed, "train", first, cfg.train_per_class);
        }
        shuffle.shuffle(&mut order);
        let t0 = Instant::now();
        let (mut loss_sum, mut right, mut seen) = (0f64, 0usize, 0usize);
        for b in 0..steps {
            if step == total {
                break 'epochs;
            }
            let lr = learning_rate(cfg, step, total);
            opt.set_learning_rate(lr);
            let idx = &order[b * cfg.batch..(b + 1) * cfg.batch];
            let x = batch_tensor(&images, idx, device)?;
            let want: Vec<u32> = idx.iter().map(|&i| labels[i]).collect();
            let y = Tensor::new(want.as_slice(), device)?;
            let out = model.forward(&x)?;
            let loss = candle_nn::loss::cross_entropy(&out.logits, &y)?;
            opt.backward_step(&loss)?;
            let l = loss.to_scalar::<f32>()?;
            if !l.is_finite() {
                return Err(Error::Invalid(format!(
                    "training diverged at step {step} (loss {l}); try a lower --lr"
                )));
            }
            step_losses.push(l);
            loss_sum += l as f64;
            right += correct(&out.logits.detach(), &want)?;
            seen += idx.len();
            step += 1;
            progress(&TrainProgress::Step {
                epoch,
                step: b + 1,
                steps,
                loss: l,
                lr,
            });
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let heldout_accuracy = accuracy(&model, &held, &held_labels, 100)?;
        let stats = EpochStats {
            epoch,
            mean_loss: loss_sum / (seen / cfg.batch).max(1) as f64,
            train_accuracy: right as f64 / seen.max(1) as f64,
            heldout_accuracy,
            images_per_sec: seen as f64 / train_secs.max(1e-9),
            elapsed_secs: start.elapsed().as_secs_f64(),
        };
        progress(&TrainProgress::Epoch(stats.clone()));
        epochs.push(stats);
    }
    // A budget that ends mid-epoch still gets its held-out accuracy.
    if step_losses.len() % steps != 0 || epochs.is_empty() {
        let done = step_losses.len() % steps;
        let recent = &step_losses[step_losses.len() - done..];
        let stats = EpochStats {
            epoch: epochs.len() + 1,
            mean_loss: recent.iter().map(|&l| l as f64).sum::<f64>() / done.max(1) as f64,
            train_accuracy: f64::NAN,
            heldout_accuracy: accuracy(&model, &held, &held_labels, 100)?,
            images_per_sec: f64::NAN,
            elapsed_secs: start.elapsed().as_secs_f64(),
        };
        progress(&TrainProgress::Epoch(stats.clone()));
        epochs.push(stats);
    }
    Ok(Trained {
        varmap,
        model,
        epochs,
        step_losses,
        elapsed_secs: start.elapsed().as_secs_f64(),
    })
}

/// Writes the weights as safetensors under the seed's tensor names, stored
/// as f16 to halve the committed file (loading converts to f32).
pub fn save(varmap: &VarMap, path: &Path) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Invalid("variable map poisoned".into()))?;
    let mut tensors = HashMap::with_capacity(data.len());
    for (name, var) in data.iter() {
        let t = var
            .as_tensor()
            .to_dtype(DType::F16)?
            .to_device(&Device::Cpu)?;
        // Diverged training (too high a learning rate) leaves NaN or
        // values beyond f16: never save those as if they were a model.
        let finite = t
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return Err(Error::Invalid(format!(
                "training diverged: weight `{name}` holds NaN or infinite values; nothing was saved (try a lower --lr)"
            )));
        }
        tensors.insert(name.clone(), t);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    crate::weights::save_safetensors(&tensors, path)
}

/// The demo's evaluation done in memory: ID accuracy and, per method,
/// the measures against each OOD set. The images are the very ones
/// `ensure_data_with(spec)` writes.
#[derive(Debug, Clone)]
pub struct Check {
    pub id_accuracy: f64,
    pub sets: Vec<String>,
    /// (method label, measures per OOD set in `sets` order).
    pub methods: Vec<(String, Vec<Measures>)>,
    pub images: usize,
    pub secs: f64,
}

pub fn check(model: &dyn Classifier, spec: &DataSpec, methods: &[Method]) -> Result<Check> {
    let start = Instant::now();
    let items: Vec<(usize, usize)> = (0..CLASSES.len())
        .flat_map(|c| (0..spec.id_per_class).map(move |i| (c, i)))
        .collect();
    let id: Vec<RgbImage> = items
        .par_iter()
        .map(|&(c, i)| generate::class_image(spec.seed, "id", c, i))
        .collect();
    let labels: Vec<u32> = items.iter().map(|&(c, _)| c as u32).collect();
    let scorer = Scorer::new(methods, model)?;
    let score_all = |images: &[RgbImage]| -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        let mut scores = vec![Vec::new(); methods.len()];
        let mut top1 = Vec::new();
        let idx: Vec<usize> = (0..images.len()).collect();
        for chunk in idx.chunks(50) {
            let x = batch_tensor(images, chunk, model.device())?;
            let b = scorer.score(model, &x)?;
            for (m, col) in b.scores.into_iter().enumerate() {
                scores[m].extend(col);
            }
            top1.extend(b.top.iter().map(|t| t.first().map_or(usize::MAX, |p| p.0)));
        }
        Ok((scores, top1))
    };
    let (id_scores, top1) = score_all(&id)?;
    let right = top1
        .iter()
        .zip(&labels)
        .filter(|(p, l)| **p == **l as usize)
        .count();
    let mut per_set = Vec::new();
    for kind in OodKind::ALL {
        let images: Vec<RgbImage> = (0..spec.ood_count)
            .into_par_iter()
            .map(|i| generate::ood_image(spec.seed, kind, i).0)
            .collect();
        per_set.push(score_all(&images)?.0);
    }
    let methods = methods
        .iter()
        .enumerate()
        .map(|(m, method)| {
            let measures = per_set
                .iter()
                .map(|ood| metrics::measures_f32(&id_scores[m], &ood[m]))
                .collect();
            (method.label().to_string(), measures)
        })
        .collect();
    Ok(Check {
        id_accuracy: right as f64 / labels.len().max(1) as f64,
        sets: OodKind::ALL.iter().map(|k| k.name().to_string()).collect(),
        methods,
        images: id.len() + OodKind::ALL.len() * spec.ood_count,
        secs: start.elapsed().as_secs_f64(),
    })
}
