//! Post-hoc scores that read a fit file (see `fit.rs`): ReAct, DICE, KNN,
//! ViM and its residual, KL matching, MDS and RMDS, as OpenOOD defines them
//! (../shared/docs/POSTHOC.md). What depends on a parameter (ReAct's and
//! DICE's thresholds, ViM's principal space) is derived when the method is
//! prepared; the per-batch work runs on the model's device.

use super::fit::{percentile, Fit};
use super::gaussian::pinvh;
use super::mahalanobis::GaussianLayers;
use super::posthoc::head_energy;
use super::{Forward, Method, Prepare, Score};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use std::cell::OnceCell;

type Prepared = Result<Box<dyn Score>>;

/// A fit with the pseudo-inverses several methods share, computed once.
pub(crate) struct FitCache<'a> {
    pub fit: &'a Fit,
    class_precision: OnceCell<Vec<f64>>,
    precision: OnceCell<Vec<f64>>,
}

impl<'a> FitCache<'a> {
    pub fn new(fit: &'a Fit) -> Self {
        FitCache {
            fit,
            class_precision: OnceCell::new(),
            precision: OnceCell::new(),
        }
    }

    fn class_precision(&self) -> Result<&[f64]> {
        if self.class_precision.get().is_none() {
            let (p, _) = pinvh(&self.fit.by_class.covariance, self.fit.feature_dim)?;
            let _ = self.class_precision.set(p);
        }
        Ok(self.class_precision.get().map(Vec::as_slice).unwrap_or(&[]))
    }

    fn precision(&self) -> Result<&[f64]> {
        if self.precision.get().is_none() {
            let (p, _) = pinvh(&self.fit.overall.covariance, self.fit.feature_dim)?;
            let _ = self.precision.set(p);
        }
        Ok(self.precision.get().map(Vec::as_slice).unwrap_or(&[]))
    }
}

fn bank_of<'a>(m: &Method, fit: &'a Fit) -> Result<&'a [f32]> {
    if fit.bank_rows == 0 {
        return Err(Error::Invalid(format!(
            "{}: the fit file holds no feature bank",
            m.name()
        )));
    }
    Ok(&fit.bank)
}

fn head(ctx: &Prepare) -> Result<(Tensor, Tensor)> {
    let (w, b) = ctx.model.head();
    Ok((w.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?))
}

/// ReAct: the energy of the head on min(h, t), t a percentile of every
/// entry of the fit features.
struct React {
    threshold: f64,
    w: Tensor,
    b: Tensor,
}

impl Score for React {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let h = f.feature.to_dtype(DType::F32)?.minimum(self.threshold)?;
        head_energy(&h, &self.w, &self.b)
    }

    fn stats(&self) -> Vec<(&'static str, f64)> {
        vec![("threshold", self.threshold)]
    }
}

pub(crate) fn prepare_react(m: &Method, ctx: &Prepare) -> Prepared {
    let fit = ctx.fit_of(m)?.fit;
    let mut values: Vec<f64> = bank_of(m, fit)?.iter().map(|&v| f64::from(v)).collect();
    let threshold = percentile(&mut values, super::number(m, "percentile")?);
    let (w, b) = head(ctx)?;
    Ok(Box::new(React { threshold, w, b }))
}

/// DICE: the energy of a head whose small contributions
/// mean(F)_j * W_cj (at or below a percentile) are zeroed.
struct Dice {
    threshold: f64,
    w: Tensor,
    b: Tensor,
}

impl Score for Dice {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        head_energy(&f.feature.to_dtype(DType::F32)?, &self.w, &self.b)
    }

    fn stats(&self) -> Vec<(&'static str, f64)> {
        vec![("threshold", self.threshold)]
    }
}

pub(crate) fn prepare_dice(m: &Method, ctx: &Prepare) -> Prepared {
    let fit = ctx.fit_of(m)?.fit;
    let (w, b) = head(ctx)?;
    let (c, d) = w.dims2()?;
    let wv = w
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let contrib: Vec<f64> = (0..c * d)
        .map(|i| fit.overall.means[i % d] * wv[i])
        .collect();
    let threshold = percentile(&mut contrib.clone(), super::number(m, "percentile")?);
    let masked: Vec<f32> = contrib
        .iter()
        .zip(&wv)
        .map(|(&m, &w)| if m > threshold { w as f32 } else { 0.0 })
        .collect();
    let w = Tensor::from_vec(masked, (c, d), ctx.model.device())?;
    Ok(Box::new(Dice { threshold, w, b }))
}

/// KNN: minus the k-th smallest squared distance between the normalized
/// feature and the normalized bank.
struct Knn {
    k: usize,
    /// The bank's normalized rows, f32.
    bank: SqL2Index,
}

/// x / (||x|| + 1e-10), row-wise: the normalizer of KNN (Sun et al.'s
/// `knn`) and of LowDim-Grad's features (the same code in its authors').
pub(super) fn normalize(v: &Tensor) -> Result<Tensor> {
    let norm = v.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    Ok(v.broadcast_div(&(norm + 1e-10)?)?)
}

impl Score for Knn {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let h = normalize(&f.feature.to_dtype(DType::F32)?)?;
        self.bank.score(&h, self.k, f.logits.device())
    }
}

/// Rows searched exactly by squared L2 distance (faiss's IndexFlatL2):
/// KNN's bank, GROOD's gradients, LowDim-Grad's projected gradients.
pub(super) struct SqL2Index {
    /// [N, D], and [1, N] their squared norms.
    rows: Tensor,
    sq: Tensor,
}

impl SqL2Index {
    pub fn new(rows: Tensor) -> Result<Self> {
        let sq = rows.sqr()?.sum(D::Minus1)?.unsqueeze(0)?;
        Ok(SqL2Index { rows, sq })
    }

    /// `n` rows made `chunk` at a time by `make(start, len)`, so that no
    /// intermediate of a large bank sits in memory whole.
    pub fn build(
        n: usize,
        chunk: usize,
        mut make: impl FnMut(usize, usize) -> Result<Tensor>,
    ) -> Result<Self> {
        let mut parts = Vec::new();
        for start in (0..n).step_by(chunk) {
            parts.push(make(start, chunk.min(n - start))?);
        }
        Self::new(Tensor::cat(&parts, 0)?)
    }

    pub fn len(&self) -> usize {
        self.rows.dim(0).unwrap_or(0)
    }

    /// Per row of `q` [B, D] (the rows' dtype and device), minus the `k`-th
    /// smallest squared distance to the index, f32 on `device`:
    /// |a - b|^2 = |a|^2 + |b|^2 - 2 a.b with the products on the index's
    /// device, the selection on the CPU (any index size). A distance that
    /// rounding took below zero counts as zero.
    pub fn score(&self, q: &Tensor, k: usize, device: &Device) -> Result<Tensor> {
        let d2 = q
            .matmul(&self.rows.t()?)?
            .affine(-2.0, 0.0)?
            .broadcast_add(&q.sqr()?.sum_keepdim(D::Minus1)?)?
            .broadcast_add(&self.sq)?;
        let rows = d2
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F64)?
            .to_vec2::<f64>()?;
        let kth: Vec<f32> = rows
            .into_iter()
            .map(|mut r| -r.select_nth_unstable_by(k - 1, f64::total_cmp).1.max(0.0) as f32)
            .collect();
        Ok(Tensor::new(kth, device)?)
    }
}

pub(crate) fn prepare_knn(m: &Method, ctx: &Prepare) -> Prepared {
    let fit = ctx.fit_of(m)?.fit;
    let bank = bank_of(m, fit)?;
    let k = super::number(m, "k")? as usize;
    if k > fit.bank_rows {
        return Err(Error::Invalid(format!(
            "{}: k = {k} but the fit's bank holds {} features",
            m.name(),
            fit.bank_rows
        )));
    }
    let bank = Tensor::from_slice(bank, (fit.bank_rows, fit.feature_dim), ctx.model.device())?;
    let bank = SqL2Index::new(normalize(&bank)?)?;
    Ok(Box::new(Knn { k, bank }))
}

/// ViM's principal space: u = -pinv(W) b and the residual basis NS.
struct Residual {
    u: Tensor,
    /// [D, D - dim].
    ns: Tensor,
}

impl Residual {
    /// ||(h - u) NS||_2 for rows `h` [B, D].
    fn norm(&self, h: &Tensor) -> Result<Tensor> {
        let r = h
            .to_dtype(DType::F32)?
            .broadcast_sub(&self.u)?
            .matmul(&self.ns)?;
        Ok(r.sqr()?.sum(D::Minus1)?.sqrt()?)
    }

    fn of(m: &Method, ctx: &Prepare, fit: &Fit) -> Result<Residual> {
        use faer::{Mat, Side};
        let d = fit.feature_dim;
        let dim = super::number(m, "dim")? as usize;
        if dim >= d {
            return Err(Error::Invalid(format!(
                "{}: dim = {dim} leaves no residual of the {d}-d feature (dim < {d})",
                m.name()
            )));
        }
        let (w, b) = ctx.model.head();
        let (c, _) = w.dims2()?;
        let cpu = |t: &Tensor| -> Result<Vec<f64>> {
            Ok(t.to_dtype(DType::F64)?
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f64>()?)
        };
        let wv = cpu(w)?;
        let bv = cpu(b)?;
        // pinv(W) = W^T pinv(W W^T), W W^T small (C x C).
        let wwt: Vec<f64> = (0..c * c)
            .map(|ij| {
                let (i, j) = (ij / c, ij % c);
                (0..d).map(|k| wv[i * d + k] * wv[j * d + k]).sum()
            })
            .collect();
        let (g, _) = pinvh(&wwt, c)?;
        let gb: Vec<f64> = (0..c)
            .map(|i| (0..c).map(|j| g[i * c + j] * bv[j]).sum())
            .collect();
        let u: Vec<f64> = (0..d)
            .map(|k| -(0..c).map(|i| wv[i * d + k] * gb[i]).sum::<f64>())
            .collect();
        // Covariance about u: the covariance plus (mean - u)(mean - u)^T.
        let s: Vec<f64> = (0..d).map(|k| fit.overall.means[k] - u[k]).collect();
        let cov = Mat::<f64>::from_fn(d, d, |i, j| fit.overall.covariance[i * d + j] + s[i] * s[j]);
        let eig = cov
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| Error::Invalid(format!("ViM eigendecomposition failed: {e:?}")))?;
        let vals: Vec<f64> = (0..d).map(|i| eig.S()[i]).collect();
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
        let vecs = eig.U();
        let rest = &order[dim..];
        let mut ns = vec![0f32; d * rest.len()];
        for i in 0..d {
            for (j, &col) in rest.iter().enumerate() {
                ns[i * rest.len() + j] = vecs[(i, col)] as f32;
            }
        }
        let device = ctx.model.device();
        Ok(Residual {
            u: Tensor::from_vec(u.iter().map(|&v| v as f32).collect::<Vec<f32>>(), d, device)?,
            ns: Tensor::from_vec(ns, (d, rest.len()), device)?,
        })
    }
}

struct ResidualScore(Residual);

impl Score for ResidualScore {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        Ok(self.0.norm(f.feature)?.neg()?)
    }
}

/// ViM: -alpha ||(h - u) NS|| + E(z).
struct Vim {
    residual: Residual,
    alpha: f64,
}

impl Score for Vim {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let virt = (self.residual.norm(f.feature)? * -self.alpha)?;
        Ok((virt + super::logits::energy(f.logits, 1.0)?)?)
    }

    fn stats(&self) -> Vec<(&'static str, f64)> {
        vec![("alpha", self.alpha)]
    }
}

pub(crate) fn prepare_residual(m: &Method, ctx: &Prepare) -> Prepared {
    let fit = ctx.fit_of(m)?.fit;
    Ok(Box::new(ResidualScore(Residual::of(m, ctx, fit)?)))
}

pub(crate) fn prepare_vim(m: &Method, ctx: &Prepare) -> Prepared {
    let fit = ctx.fit_of(m)?.fit;
    let residual = Residual::of(m, ctx, fit)?;
    let bank = bank_of(m, fit)?;
    // Mean residual norm over the bank, in chunks on the device.
    let mut total = 0.0;
    let rows = fit.bank_rows;
    let chunk = 4096;
    let mut start = 0;
    while start < rows {
        let n = chunk.min(rows - start);
        let f = Tensor::from_slice(
            &bank[start * fit.feature_dim..(start + n) * fit.feature_dim],
            (n, fit.feature_dim),
            ctx.model.device(),
        )?;
        total += residual
            .norm(&f)?
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        start += n;
    }
    let alpha = fit.max_logit_mean / (total / rows as f64);
    Ok(Box::new(Vim { residual, alpha }))
}

/// KL matching: -min_c KL(p || d_c).
struct Klm {
    /// [C, C] f64: log d_c as rows, a huge negative where d_c is 0.
    log_d_t: Tensor,
}

impl Score for Klm {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let logp = candle_nn::ops::log_softmax(&f.logits.to_dtype(DType::F64)?, D::Minus1)?;
        let p = logp.exp()?;
        let neg_entropy = (&p * &logp)?.sum_keepdim(D::Minus1)?;
        let cross = p.matmul(&self.log_d_t)?;
        let kl = neg_entropy.broadcast_sub(&cross)?;
        Ok(kl.min(D::Minus1)?.neg()?.to_dtype(DType::F32)?)
    }
}

pub(crate) fn prepare_klm(m: &Method, ctx: &Prepare) -> Prepared {
    let fit = ctx.fit_of(m)?.fit;
    let c = fit.model.num_classes;
    // scipy.stats.entropy(p, d): 0 log 0 = 0, p log(p / 0) = inf.
    let log_d: Vec<f64> = fit
        .klm
        .iter()
        .map(|&v| if v > 0.0 { v.ln() } else { -1e300 })
        .collect();
    let log_d_t = Tensor::from_vec(log_d, (c, c), ctx.model.device())?
        .t()?
        .contiguous()?;
    Ok(Box::new(Klm { log_d_t }))
}

/// MDS: max_c -(h - mu_c)^T P (h - mu_c); RMDS subtracts the background
/// term -(h - mu_0)^T P_0 (h - mu_0).
struct Mds {
    classes: GaussianLayers,
    background: Option<GaussianLayers>,
}

impl Score for Mds {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        // layer_score = max_c -0.5 (h - mu_c)^T P (h - mu_c).
        let class = (self.classes.layer_score(0, f.feature)? * 2.0)?;
        match &self.background {
            None => Ok(class),
            Some(bg) => Ok((class - (bg.layer_score(0, f.feature)? * 2.0)?)?),
        }
    }
}

fn prepare_mds_like(m: &Method, ctx: &Prepare, relative: bool) -> Prepared {
    let cache = ctx.fit_of(m)?;
    let fit = cache.fit;
    // With one image per class every class-centred feature is zero: the tied
    // covariance is rounding noise and its pseudo-inverse ranks images at
    // random (sklearn's pinvh does the same), so refuse rather than mislead.
    if fit.images as usize <= fit.by_class.classes.len() {
        return Err(Error::Invalid(format!(
            "{} needs at least two fit images in some class: this fit has {} images in {} classes, so the within-class covariance is zero; fit on more images per class",
            m.name(),
            fit.images,
            fit.by_class.classes.len()
        )));
    }
    let d = fit.feature_dim;
    let cpu = &Device::Cpu;
    let means = Tensor::from_slice(&fit.by_class.means, (fit.by_class.classes.len(), d), cpu)?;
    let p = Tensor::from_slice(cache.class_precision()?, (d, d), cpu)?;
    let device = ctx.model.device();
    let classes = GaussianLayers::new(&[means], &[p], device)?;
    let background = if relative {
        let mean = Tensor::from_slice(&fit.overall.means, (1, d), cpu)?;
        let p0 = Tensor::from_slice(cache.precision()?, (d, d), cpu)?;
        Some(GaussianLayers::new(&[mean], &[p0], device)?)
    } else {
        None
    };
    Ok(Box::new(Mds {
        classes,
        background,
    }))
}

pub(crate) fn prepare_mds(m: &Method, ctx: &Prepare) -> Prepared {
    prepare_mds_like(m, ctx, false)
}

pub(crate) fn prepare_rmds(m: &Method, ctx: &Prepare) -> Prepared {
    prepare_mds_like(m, ctx, true)
}
