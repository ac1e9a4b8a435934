//! OOD scores, higher = more in-distribution. One forward pass feeds every
//! method that needs only logits and features; ODIN with epsilon > 0 and
//! Mahalanobis add their own passes. Everything stays on the device until
//! one transfer per batch.

pub mod gaussian;
pub mod logistic;
pub mod logits;
pub mod mahalanobis;
pub mod method;
pub mod odin;

pub use method::Method;

use crate::error::Result;
use crate::model::Classifier;
use candle_core::{DType, Tensor, D};

/// A method ready to run (Mahalanobis parameters loaded on the device).
enum Prepared {
    Msp,
    Odin { temperature: f64, epsilon: f64 },
    Energy { temperature: f64 },
    GradNorm { temperature: f64 },
    MaxLogit,
    Mahalanobis(Box<mahalanobis::Mahalanobis>),
}

/// Per-image results of one batch.
#[derive(Debug, Clone, Default)]
pub struct BatchScores {
    /// `scores[m][i]`: method m, image i.
    pub scores: Vec<Vec<f32>>,
    /// Top-k (class, probability) per image, most probable first.
    pub top: Vec<Vec<(usize, f32)>>,
    /// GradNorm's factors per image: sum_k |C p_k - 1| and ||h||_1.
    pub softmax_term: Vec<f32>,
    pub feature_l1: Vec<f32>,
}

impl BatchScores {
    /// Appends the images of `other` (same methods) after these.
    pub fn extend(&mut self, other: BatchScores) {
        if self.scores.is_empty() {
            *self = other;
            return;
        }
        for (mine, theirs) in self.scores.iter_mut().zip(other.scores) {
            mine.extend(theirs);
        }
        self.top.extend(other.top);
        self.softmax_term.extend(other.softmax_term);
        self.feature_l1.extend(other.feature_l1);
    }
}

pub struct Scorer {
    methods: Vec<Prepared>,
    /// Temperature of the GradNorm factors reported with every image.
    anatomy_temperature: f64,
    top_k: usize,
}

impl Scorer {
    /// Prepares `methods` for `model` (loads and checks Mahalanobis files).
    pub fn new(methods: &[Method], model: &dyn Classifier) -> Result<Self> {
        let mut prepared = Vec::with_capacity(methods.len());
        let mut anatomy_temperature = 1.0;
        for m in methods {
            prepared.push(match m {
                Method::Msp => Prepared::Msp,
                Method::Odin {
                    temperature,
                    epsilon,
                } => Prepared::Odin {
                    temperature: *temperature,
                    epsilon: *epsilon,
                },
                Method::Energy { temperature } => Prepared::Energy {
                    temperature: *temperature,
                },
                Method::GradNorm { temperature } => {
                    anatomy_temperature = *temperature;
                    Prepared::GradNorm {
                        temperature: *temperature,
                    }
                }
                Method::MaxLogit => Prepared::MaxLogit,
                Method::Mahalanobis { params } => {
                    Prepared::Mahalanobis(Box::new(mahalanobis::Mahalanobis::load(params, model)?))
                }
            });
        }
        Ok(Scorer {
            methods: prepared,
            anatomy_temperature,
            top_k: 5,
        })
    }

    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Scores a batch `x` (f32 [B, 3, H, W] on the model's device).
    pub fn score(&self, model: &dyn Classifier, x: &Tensor) -> Result<BatchScores> {
        // Mahalanobis without input preprocessing reads the taps of this
        // same forward pass instead of running its own.
        let taps_wanted = self
            .methods
            .iter()
            .any(|m| matches!(m, Prepared::Mahalanobis(m) if m.magnitude() == 0.0));
        let (out, taps) = if taps_wanted {
            let (out, taps) = model.forward_taps(x)?;
            (out, Some(taps))
        } else {
            (model.forward(x)?, None)
        };
        let logits = &out.logits;
        let c = logits.dim(1)?;
        let mut columns: Vec<Tensor> = Vec::with_capacity(self.methods.len());
        for m in &self.methods {
            columns.push(match m {
                Prepared::Msp => logits::msp(logits)?,
                Prepared::Odin {
                    temperature,
                    epsilon,
                } => {
                    if *epsilon == 0.0 {
                        logits::msp_at(logits, *temperature)?
                    } else {
                        odin::score(model, x, logits, *temperature, *epsilon)?
                    }
                }
                Prepared::Energy { temperature } => logits::energy(logits, *temperature)?,
                Prepared::GradNorm { temperature } => {
                    logits::gradnorm(logits, &out.feature, *temperature)?
                }
                Prepared::MaxLogit => logits::max_logit(logits)?,
                Prepared::Mahalanobis(m) => match &taps {
                    Some(taps) if m.magnitude() == 0.0 => m.score_taps(taps)?,
                    _ => m.score(model, x)?,
                },
            });
        }
        let (term, l1) = logits::gradnorm_factors(logits, &out.feature, self.anatomy_temperature)?;
        columns.push(term);
        columns.push(l1);
        // One transfer for every per-image number, one for the probabilities.
        let table = Tensor::stack(&columns, 0)?
            .to_dtype(DType::F32)?
            .to_device(&candle_core::Device::Cpu)?
            .to_vec2::<f32>()?;
        let probs = candle_nn::ops::softmax(logits, D::Minus1)?
            .to_device(&candle_core::Device::Cpu)?
            .to_vec2::<f32>()?;
        let k = self.top_k.min(c);
        let top = probs.iter().map(|p| top_k(p, k)).collect();
        let mut table = table.into_iter();
        let scores: Vec<Vec<f32>> = table.by_ref().take(self.methods.len()).collect();
        let softmax_term = table.next().unwrap_or_default();
        let feature_l1 = table.next().unwrap_or_default();
        Ok(BatchScores {
            scores,
            top,
            softmax_term,
            feature_l1,
        })
    }
}

/// The k largest entries (index, value), largest first; ties by lower index.
pub fn top_k(p: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    let k = k.min(p.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &usize, b: &usize| p[*b].total_cmp(&p[*a]).then(a.cmp(b));
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx.into_iter().map(|i| (i, p[i])).collect()
}
