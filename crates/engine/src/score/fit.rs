//! The fit file: what the fit-based post-hoc methods (react, dice, knn, vim,
//! residual, klm, mds, rmds) learn from one pass over labelled ID images.
//!
//! It scales to ImageNet's 1.28 M images because almost everything is a
//! sufficient statistic accumulated on the device in f64:
//! - per-class feature sums and the tied within-class scatter (mds), the
//!   overall mean and scatter (rmds's background, dice's mean feature, and
//!   vim's covariance about u = -pinv(W) b, which is the overall covariance
//!   plus (mean - u)(mean - u)^T);
//! - the sum of the top logit (vim's alpha numerator);
//! - per predicted class the sum of softmax vectors (klm).
//!
//! What needs single features is a bank: the features of at most `bank`
//! images, evenly spaced over the list (every image when the set is
//! smaller): knn's neighbours, react's percentile over every entry of F,
//! the mean residual norm in vim's alpha, and with each row its label and
//! predicted class, grood's index of correctly classified gradients and
//! lowdim-grad's gradient statistics and neighbours. These are exact while the set
//! fits the bank and estimates from a uniform subsample beyond it. NAC-UE's
//! per-neuron states are kept the same way for up to 1,000 images.

use super::gaussian::{GaussianFit, LayerGaussian};
use super::mahalanobis::ModelStamp;
use crate::error::{Error, Result};
use crate::model::Classifier;
use candle_core::{DType, Device, Tensor, D};
use std::path::Path;

const KIND: super::params_file::Kind = super::params_file::Kind {
    format: "gradnorm-tui/fit",
    version: "1",
    header: "fit",
    what: "fit file",
    short: "fit file",
    make: "gradnorm-tui fit",
};

/// Default cap on the feature bank (rows).
pub const DEFAULT_BANK: usize = 20_000;

/// The statistics of a fit set, in f64 on the CPU (the bank in f32).
#[derive(Debug, Clone)]
pub struct Fit {
    pub model: ModelStamp,
    pub feature_dim: usize,
    /// Images in the fit.
    pub images: u64,
    /// The classes that had images, their feature means ([K, D]) and the
    /// tied covariance of the class-centred features ([D, D], 1/N).
    pub by_class: LayerGaussian,
    /// All images as one class: the mean feature ([1, D]) and the
    /// covariance about it ([D, D], 1/N).
    pub overall: LayerGaussian,
    /// mean_i max_c Z_ic over the fit set.
    pub max_logit_mean: f64,
    /// Per predicted class c the mean softmax of its images ([C, C]; the
    /// one-hot e_c for a class no image was predicted as).
    pub klm: Vec<f64>,
    /// Bank features ([rows, D], f32) and how many rows.
    pub bank: Vec<f32>,
    pub bank_rows: usize,
    /// Each bank row's label and the model's top-1 class (None in files
    /// made before they were kept).
    pub bank_classes: Option<BankClasses>,
    /// NAC-UE's states of up to `FitOptions::nac_rows` images (None in files
    /// made before they were kept, or without any).
    pub nac: Option<super::nac::FitStates>,
}

/// The label and predicted class of every bank row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BankClasses {
    pub labels: Vec<u32>,
    pub predicted: Vec<u32>,
}

/// One streaming pass that becomes a [`Fit`].
pub struct FitBuilder {
    classes: GaussianFit,
    all: GaussianFit,
    num_classes: usize,
    dim: usize,
    max_logit_sum: f64,
    /// [C, C] f64 on the device.
    pred_sums: Tensor,
    pred_counts: Vec<u64>,
    bank: Vec<f32>,
    bank_rows: usize,
    bank_classes: BankClasses,
    /// NAC-UE's states, when the builder is given them.
    pub nac: Option<super::nac::FitStates>,
}

impl FitBuilder {
    pub fn new(num_classes: usize, feature_dim: usize, device: &Device) -> Result<Self> {
        Ok(FitBuilder {
            classes: GaussianFit::new(&[feature_dim], num_classes, device)?,
            all: GaussianFit::new(&[feature_dim], 1, device)?,
            num_classes,
            dim: feature_dim,
            max_logit_sum: 0.0,
            pred_sums: Tensor::zeros((num_classes, num_classes), DType::F64, device)?,
            pred_counts: vec![0; num_classes],
            bank: Vec::new(),
            bank_rows: 0,
            bank_classes: BankClasses::default(),
            nac: None,
        })
    }

    /// Adds a batch: logits [B, C], features [B, D], labels, and which rows
    /// go to the bank.
    pub fn add(
        &mut self,
        logits: &Tensor,
        feature: &Tensor,
        labels: &[usize],
        in_bank: &[bool],
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let feature = feature.to_dtype(DType::F32)?;
        self.classes.add(std::slice::from_ref(&feature), labels)?;
        self.all
            .add(std::slice::from_ref(&feature), &vec![0; labels.len()])?;
        let z = logits.to_dtype(DType::F64)?;
        self.max_logit_sum += z.max(D::Minus1)?.sum_all()?.to_scalar::<f64>()?;
        let pred = z.argmax(D::Minus1)?;
        let p = candle_nn::ops::softmax(&z, D::Minus1)?;
        self.pred_sums = self.pred_sums.index_add(&pred, &p, 0)?;
        let pred = pred.to_device(&Device::Cpu)?.to_vec1::<u32>()?;
        for &c in &pred {
            self.pred_counts[c as usize] += 1;
        }
        if in_bank.iter().any(|&b| b) {
            let rows = feature.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
            for (i, row) in rows.into_iter().enumerate().filter(|&(i, _)| in_bank[i]) {
                self.bank.extend(row);
                self.bank_rows += 1;
                self.bank_classes.labels.push(labels[i] as u32);
                self.bank_classes.predicted.push(pred[i]);
            }
        }
        Ok(())
    }

    pub fn finish(self, model: ModelStamp) -> Result<Fit> {
        let n = self.classes.count();
        let g = self.classes.finish()?.remove(0);
        let a = self.all.finish()?.remove(0);
        let c = self.num_classes;
        let sums = self
            .pred_sums
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let mut klm = vec![0.0; c * c];
        for k in 0..c {
            let count = self.pred_counts[k];
            for j in 0..c {
                klm[k * c + j] = if count == 0 {
                    f64::from(u8::from(j == k))
                } else {
                    sums[k * c + j] / count as f64
                };
            }
        }
        Ok(Fit {
            model,
            feature_dim: self.dim,
            images: n,
            by_class: g,
            overall: a,
            max_logit_mean: self.max_logit_sum / n as f64,
            klm,
            bank: self.bank,
            bank_rows: self.bank_rows,
            bank_classes: Some(self.bank_classes),
            nac: self.nac,
        })
    }
}

/// Which of `n` images (in list order) go to a bank of at most `cap` rows:
/// all of them, else `cap` evenly spaced ones.
pub fn bank_selection(n: usize, cap: usize) -> Vec<bool> {
    let mut keep = vec![false; n];
    if n <= cap {
        keep.iter_mut().for_each(|k| *k = true);
    } else {
        for j in 0..cap {
            keep[j * n / cap] = true;
        }
    }
    keep
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    model: ModelStamp,
    feature_dim: usize,
    images: u64,
    classes: Vec<usize>,
    max_logit_mean: f64,
    bank_rows: usize,
    /// Whether the bank's labels and predicted classes are stored; absent
    /// in older files.
    #[serde(default)]
    bank_classes: bool,
    /// NAC-UE's layers (their dims) and rows; absent in older files.
    #[serde(default)]
    nac_layers: Vec<(String, usize)>,
    #[serde(default)]
    nac_rows: usize,
}

/// What a fit file says of itself, read without its tensors
/// ([`Fit::peek`]): which model it was made for, on how many images.
#[derive(Debug, Clone, PartialEq)]
pub struct FitInfo {
    pub model: ModelStamp,
    pub feature_dim: usize,
    pub images: u64,
    /// Classes that had images.
    pub classes: usize,
}

impl Fit {
    /// The bank's labels and predicted classes, for `key`, a method that
    /// needs them; an error when the file was made before they were kept.
    pub(crate) fn labelled_bank(&self, key: &str) -> Result<&BankClasses> {
        self.bank_classes.as_ref().filter(|_| self.bank_rows > 0).ok_or_else(|| {
            Error::Invalid(format!(
                "{key}: the fit file keeps no labels for its bank (made before they were kept); run `gradnorm-tui fit` again"
            ))
        })
    }

    /// The header of the fit file `path` only (a menu reads every fit it
    /// finds this way); an error when it is not a fit file.
    pub fn peek(path: &Path) -> Result<FitInfo> {
        let h: Header = super::params_file::read_header(path, &KIND)?;
        Ok(FitInfo {
            model: h.model,
            feature_dim: h.feature_dim,
            images: h.images,
            classes: h.classes.len(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let cpu = Device::Cpu;
        let d = self.feature_dim;
        let c = self.model.num_classes;
        let k = self.by_class.classes.len();
        let f64t = |v: &[f64], shape: &[usize]| Tensor::from_slice(v, shape, &cpu);
        let mut tensors: Vec<(String, Tensor)> = vec![
            ("class_means".into(), f64t(&self.by_class.means, &[k, d])?),
            (
                "class_covariance".into(),
                f64t(&self.by_class.covariance, &[d, d])?,
            ),
            ("mean".into(), f64t(&self.overall.means, &[d])?),
            (
                "covariance".into(),
                f64t(&self.overall.covariance, &[d, d])?,
            ),
            ("klm".into(), f64t(&self.klm, &[c, c])?),
        ];
        if self.bank_rows > 0 {
            tensors.push((
                "bank".into(),
                Tensor::from_slice(&self.bank, (self.bank_rows, d), &cpu)?,
            ));
        }
        let classes = self.bank_classes.as_ref().filter(|_| self.bank_rows > 0);
        if let Some(bc) = classes {
            for (name, v) in [
                ("bank_labels", &bc.labels),
                ("bank_predicted", &bc.predicted),
            ] {
                tensors.push((name.into(), Tensor::from_slice(v, self.bank_rows, &cpu)?));
            }
        }
        let nac = self.nac.as_ref().filter(|s| s.rows > 0);
        if let Some(s) = nac {
            for (l, name) in s.layers.iter().enumerate() {
                let shape = (s.rows, s.dims[l]);
                tensors.push((
                    format!("nac.{name}.o"),
                    Tensor::from_slice(&s.o[l], shape, &cpu)?,
                ));
                tensors.push((
                    format!("nac.{name}.g"),
                    Tensor::from_slice(&s.g[l], shape, &cpu)?,
                ));
            }
        }
        let header = Header {
            model: self.model.clone(),
            feature_dim: d,
            images: self.images,
            classes: self.by_class.classes.clone(),
            max_logit_mean: self.max_logit_mean,
            bank_rows: self.bank_rows,
            bank_classes: classes.is_some(),
            nac_layers: nac
                .map(|s| {
                    s.layers
                        .iter()
                        .cloned()
                        .zip(s.dims.iter().copied())
                        .collect()
                })
                .unwrap_or_default(),
            nac_rows: nac.map_or(0, |s| s.rows),
        };
        super::params_file::write(path, &KIND, tensors, &header)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let (h, mut tensors): (Header, _) = super::params_file::read(path, &KIND)?;
        let d = h.feature_dim;
        let c = h.model.num_classes;
        let mut take = |name: &str, shape: Vec<usize>| {
            super::params_file::take(&mut tensors, path, name, shape)
        };
        let v64 = |t: Tensor| -> Result<Vec<f64>> {
            Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
        };
        let by_class = LayerGaussian {
            dim: d,
            means: v64(take("class_means", vec![h.classes.len(), d])?)?,
            covariance: v64(take("class_covariance", vec![d, d])?)?,
            classes: h.classes,
        };
        let overall = LayerGaussian {
            dim: d,
            classes: vec![0],
            means: v64(take("mean", vec![d])?)?,
            covariance: v64(take("covariance", vec![d, d])?)?,
        };
        let klm = v64(take("klm", vec![c, c])?)?;
        let bank = if h.bank_rows > 0 {
            take("bank", vec![h.bank_rows, d])?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?
        } else {
            Vec::new()
        };
        let bank_classes = if h.bank_classes && h.bank_rows > 0 {
            let mut read = |name: &str| -> Result<Vec<u32>> {
                Ok(take(name, vec![h.bank_rows])?
                    .to_dtype(DType::U32)?
                    .to_vec1::<u32>()?)
            };
            Some(BankClasses {
                labels: read("bank_labels")?,
                predicted: read("bank_predicted")?,
            })
        } else {
            None
        };
        let nac = if h.nac_rows > 0 {
            let mut s = super::nac::FitStates {
                rows: h.nac_rows,
                ..Default::default()
            };
            for (name, dim) in &h.nac_layers {
                let mut read = |which: &str| -> Result<Vec<f32>> {
                    Ok(
                        take(&format!("nac.{name}.{which}"), vec![h.nac_rows, *dim])?
                            .to_dtype(DType::F32)?
                            .flatten_all()?
                            .to_vec1::<f32>()?,
                    )
                };
                s.o.push(read("o")?);
                s.g.push(read("g")?);
                s.layers.push(name.clone());
                s.dims.push(*dim);
            }
            Some(s)
        } else {
            None
        };
        Ok(Fit {
            model: h.model,
            feature_dim: d,
            images: h.images,
            by_class,
            overall,
            max_logit_mean: h.max_logit_mean,
            klm,
            bank,
            bank_rows: h.bank_rows,
            bank_classes,
            nac,
        })
    }

    /// Reads `path` and checks it was made for `model`.
    pub fn load_for(path: &Path, model: &dyn Classifier) -> Result<Self> {
        let fit = Fit::read(path)?;
        let ours = ModelStamp::of(model, fit.model.image_size)?;
        let (w, _) = model.head();
        let d = w.dim(1)?;
        if !fit.model.same_model(&ours) || fit.feature_dim != d {
            return Err(Error::data(
                path,
                format!(
                    "fit made for {} (feature dim {}), not for the loaded model {} (feature dim {d}); run `gradnorm-tui fit` for this model",
                    fit.model, fit.feature_dim, ours
                ),
            ));
        }
        Ok(fit)
    }
}

/// How `fit_images` reads the images.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub input: gradnorm_core::run::InputSpec,
    pub batch: usize,
    /// Decoding threads (0: every core).
    pub workers: usize,
    /// Cap on the feature bank (rows).
    pub bank: usize,
    /// Cap on the images whose NAC-UE states are kept (each takes a
    /// backward pass); 0 keeps none.
    pub nac_rows: usize,
}

/// One pass of `model` over labelled `items`: the fit, and the images that
/// could not be read (path, why). `progress(done, total)` after each batch.
pub fn fit_images(
    model: &dyn Classifier,
    items: Vec<crate::data::dataset::Item>,
    opts: FitOptions,
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Fit, Vec<(std::path::PathBuf, String)>)> {
    use crate::data::loader::{self, LoaderConfig};
    let info = model.info().clone();
    let c = info.num_classes;
    let mut labels = Vec::with_capacity(items.len());
    for it in &items {
        match it.label {
            Some(l) if l < c => labels.push(l),
            Some(l) => {
                return Err(Error::data(
                    &it.path,
                    format!("label {l} is out of range for a model with {c} classes"),
                ))
            }
            None => {
                return Err(Error::data(
                    &it.path,
                    "the fit set needs labels (a list file or an ImageFolder)",
                ))
            }
        }
    }
    if items.is_empty() {
        return Err(Error::Invalid("the fit set is empty".into()));
    }
    let in_bank = bank_selection(items.len(), opts.bank);
    let in_nac = bank_selection(items.len(), opts.nac_rows);
    let (w, _) = model.head();
    let dim = w.dim(1)?;
    let device = model.device().clone();
    let mut builder = FitBuilder::new(c, dim, &device)?;
    let mut nac = super::nac::FitStates::for_model(model);
    let total = items.len();
    let items: std::sync::Arc<[crate::data::dataset::Item]> = items.into();
    let mut batches = loader::batches(
        items.clone(),
        LoaderConfig {
            input: opts.input,
            batch: opts.batch.max(1),
            workers: opts.workers,
            prefetch: 2,
        },
        cancel.clone(),
    );
    let mut skipped = Vec::new();
    let mut done = 0;
    while let Some(batch) = batches.next() {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Invalid("fit cancelled".into()));
        }
        for (idx, why) in batch.failures {
            skipped.push((items[idx].path.clone(), why));
            done += 1;
        }
        let n = batch.indices.len();
        if n > 0 {
            let size = opts.input.size;
            let x = Tensor::from_slice(&batch.data, (n, 3, size, size), &device)?;
            batches.recycle(batch.data);
            let out = model.forward(&x)?;
            let l: Vec<usize> = batch.indices.iter().map(|&i| labels[i]).collect();
            let b: Vec<bool> = batch.indices.iter().map(|&i| in_bank[i]).collect();
            builder.add(&out.logits, &out.feature, &l, &b)?;
            // NAC-UE's states need a backward pass: only its rows take it.
            let rows: Vec<u32> = (0..n)
                .filter(|&r| in_nac[batch.indices[r]])
                .map(|r| r as u32)
                .collect();
            if !rows.is_empty() {
                let idx = Tensor::new(rows.as_slice(), &device)?;
                nac.add(model, &x.index_select(&idx, 0)?)?;
            }
            done += n;
        }
        progress(done, total);
    }
    // A cancelled loader stops sending batches: the pass is not whole.
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Invalid("fit cancelled".into()));
    }
    let stamp = ModelStamp::of(model, opts.input.size)?;
    builder.nac = Some(nac);
    Ok((builder.finish(stamp)?, skipped))
}

/// numpy's default percentile (linear interpolation between order
/// statistics) of `values` at `q` percent; reorders `values`.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = q / 100.0 * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    let (_, v_lo, right) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let v_lo = *v_lo;
    let v_hi = if hi == lo {
        v_lo
    } else {
        right.iter().copied().fold(f64::INFINITY, f64::min)
    };
    // numpy's lerp: a + (b - a) * t, written as it is for t >= 0.5.
    if frac >= 0.5 {
        v_hi - (v_hi - v_lo) * (1.0 - frac)
    } else {
        v_lo + (v_hi - v_lo) * frac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile([1, 2, 3, 4], q) for q = 0, 10, 50, 90, 100
        let want = [1.0, 1.3, 2.5, 3.7, 4.0];
        for (q, w) in [0.0, 10.0, 50.0, 90.0, 100.0].iter().zip(want) {
            let got = percentile(&mut [4.0, 2.0, 1.0, 3.0], *q);
            assert!((got - w).abs() < 1e-12, "{q}: {got}");
        }
    }

    #[test]
    fn bank_selection_is_even_and_capped() {
        assert_eq!(bank_selection(3, 5), vec![true; 3]);
        let s = bank_selection(10, 4);
        assert_eq!(s.iter().filter(|&&b| b).count(), 4);
        assert!(s[0] && s[2] && s[5] && s[7]);
    }
}
