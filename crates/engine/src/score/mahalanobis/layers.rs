//! The Gaussians of every tap on the device: the closest class's
//! Mahalanobis score per layer, with or without the input nudged towards it.

use crate::error::{Error, Result};
use crate::model::Classifier;
use candle_core::{DType, Device, Tensor, Var, D};

/// One tap's Gaussian parameters on the device, with what the argmax over
/// classes needs precomputed (in f64, then rounded once).
struct DeviceLayer {
    /// [K, d] f32 class means.
    means: Tensor,
    /// [d, d] f32 shared precision.
    precision: Tensor,
    /// [d] f32: the mean of the class means; features and means are
    /// compared relative to it, which keeps the expanded terms small.
    center: Tensor,
    /// [d, K] f32: (P (mu_c - center)) for every class, as columns.
    p_means_t: Tensor,
    /// [1, K] f32: (mu_c - center)^T P (mu_c - center).
    quad: Tensor,
}

/// Class means and precisions of every tap, ready to score on a device.
pub struct GaussianLayers {
    layers: Vec<DeviceLayer>,
}

impl GaussianLayers {
    /// `means[l]`: [K, d_l], `precisions[l]`: [d_l, d_l], any float dtype on
    /// any device; stored as f32 on `device`, as the seed keeps them.
    pub fn new(means: &[Tensor], precisions: &[Tensor], device: &Device) -> Result<Self> {
        if means.len() != precisions.len() || means.is_empty() {
            return Err(Error::Invalid(format!(
                "Mahalanobis: {} mean sets for {} precisions",
                means.len(),
                precisions.len()
            )));
        }
        let mut layers = Vec::with_capacity(means.len());
        for (l, (m, p)) in means.iter().zip(precisions).enumerate() {
            let (k, d) = m.dims2()?;
            if p.dims() != [d, d] || k == 0 {
                return Err(Error::Invalid(format!(
                    "Mahalanobis layer {l}: means {:?} and precision {:?} do not fit",
                    m.dims(),
                    p.dims()
                )));
            }
            let means = m.to_device(device)?.to_dtype(DType::F32)?;
            let precision = p.to_device(device)?.to_dtype(DType::F32)?;
            // Precompute from the f32 values actually used, in f64.
            let m64 = means.to_dtype(DType::F64)?;
            let p64 = precision.to_dtype(DType::F64)?;
            let center64 = m64.mean(0)?;
            let mc = m64.broadcast_sub(&center64)?;
            let pm = mc.matmul(&p64)?; // rows (P mu_c)^T, P symmetric
            let quad = (&pm * &mc)?.sum(1)?.unsqueeze(0)?;
            layers.push(DeviceLayer {
                means,
                precision,
                center: center64.to_dtype(DType::F32)?,
                p_means_t: pm.t()?.contiguous()?.to_dtype(DType::F32)?,
                quad: quad.to_dtype(DType::F32)?,
            });
        }
        Ok(GaussianLayers { layers })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The class maximising -0.5 (f - mu_c)^T P (f - mu_c) for each row of
    /// `f` ([B, d] f32): argmax_c of 2 f'^T P mu'_c - mu'_c^T P mu'_c with
    /// primes relative to the center (f'^T P f' is the same for every c).
    fn closest(&self, l: usize, f: &Tensor) -> Result<Tensor> {
        let layer = &self.layers[l];
        let fc = f.broadcast_sub(&layer.center)?;
        let t = fc.matmul(&layer.p_means_t)?;
        Ok(t.affine(2.0, 0.0)?
            .broadcast_sub(&layer.quad)?
            .argmax(D::Minus1)?)
    }

    /// 0.5 (f - mu_c)^T P (f - mu_c) for the given class of each row, in the
    /// direct form (differentiable with respect to `f`).
    fn half_distance(&self, l: usize, f: &Tensor, class: &Tensor) -> Result<Tensor> {
        let layer = &self.layers[l];
        let diff = (f - layer.means.index_select(class, 0)?)?;
        Ok(((diff.matmul(&layer.precision)? * &diff)?.sum(D::Minus1)? * 0.5)?)
    }

    /// max_c -0.5 (f - mu_c)^T P (f - mu_c) for features `f` ([B, d_l] f32)
    /// of tap `l`: [B] f32.
    pub fn layer_score(&self, l: usize, f: &Tensor) -> Result<Tensor> {
        let f = f.detach().to_dtype(DType::F32)?;
        let class = self.closest(l, &f)?;
        Ok(self.half_distance(l, &f, &class)?.neg()?)
    }

    /// The layer scores of a batch `x` ([B, 3, H, W] f32 on the model's
    /// device) for each magnitude: one [B, L] f32 tensor per magnitude.
    /// The input gradients do not depend on the magnitude, so one set of
    /// backward passes serves them all.
    pub fn scores(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        magnitudes: &[f64],
    ) -> Result<Vec<Tensor>> {
        self.check_taps(model)?;
        if magnitudes.iter().all(|&m| m == 0.0) {
            let (_, taps) = model.forward_taps(x)?;
            let s = self.clean_scores(&taps)?;
            return Ok(vec![s; magnitudes.len()]);
        }
        // One tracked forward; the loss of layer l only reaches back to tap l.
        let xv = Var::from_tensor(x)?;
        let (_, taps) = model.forward_taps(xv.as_tensor())?;
        self.scores_tracked(model, x, &xv, &taps, magnitudes)
    }

    /// The [B, L] layer scores of the taps as they are (no input noise).
    fn clean_scores(&self, taps: &[Tensor]) -> Result<Tensor> {
        let cols = (0..self.layers.len())
            .map(|l| self.layer_score(l, &taps[l]))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&cols, 1)?)
    }

    /// [`Self::scores`] from a forward pass already tracked by autograd:
    /// `taps` = the taps of f(`xv`), `xv` holding `x`.
    pub fn scores_tracked(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        xv: &Var,
        taps: &[Tensor],
        magnitudes: &[f64],
    ) -> Result<Vec<Tensor>> {
        let n = self.layers.len();
        self.check_taps(model)?;
        let b = x.dim(0)?;
        let mut signs = Vec::with_capacity(n);
        for (l, tap) in taps.iter().enumerate() {
            let class = self.closest(l, &tap.detach())?;
            // The seed's loss: the batch mean of 0.5 d^T P d for the closest class.
            let loss = (self.half_distance(l, tap, &class)?.sum_all()? / b as f64)?;
            let grads = loss.backward()?;
            let grad = grads.get(xv.as_tensor()).ok_or_else(|| {
                Error::Invalid(format!(
                    "Mahalanobis: no gradient reached the input from layer {l}"
                ))
            })?;
            // sign as torch.ge(grad, 0): zero counts as +1.
            signs.push(grad.ge(0.0)?.to_dtype(x.dtype())?.affine(2.0, -1.0)?);
        }
        let clean = self.clean_scores(taps)?.detach();
        let mut out = Vec::with_capacity(magnitudes.len());
        for &m in magnitudes {
            if m == 0.0 {
                out.push(clean.clone());
                continue;
            }
            let mut cols = Vec::with_capacity(n);
            for (l, sign) in signs.iter().enumerate() {
                let nudged = (x - (sign * m)?)?;
                let f = model.forward_tap(&nudged, l)?;
                cols.push(self.layer_score(l, &f)?);
            }
            out.push(Tensor::stack(&cols, 1)?);
        }
        Ok(out)
    }

    pub(super) fn check_taps(&self, model: &dyn Classifier) -> Result<()> {
        let dims = &model.info().tap_dims;
        let ours: Vec<usize> = self
            .layers
            .iter()
            .map(|l| l.precision.dim(0))
            .collect::<candle_core::Result<_>>()?;
        if *dims != ours {
            return Err(Error::Invalid(format!(
                "Mahalanobis parameters for taps {ours:?}, the model has {dims:?}"
            )));
        }
        Ok(())
    }
}
