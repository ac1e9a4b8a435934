//! OOD scores, higher = more in-distribution. One forward pass feeds every
//! method (ODIN with epsilon > 0 and Mahalanobis with input preprocessing
//! differentiate it, then add the passes on their nudged inputs).
//! Everything stays on the device until one transfer per batch.

pub mod fit;
mod fitted;
pub mod gaia;
pub mod gaussian;
pub mod gradnorm;
pub mod grood;
pub mod logistic;
pub mod logits;
mod lowdim;
pub mod mahalanobis;
pub mod nac;
pub mod odin;
mod params_file;
pub mod posthoc;
pub mod tune;

pub use gradnorm_core::method::{Kind, Method, MethodDef, ParamDef, ParamKind, SpecError, Value};

use crate::error::Result;
use crate::model::Classifier;
use candle_core::{DType, Tensor, Var, D};

/// Parameter `name` of `m`. The registry fills every parameter a method
/// declares with its default (written there, once), so a missing one means
/// the code asked for a parameter the method does not declare: an error
/// that says so, never a second default here.
fn param<T>(m: &Method, name: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| {
        crate::error::Error::Invalid(format!(
            "{}: its registry entry declares no parameter `{name}`",
            m.key()
        ))
    })
}

/// The number parameter `name` of `m` (see [`param`]).
pub(crate) fn number(m: &Method, name: &str) -> Result<f64> {
    param(m, name, m.number(name))
}

/// The choice parameter `name` of `m` (see [`param`]).
pub(crate) fn choice(m: &Method, name: &str) -> Result<&'static str> {
    param(m, name, m.choice(name))
}

/// The text parameter `name` of `m` (see [`param`]).
pub(crate) fn text<'m>(m: &'m Method, name: &str) -> Result<&'m str> {
    param(m, name, m.text(name))
}

/// The path parameter `name` of `m` (see [`param`]).
pub(crate) fn path<'m>(m: &'m Method, name: &str) -> Result<&'m std::path::Path> {
    param(m, name, m.path(name))
}

/// What preparing a method may read: the model (its head, device, taps)
/// and the fit, when one was given.
pub(crate) struct Prepare<'a> {
    pub model: &'a dyn Classifier,
    pub fit: Option<&'a fitted::FitCache<'a>>,
    pub mahalanobis: Option<&'a mahalanobis::MahalanobisParams>,
}

impl<'a> Prepare<'a> {
    /// The run's fit, or the error every fit-based method gives without one.
    pub(crate) fn fit_of(&self, m: &Method) -> Result<&'a fitted::FitCache<'a>> {
        self.fit.ok_or_else(|| {
            crate::error::Error::Invalid(format!(
                "{} needs a fit file: make one with `gradnorm-tui fit --checkpoint ... --train LIST --out FIT.safetensors`, then pass --fit FIT.safetensors",
                m.name()
            ))
        })
    }
}

/// Parameters given in memory rather than read from a file.
#[derive(Default, Clone, Copy)]
pub struct InMemory<'a> {
    /// The statistics of a fit set, which the fit-based methods need.
    pub fit: Option<&'a fit::Fit>,
    /// Mahalanobis's parameters, for a `mahalanobis` given no file.
    pub mahalanobis: Option<&'a mahalanobis::MahalanobisParams>,
}

/// The shared forward pass of one batch, as every method sees it.
pub(crate) struct Forward<'a> {
    pub model: &'a dyn Classifier,
    /// The batch as given.
    pub x: &'a Tensor,
    /// The batch as an autograd variable, when some method differentiates.
    pub x_var: Option<&'a Var>,
    /// The logits still attached to the graph (for input gradients).
    pub tracked_logits: &'a Tensor,
    /// Detached logits [B, C] and feature [B, D], f32.
    pub logits: &'a Tensor,
    pub feature: &'a Tensor,
    /// Every tap, when some method asked for them.
    pub taps: &'a [Tensor],
}

/// A method ready to run on one model: tensors loaded on its device.
pub(crate) trait Score: Send + Sync {
    /// Wants every tap of the forward pass.
    fn needs_taps(&self) -> bool {
        false
    }
    /// Differentiates the forward pass with respect to the input.
    fn tracks_input(&self) -> bool {
        false
    }
    /// The score of every image of the batch: [B].
    fn score(&self, f: &Forward) -> Result<Tensor>;
    /// What preparing it derived from the fit (a threshold, alpha).
    fn stats(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// `m` ready to run: the computation its registry entry names.
fn prepare(m: &Method, ctx: &Prepare) -> Result<Box<dyn Score>> {
    match m.def().kind {
        Kind::Msp => logits::prepare_msp(m, ctx),
        Kind::Odin => odin::prepare(m, ctx),
        Kind::Energy => logits::prepare_energy(m, ctx),
        Kind::Mahalanobis => mahalanobis::prepare(m, ctx),
        Kind::GradNorm => gradnorm::prepare(m, ctx),
        Kind::MaxLogit => logits::prepare_max_logit(m, ctx),
        Kind::Entropy => posthoc::prepare_entropy(m, ctx),
        Kind::Gen => posthoc::prepare_gen(m, ctx),
        Kind::React => fitted::prepare_react(m, ctx),
        Kind::AshP => posthoc::prepare_ash_p(m, ctx),
        Kind::AshB => posthoc::prepare_ash_b(m, ctx),
        Kind::AshS => posthoc::prepare_ash_s(m, ctx),
        Kind::Scale => posthoc::prepare_scale(m, ctx),
        Kind::Dice => fitted::prepare_dice(m, ctx),
        Kind::Knn => fitted::prepare_knn(m, ctx),
        Kind::Vim => fitted::prepare_vim(m, ctx),
        Kind::Residual => fitted::prepare_residual(m, ctx),
        Kind::Klm => fitted::prepare_klm(m, ctx),
        Kind::Mds => fitted::prepare_mds(m, ctx),
        Kind::Rmds => fitted::prepare_rmds(m, ctx),
        Kind::GaiaA => gaia::prepare(m, ctx, gaia::Variant::A),
        Kind::GaiaZ => gaia::prepare(m, ctx, gaia::Variant::Z),
        Kind::NacUe => nac::prepare(m, ctx),
        Kind::Grood => grood::prepare(m, ctx),
        Kind::LowdimGrad => lowdim::prepare(m, ctx),
    }
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
    methods: Vec<Box<dyn Score>>,
    /// Each method's column name.
    names: Vec<String>,
    /// Temperature of the GradNorm factors reported with every image.
    anatomy_temperature: f64,
}

/// Top-k classes reported with every image.
const TOP_K: usize = 5;

impl Scorer {
    /// Prepares `methods` for `model` (loads and checks parameter files).
    pub fn new(methods: &[Method], model: &dyn Classifier) -> Result<Self> {
        Self::with_fit(methods, model, None)
    }

    /// [`Scorer::new`] with the statistics of a fit set, which the
    /// fit-based methods need.
    pub fn with_fit(
        methods: &[Method],
        model: &dyn Classifier,
        fit: Option<&fit::Fit>,
    ) -> Result<Self> {
        let given = InMemory {
            fit,
            ..InMemory::default()
        };
        Self::with_params(methods, model, given)
    }

    /// [`Scorer::new`] with parameters given in memory.
    pub fn with_params(
        methods: &[Method],
        model: &dyn Classifier,
        given: InMemory,
    ) -> Result<Self> {
        let cache = given.fit.map(fitted::FitCache::new);
        let ctx = Prepare {
            model,
            fit: cache.as_ref(),
            mahalanobis: given.mahalanobis,
        };
        let prepared = methods
            .iter()
            .map(|m| prepare(m, &ctx))
            .collect::<Result<Vec<_>>>()?;
        let anatomy_temperature = gradnorm_core::method::anatomy_temperature(methods);
        Ok(Scorer {
            methods: prepared,
            names: methods.iter().map(|m| m.name().to_string()).collect(),
            anatomy_temperature,
        })
    }

    /// What the methods derived from the fit: (method, statistic, value),
    /// e.g. ReAct's threshold and ViM's alpha (`stat_text` writes them).
    pub fn stats(&self) -> Vec<(String, &'static str, f64)> {
        self.names
            .iter()
            .zip(&self.methods)
            .flat_map(|(n, m)| m.stats().into_iter().map(move |(s, v)| (n.clone(), s, v)))
            .collect()
    }

    /// Scores a batch `x` (f32 [B, 3, H, W] on the model's device).
    pub fn score(&self, model: &dyn Classifier, x: &Tensor) -> Result<BatchScores> {
        // One forward pass serves every method: with all taps when one asks
        // for them, tracked by autograd when one differentiates it with
        // respect to the input; the other scores read its values.
        let taps_wanted = self.methods.iter().any(|m| m.needs_taps());
        let tracked = self.methods.iter().any(|m| m.tracks_input());
        let x_var = if tracked {
            Some(Var::from_tensor(x)?)
        } else {
            None
        };
        let input = x_var.as_ref().map_or(x, |v| v.as_tensor());
        let (out, taps) = if taps_wanted {
            model.forward_taps(input)?
        } else {
            (model.forward(input)?, Vec::new())
        };
        let logits = &out.logits.detach();
        let feature = &out.feature.detach();
        let c = logits.dim(1)?;
        let forward = Forward {
            model,
            x,
            x_var: x_var.as_ref(),
            tracked_logits: &out.logits,
            logits,
            feature,
            taps: &taps,
        };
        let mut columns: Vec<Tensor> = Vec::with_capacity(self.methods.len() + 2);
        for m in &self.methods {
            columns.push(m.score(&forward)?.to_dtype(DType::F32)?);
        }
        let (term, l1) = logits::gradnorm_factors(logits, feature, self.anatomy_temperature)?;
        columns.push(term);
        columns.push(l1);
        // One transfer for every per-image number, one for the probabilities.
        let table = Tensor::stack(&columns, 0)?
            .to_dtype(DType::F32)?
            .to_device(&candle_core::Device::Cpu)?
            .to_vec2::<f32>()?;
        let top = top_classes(logits, TOP_K.min(c))?;
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

/// One image's prediction: its logits, its k most probable classes (class,
/// probability) and the feature's L1 norm ||h||_1.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub logits: Vec<f32>,
    pub top: Vec<(usize, f32)>,
    pub feature_l1: f32,
}

/// Forward, softmax and the top `k` classes of each image of a batch `x`
/// (f32 [B, 3, H, W] on the model's device), as the Scorer reports them.
pub fn predict(model: &dyn Classifier, x: &Tensor, k: usize) -> Result<Vec<Prediction>> {
    let cpu = candle_core::Device::Cpu;
    let out = model.forward(x)?;
    let logits = out.logits.to_device(&cpu)?.to_vec2::<f32>()?;
    let top = top_classes(&out.logits, k)?;
    let l1 = out
        .feature
        .abs()?
        .sum(1)?
        .to_device(&cpu)?
        .to_vec1::<f32>()?;
    Ok(logits
        .into_iter()
        .zip(top)
        .zip(l1)
        .map(|((logits, top), feature_l1)| Prediction {
            logits,
            top,
            feature_l1,
        })
        .collect())
}

/// The `k` most probable classes of each row of `logits`.
fn top_classes(logits: &Tensor, k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
    let probs = candle_nn::ops::softmax(logits, D::Minus1)?
        .to_device(&candle_core::Device::Cpu)?
        .to_vec2::<f32>()?;
    Ok(probs.iter().map(|p| top_k(p, k)).collect())
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

/// A statistic derived from a fit as people read it: six significant
/// digits, trailing zeros dropped (ViM's alpha "1.53284", not
/// "1.5328350829234036"); the full value stays in the fit file.
pub fn stat_text(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (5 - magnitude).clamp(0, 15) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod stat_text_tests {
    use super::stat_text;

    #[test]
    fn six_significant_digits_without_trailing_zeros() {
        assert_eq!(stat_text(1.5328350829234036), "1.53284");
        assert_eq!(stat_text(0.012345678), "0.0123457");
        assert_eq!(stat_text(123456.78), "123457");
        assert_eq!(stat_text(-2.5), "-2.5");
        assert_eq!(stat_text(1.0), "1");
        assert_eq!(stat_text(0.0), "0");
        // Read back, within a millionth of the value.
        let v = 1.5328350829234036;
        assert!((stat_text(v).parse::<f64>().unwrap() - v).abs() / v < 1e-5);
    }
}

#[cfg(test)]
mod param_tests {
    use super::*;

    /// A declared parameter reads the registry's own default; one the
    /// method does not declare is an error naming both, not a fallback.
    #[test]
    fn parameters_come_from_the_registry_or_are_an_error() {
        let knn = Method::from_key("knn").unwrap();
        let def = knn.def().params.iter().find(|p| p.name == "k").unwrap();
        let ParamKind::Number(range) = &def.kind else {
            panic!("knn's k is a number")
        };
        assert_eq!(number(&knn, "k").unwrap(), range.default);
        let msp = Method::from_key("msp").unwrap();
        let err = number(&msp, "k").unwrap_err().to_string();
        assert!(err.contains("msp") && err.contains("`k`"), "{err}");
        assert!(choice(&msp, "norm").is_err() && text(&msp, "layers").is_err());
    }
}
