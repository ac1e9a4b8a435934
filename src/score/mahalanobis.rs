//! Over 600 lines on purpose: layers, parameters file, FGSM and the
//! magnitude search are the seed's one pipeline with shared quirks.
//!
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

use super::logistic::{self, Logistic};
use crate::error::{Error, Result};
use crate::model::Classifier;
use candle_core::{DType, Device, Tensor, Var, D};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The seed's magnitude grid, in its order (ties go to the earlier one).
pub const MAGNITUDES: [f64; 7] = [0.0, 0.01, 0.005, 0.002, 0.0014, 0.001, 0.0005];

/// The seed's FGSM step for the tuning's "OOD" images.
pub const FGSM_STEP: f64 = 0.05;

/// What the parameters file says to identify `format`.
const KIND: super::params_file::Kind = super::params_file::Kind {
    format: "gradnorm-tui/mahalanobis",
    version: "1",
    header: "params",
    what: "Mahalanobis parameters file",
    short: "Mahalanobis parameters",
    make: "gradnorm-tui tune-mahalanobis",
};

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

    fn check_taps(&self, model: &dyn Classifier) -> Result<()> {
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

/// Which model a parameters file belongs to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelStamp {
    pub name: String,
    pub num_classes: usize,
    pub tap_dims: Vec<usize>,
    /// The input size the parameters were fitted at.
    pub image_size: usize,
    /// FNV-1a (64 bit) of the head weight and bias as little-endian f32.
    pub head_fingerprint: String,
}

impl ModelStamp {
    pub fn of(model: &dyn Classifier, image_size: usize) -> Result<Self> {
        let info = model.info();
        Ok(ModelStamp {
            name: info.name.clone(),
            num_classes: info.num_classes,
            tap_dims: info.tap_dims.clone(),
            image_size,
            head_fingerprint: head_fingerprint(model)?,
        })
    }

    /// Same network (the input size may differ).
    pub fn same_model(&self, other: &ModelStamp) -> bool {
        self.name == other.name
            && self.num_classes == other.num_classes
            && self.tap_dims == other.tap_dims
            && self.head_fingerprint == other.head_fingerprint
    }
}

impl std::fmt::Display for ModelStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} classes, taps {:?}, head {})",
            self.name, self.num_classes, self.tap_dims, self.head_fingerprint
        )
    }
}

/// A short digest of the head, which tells checkpoints apart cheaply.
pub fn head_fingerprint(model: &dyn Classifier) -> Result<String> {
    let (w, b) = model.head();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in [w, b] {
        let v: Vec<f32> = t
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        for x in v {
            for byte in x.to_le_bytes() {
                h ^= byte as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    Ok(format!("fnv1a64:{h:016x}"))
}

/// The tuned regression and how it was chosen.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Tuned {
    pub magnitude: f64,
    pub regression: Logistic,
    /// Inverse regularization strength the cross-validation chose.
    pub c: f64,
    /// Validation FPR95 of every magnitude tried, in order.
    pub trials: Vec<Trial>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Trial {
    pub magnitude: f64,
    pub c: f64,
    pub regression: Logistic,
    pub val_fpr95: f64,
}

/// Layer scores of one image set for every magnitude: `rows[k][i]` holds the
/// L layer scores of image i at magnitude k.
pub type ScoreTable = Vec<Vec<Vec<f64>>>;

/// The seed's selection: for each magnitude, a cross-validated logistic
/// regression on the training rows (ID label 0, OOD label 1), then FPR95 of
/// -P(OOD) on the validation rows; the lowest FPR95 wins, the first on ties.
pub fn choose_magnitude(
    magnitudes: &[f64],
    train_id: &ScoreTable,
    train_ood: &ScoreTable,
    val_id: &ScoreTable,
    val_ood: &ScoreTable,
) -> Result<Tuned> {
    let mut best: Option<(f64, usize)> = None;
    let mut trials = Vec::with_capacity(magnitudes.len());
    for (k, &m) in magnitudes.iter().enumerate() {
        let mut rows = train_id[k].clone();
        rows.extend(train_ood[k].iter().cloned());
        let y: Vec<bool> = (0..rows.len()).map(|i| i >= train_id[k].len()).collect();
        if train_id[k].is_empty() || train_ood[k].is_empty() {
            return Err(Error::Invalid(
                "Mahalanobis tuning needs training images on both sides".into(),
            ));
        }
        let cv = logistic::fit_cv(&rows, &y)?;
        let score = |r: &Vec<f64>| -cv.model.probability(r);
        let id: Vec<f64> = val_id[k].iter().map(score).collect();
        let ood: Vec<f64> = val_ood[k].iter().map(score).collect();
        if id.is_empty() || ood.is_empty() {
            return Err(Error::Invalid(
                "Mahalanobis tuning needs validation images on both sides".into(),
            ));
        }
        let fpr = crate::metrics::fpr_at_95_tpr(&id, &ood);
        if best.is_none_or(|(b, _)| fpr < b) {
            best = Some((fpr, k));
        }
        trials.push(Trial {
            magnitude: m,
            c: cv.c,
            regression: cv.model,
            val_fpr95: fpr,
        });
    }
    let (_, k) = best.ok_or_else(|| Error::Invalid("no magnitude to try".into()))?;
    Ok(Tuned {
        magnitude: trials[k].magnitude,
        regression: trials[k].regression.clone(),
        c: trials[k].c,
        trials,
    })
}

/// How the FGSM images of the tuning are clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FgsmClamp {
    /// To [0, 1] in the normalized input space, as the seed does (it cuts
    /// off every negative input value, i.e. the darker half of each channel).
    Unit,
    /// To the range real images occupy after normalization.
    Valid,
    None,
}

/// x_adv = clamp(x + step * sign(d CE(f(x), y) / dx)) with sign(0) = +1.
/// `lo`/`hi` are per-channel bounds for `FgsmClamp::Valid`.
pub fn fgsm(
    model: &dyn Classifier,
    x: &Tensor,
    labels: &[usize],
    step: f64,
    clamp: FgsmClamp,
    input: &crate::model::InputSpec,
) -> Result<Tensor> {
    let xv = Var::from_tensor(x)?;
    let out = model.forward(xv.as_tensor())?;
    let target = Tensor::from_vec(
        labels.iter().map(|&l| l as u32).collect::<Vec<u32>>(),
        labels.len(),
        x.device(),
    )?;
    let loss = candle_nn::loss::cross_entropy(&out.logits, &target)?;
    let grads = loss.backward()?;
    let grad = grads
        .get(xv.as_tensor())
        .ok_or_else(|| Error::Invalid("FGSM: no gradient reached the input".into()))?;
    let adv = super::odin::perturb(x, grad, step)?;
    Ok(match clamp {
        FgsmClamp::Unit => adv.clamp(0f32, 1f32)?,
        FgsmClamp::None => adv,
        FgsmClamp::Valid => {
            let lo: Vec<f32> = (0..3).map(|c| -input.mean[c] / input.std[c]).collect();
            let hi: Vec<f32> = (0..3)
                .map(|c| (1.0 - input.mean[c]) / input.std[c])
                .collect();
            let lo = Tensor::from_vec(lo, (1, 3, 1, 1), x.device())?;
            let hi = Tensor::from_vec(hi, (1, 3, 1, 1), x.device())?;
            adv.broadcast_maximum(&lo)?.broadcast_minimum(&hi)?
        }
    })
}

/// Everything a parameters file holds, on the CPU.
#[derive(Debug, Clone)]
pub struct MahalanobisParams {
    pub model: ModelStamp,
    /// The classes that had training images (rows of every `means`).
    pub classes: Vec<usize>,
    /// [K, d_l] f32 per tap.
    pub means: Vec<Tensor>,
    /// [d_l, d_l] f32 per tap.
    pub precisions: Vec<Tensor>,
    pub magnitude: f64,
    pub regression: Logistic,
    /// How the parameters were made (images, options, the tuning's trials).
    pub provenance: serde_json::Value,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    model: ModelStamp,
    classes: Vec<usize>,
    magnitude: f64,
    regression: Logistic,
    #[serde(default)]
    provenance: serde_json::Value,
}

impl MahalanobisParams {
    /// Writes safetensors: `mean.L` and `precision.L` (f32) for each tap L,
    /// and in the header's metadata `format`, `version` and `params` (JSON:
    /// model stamp, classes, magnitude, regression, provenance).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (l, (m, p)) in self.means.iter().zip(&self.precisions).enumerate() {
            tensors.push((format!("mean.{l}"), m.to_dtype(DType::F32)?));
            tensors.push((format!("precision.{l}"), p.to_dtype(DType::F32)?));
        }
        let header = Header {
            model: self.model.clone(),
            classes: self.classes.clone(),
            magnitude: self.magnitude,
            regression: self.regression.clone(),
            provenance: self.provenance.clone(),
        };
        super::params_file::write(path, &KIND, tensors, &header)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let (header, mut tensors): (Header, _) = super::params_file::read(path, &KIND)?;
        let layers = header.model.tap_dims.len();
        let mut means = Vec::with_capacity(layers);
        let mut precisions = Vec::with_capacity(layers);
        for (l, &d) in header.model.tap_dims.iter().enumerate() {
            let k = header.classes.len();
            for (name, shape, out) in [
                (format!("mean.{l}"), vec![k, d], &mut means),
                (format!("precision.{l}"), vec![d, d], &mut precisions),
            ] {
                let t = tensors.remove(&name).ok_or_else(|| Error::MissingTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    expected: shape.clone(),
                })?;
                if t.dims() != shape.as_slice() {
                    return Err(Error::ShapeMismatch {
                        path: path.to_path_buf(),
                        name,
                        expected: shape,
                        found: t.dims().to_vec(),
                    });
                }
                out.push(t);
            }
        }
        if header.regression.weights.len() != layers {
            return Err(Error::data(
                path,
                format!(
                    "{} regression weights for {layers} layers",
                    header.regression.weights.len()
                ),
            ));
        }
        Ok(MahalanobisParams {
            model: header.model,
            classes: header.classes,
            means,
            precisions,
            magnitude: header.magnitude,
            regression: header.regression,
            provenance: header.provenance,
        })
    }
}

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
    let path = m.path("params").unwrap_or(Path::new(""));
    if let (true, Some(params)) = (path.as_os_str().is_empty(), ctx.mahalanobis) {
        return Ok(Box::new(Mahalanobis::new(params.clone(), ctx.model)?));
    }
    if path.as_os_str().is_empty() {
        return Err(Error::Invalid(
            "mahalanobis needs its parameters file (mahalanobis:params=FILE or --mahalanobis-params FILE, from tune-mahalanobis)".into(),
        ));
    }
    Ok(Box::new(Mahalanobis::load(path, ctx.model)?))
}
