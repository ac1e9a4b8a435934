//! Tuning Mahalanobis as the seed's tune_mahalanobis script does, as
//! library calls (the `tune-mahalanobis` command only checks its flags,
//! prints and writes the file):
//! 1. [`fit_class_statistics`]: class means and a shared covariance of every
//!    tap over the labelled training images, in one streaming pass; then
//!    [`ClassStatistics::gaussians`] inverts the covariances.
//! 2. [`tune`]: the first `tune_count` labelled validation images and the
//!    next `tune_count`, with their FGSM counterparts as the "OOD" side;
//!    their layer scores at every magnitude of the seed's grid (the input
//!    gradients are shared by all magnitudes, so this is one pass); then per
//!    magnitude a cross-validated logistic regression on the first half,
//!    FPR95 on the second, the lowest winning.

use super::gaussian::{pinvh, GaussianFit, LayerGaussian};
use super::mahalanobis::{
    choose_magnitude, fgsm, FgsmClamp, GaussianLayers, ScoreTable, Tuned, FGSM_STEP, MAGNITUDES,
};
use crate::data::dataset::Item;
use crate::data::loader::{self, LoaderConfig};
use crate::error::Result;
use crate::model::{Classifier, InputSpec};
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// A labelled image: its path and its class in the model's order.
pub type Labelled = (PathBuf, usize);

/// How images reach the model.
#[derive(Debug, Clone, Copy)]
pub struct Feed {
    pub input: InputSpec,
    pub batch: usize,
    /// Decoding threads, 0 for all cores.
    pub workers: usize,
}

/// What the tuning reports as it goes.
#[derive(Debug, Clone)]
pub enum TuneEvent {
    /// A pass ("fit" or "tune") over this many images begins.
    PassStarted { pass: &'static str, total: usize },
    /// Images done of a pass ("fit" or "tune"), skipped ones included.
    Progress {
        pass: &'static str,
        done: usize,
        total: usize,
    },
    /// An image that could not be read, and why.
    Skipped(String),
    /// A pass is over.
    PassDone(&'static str),
    /// A layer's precision: its dimension, the covariance's rank, seconds.
    Layer {
        layer: usize,
        dim: usize,
        rank: usize,
        seconds: f64,
    },
}

/// Pass 1's sums turned into per-layer Gaussians (f64, on the CPU).
pub struct ClassStatistics {
    pub layers: Vec<LayerGaussian>,
    /// Training images that entered the fit.
    pub images: u64,
}

impl ClassStatistics {
    /// The classes that had training images.
    pub fn classes(&self) -> &[usize] {
        &self.layers[0].classes
    }

    /// Every class has a single image, so the class-centred features are all
    /// zero and the covariance vanishes.
    pub fn one_image_per_class(&self) -> bool {
        self.images as usize == self.classes().len()
    }

    /// Class means and the pseudo-inverse of each layer's covariance, as f32
    /// CPU tensors.
    pub fn gaussians(&self, events: &mut dyn FnMut(TuneEvent)) -> Result<ClassGaussians> {
        let cpu = Device::Cpu;
        let mut out = ClassGaussians {
            classes: self.classes().to_vec(),
            means: Vec::new(),
            precisions: Vec::new(),
            ranks: Vec::new(),
        };
        for (layer, g) in self.layers.iter().enumerate() {
            let t0 = Instant::now();
            let (p, rank) = pinvh(&g.covariance, g.dim)?;
            events(TuneEvent::Layer {
                layer,
                dim: g.dim,
                rank,
                seconds: t0.elapsed().as_secs_f64(),
            });
            let m: Vec<f32> = g.means.iter().map(|&v| v as f32).collect();
            let p: Vec<f32> = p.iter().map(|&v| v as f32).collect();
            out.ranks.push(rank);
            out.means
                .push(Tensor::from_vec(m, (g.classes.len(), g.dim), &cpu)?);
            out.precisions
                .push(Tensor::from_vec(p, (g.dim, g.dim), &cpu)?);
        }
        Ok(out)
    }
}

/// Class means [K, d] and shared precisions [d, d] per tap (f32, CPU).
pub struct ClassGaussians {
    pub classes: Vec<usize>,
    pub means: Vec<Tensor>,
    pub precisions: Vec<Tensor>,
    /// The rank of each layer's covariance.
    pub ranks: Vec<usize>,
}

/// Pass 1: class means and the shared covariance of every tap.
pub fn fit_class_statistics(
    model: &dyn Classifier,
    train: &[Labelled],
    feed: &Feed,
    events: &mut dyn FnMut(TuneEvent),
) -> Result<ClassStatistics> {
    let info = model.info();
    let mut fit = GaussianFit::new(&info.tap_dims, info.num_classes, model.device())?;
    each_batch(train, feed, "fit", events, |x, labels, _| {
        let (_, taps) = model.forward_taps(&to_device(x, model)?)?;
        fit.add(&taps, labels)
    })?;
    Ok(ClassStatistics {
        layers: fit.finish()?,
        images: fit.count(),
    })
}

/// The four score tables of the tuning: the regression's training half
/// (ID, FGSM) and its validation half.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TuneScores {
    pub train_id: ScoreTable,
    pub train_ood: ScoreTable,
    pub val_id: ScoreTable,
    pub val_ood: ScoreTable,
}

/// Pass 2 and the choice: `images` holds 2 x `tune_count` labelled
/// validation images; the first half trains the regression, the second
/// validates it.
pub fn tune(
    model: &dyn Classifier,
    gaussians: &ClassGaussians,
    images: &[Labelled],
    tune_count: usize,
    clamp: FgsmClamp,
    feed: &Feed,
    events: &mut dyn FnMut(TuneEvent),
) -> Result<(Tuned, TuneScores)> {
    let layers = GaussianLayers::new(&gaussians.means, &gaussians.precisions, model.device())?;
    let k = MAGNITUDES.len();
    let empty = || -> ScoreTable { vec![Vec::new(); k] };
    let mut s = TuneScores {
        train_id: empty(),
        train_ood: empty(),
        val_id: empty(),
        val_ood: empty(),
    };
    each_batch(images, feed, "tune", events, |x, labels, indices| {
        let x = to_device(x, model)?;
        let adv = fgsm(model, &x, labels, FGSM_STEP, clamp, &feed.input)?;
        let clean = layers.scores(model, &x, &MAGNITUDES)?;
        let attacked = layers.scores(model, &adv, &MAGNITUDES)?;
        for mag in 0..k {
            let clean = rows(&clean[mag])?;
            let attacked = rows(&attacked[mag])?;
            for (j, &i) in indices.iter().enumerate() {
                let (id, ood) = if i < tune_count {
                    (&mut s.train_id, &mut s.train_ood)
                } else {
                    (&mut s.val_id, &mut s.val_ood)
                };
                id[mag].push(clean[j].clone());
                ood[mag].push(attacked[j].clone());
            }
        }
        Ok(())
    })?;
    let tuned = choose_magnitude(
        &MAGNITUDES,
        &s.train_id,
        &s.train_ood,
        &s.val_id,
        &s.val_ood,
    )?;
    Ok((tuned, s))
}

/// Runs `step` on every decoded batch of `items` (inputs [B, 3, N, N] on
/// the CPU, labels, indices into `items`), reporting progress and skips.
fn each_batch(
    items: &[Labelled],
    feed: &Feed,
    pass: &'static str,
    events: &mut dyn FnMut(TuneEvent),
    mut step: impl FnMut(Tensor, &[usize], &[usize]) -> Result<()>,
) -> Result<()> {
    let list: Vec<Item> = items
        .iter()
        .map(|(p, l)| Item {
            path: p.clone(),
            label: Some(*l),
        })
        .collect();
    let config = LoaderConfig {
        input: feed.input,
        batch: feed.batch,
        workers: feed.workers,
        prefetch: 2,
    };
    let mut done = 0;
    events(TuneEvent::PassStarted {
        pass,
        total: items.len(),
    });
    for batch in loader::batches(list.into(), config, Arc::new(AtomicBool::new(false))) {
        let labels: Vec<usize> = batch.indices.iter().map(|&i| items[i].1).collect();
        let n = feed.input.size;
        let x = Tensor::from_vec(batch.data, (labels.len(), 3, n, n), &Device::Cpu)?;
        step(x, &labels, &batch.indices)?;
        done += labels.len() + batch.failures.len();
        events(TuneEvent::Progress {
            pass,
            done,
            total: items.len(),
        });
        for (_, why) in batch.failures {
            events(TuneEvent::Skipped(why));
        }
    }
    events(TuneEvent::PassDone(pass));
    Ok(())
}

fn to_device(x: Tensor, model: &dyn Classifier) -> Result<Tensor> {
    Ok(x.to_device(model.device())?)
}

fn rows(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}
