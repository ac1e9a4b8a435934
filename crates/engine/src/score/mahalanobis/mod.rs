//! Mahalanobis (Lee et al. 2018) as the seed runs it: per tap, the
//! class-conditional Gaussian score of the closest class on an input nudged
//! towards that class (magnitude m), the five layer scores combined by a
//! logistic regression into -P(OOD).
//!
//! Cost: the argmax over classes uses the expanded form for every class at
//! once (two matrix products per layer), then the closest class's distance
//! is recomputed directly, so the score itself never suffers the expanded
//! form's cancellation. With m = 0 one forward pass with all taps serves
//! every layer; with m > 0 one tracked forward serves the five backward
//! passes and each layer then runs the network only as deep as it needs.
//!
//! Here the detector itself; `layers` scores the Gaussians on a device,
//! `params` is the parameters file and `search` the seed's tuning (FGSM
//! images and the magnitude search).

mod layers;
mod params;
mod search;

pub use layers::GaussianLayers;
pub use params::{head_fingerprint, MahalanobisParams, ModelStamp};
pub use search::{choose_magnitude, fgsm, FgsmClamp, ScoreTable, Trial, Tuned};

use crate::error::{Error, Result};
use crate::model::Classifier;
use candle_core::{DType, Tensor, Var, D};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The seed's magnitude grid, in its order (ties go to the earlier one).
pub const MAGNITUDES: [f64; 7] = [0.0, 0.01, 0.005, 0.002, 0.0014, 0.001, 0.0005];

/// The seed's FGSM step for the tuning's "OOD" images.
pub const FGSM_STEP: f64 = 0.05;
/// A tuned Mahalanobis detector on the model's device.
pub struct Mahalanobis {
    gaussians: GaussianLayers,
    /// [L, 1] f64 regression weights and the bias.
    weights: Tensor,
    bias: f64,
    magnitude: f64,
    stamp: ModelStamp,
    warned_size: AtomicBool,
}

impl Mahalanobis {
    /// Reads a parameters file and checks that it was made for `model`.
    pub fn load(path: &Path, model: &dyn Classifier) -> Result<Self> {
        let params = MahalanobisParams::read(path)?;
        let ours = ModelStamp::of(model, params.model.image_size)?;
        if !params.model.same_model(&ours) {
            return Err(Error::data(
                path,
                format!(
                    "Mahalanobis parameters made for {}, not for the loaded model {}",
                    params.model, ours
                ),
            ));
        }
        Self::new(params, model)
    }

    pub fn new(params: MahalanobisParams, model: &dyn Classifier) -> Result<Self> {
        let device = model.device();
        let gaussians = GaussianLayers::new(&params.means, &params.precisions, device)?;
        gaussians.check_taps(model)?;
        let w = &params.regression.weights;
        Ok(Mahalanobis {
            gaussians,
            weights: Tensor::from_vec(w.clone(), (w.len(), 1), device)?,
            bias: params.regression.bias,
            magnitude: params.magnitude,
            stamp: params.model,
            warned_size: AtomicBool::new(false),
        })
    }

    pub fn magnitude(&self) -> f64 {
        self.magnitude
    }

    /// The model and input size the parameters were made for.
    pub fn stamp(&self) -> &ModelStamp {
        &self.stamp
    }

    /// The L layer scores of a batch at the tuned magnitude: [B, L] f32.
    pub fn layer_scores(&self, model: &dyn Classifier, x: &Tensor) -> Result<Tensor> {
        self.check_size(x)?;
        let mut s = self.gaussians.scores(model, x, &[self.magnitude])?;
        Ok(s.remove(0))
    }

    fn check_size(&self, x: &Tensor) -> Result<()> {
        let size = x.dim(D::Minus1)?;
        if size != self.stamp.image_size && !self.warned_size.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "Mahalanobis parameters were fitted at {} px, scoring at {size} px",
                self.stamp.image_size
            );
        }
        Ok(())
    }

    /// [`Self::score`] from a forward pass already tracked by autograd:
    /// `taps` = the taps of f(`xv`), `xv` holding `x` (the Scorer shares
    /// that pass with ODIN and the logit scores).
    pub fn score_tracked(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        xv: &Var,
        taps: &[Tensor],
    ) -> Result<Tensor> {
        self.check_size(x)?;
        let mut s = self
            .gaussians
            .scores_tracked(model, x, xv, taps, &[self.magnitude])?;
        self.combine(&s.remove(0))
    }

    /// -P(OOD) = -sigmoid(w . s + b) for a batch `x`: [B] f32.
    pub fn score(&self, model: &dyn Classifier, x: &Tensor) -> Result<Tensor> {
        let s = self.layer_scores(model, x)?;
        self.combine(&s)
    }

    /// -P(OOD) from the taps of an unperturbed forward pass: the score when
    /// the magnitude is 0.
    pub fn score_taps(&self, taps: &[Tensor]) -> Result<Tensor> {
        let cols = (0..self.gaussians.num_layers())
            .map(|l| self.gaussians.layer_score(l, &taps[l]))
            .collect::<Result<Vec<_>>>()?;
        self.combine(&Tensor::stack(&cols, 1)?)
    }

    /// -sigmoid(w . s + b) for layer scores `s` ([B, L]), computed in f64.
    pub fn combine(&self, s: &Tensor) -> Result<Tensor> {
        let z = (s.to_dtype(DType::F64)?.matmul(&self.weights)?.squeeze(1)? + self.bias)?;
        // sigmoid(z) = 1 / (1 + exp(-z)); exp overflowing to inf gives 0.
        let p = (z.neg()?.exp()? + 1.0)?.recip()?;
        Ok(p.neg()?.to_dtype(DType::F32)?)
    }
}

impl super::Score for Mahalanobis {
    fn needs_taps(&self) -> bool {
        true
    }

    fn tracks_input(&self) -> bool {
        self.magnitude() != 0.0
    }

    fn score(&self, f: &super::Forward) -> Result<Tensor> {
        match f.x_var {
            Some(xv) if self.magnitude() != 0.0 => self.score_tracked(f.model, f.x, xv, f.taps),
            _ => self.score_taps(f.taps),
        }
    }
}

/// Mahalanobis as a registry method: its parameters file, checked against
/// the model.
pub(crate) fn prepare(m: &super::Method, ctx: &super::Prepare) -> Result<Box<dyn super::Score>> {
    let path = super::path(m, "params")?;
    if let (true, Some(params)) = (path.as_os_str().is_empty(), ctx.mahalanobis) {
        return Ok(Box::new(Mahalanobis::new(params.clone(), ctx.model)?));
    }
    m.require_paths().map_err(|e| Error::Invalid(e.0))?;
    Ok(Box::new(Mahalanobis::load(path, ctx.model)?))
}
