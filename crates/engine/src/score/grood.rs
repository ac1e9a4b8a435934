//! GROOD (gradient-aware OOD detection, ElAraby et al.) as OpenOOD's
//! postprocessor computes it (openood/postprocessors/grood.py):
//! - prototypes: the mean penultimate feature of each class over the fit
//!   set (zeros for a class without images, as OpenOOD initializes them),
//!   and a "noise" prototype, here their mean (OpenOOD's `use_proto_mean`;
//!   its default config averages 100 OOD validation images instead, which a
//!   fit of ID images does not have);
//! - an image's nearest-prototype scores are s_j = -||h - p_j|| over the C
//!   classes and the noise prototype, and its loss the cross-entropy of
//!   softmax(s) against its predicted class y;
//! - its gradient is that loss's gradient with respect to the noise
//!   prototype, softmax(s)_noise (h - p_noise) / ||h - p_noise|| (or, with
//!   `gradient=class`, with respect to p_y: (softmax(s)_y - 1)
//!   (h - p_y) / ||h - p_y||, OpenOOD's `use_pseudo_prototype`); the
//!   feature is detached, so this closed form is the whole backward pass;
//! - the score is minus the squared L2 distance to the nearest gradient of
//!   the fit's correctly classified images (faiss's IndexFlatL2; OpenOOD
//!   searches an IVF index with nprobe 4, which approximates it).
//!
//! The index is the fit's bank (every image up to `fit --bank`, evenly
//! spaced beyond), with each row's label and predicted class.

use super::fit::Fit;
use super::fitted::SqL2Index;
use super::{Forward, Method, Prepare, Score};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, D};

/// Whose gradient the score reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrt {
    Noise,
    Class,
}

struct Grood {
    wrt: Wrt,
    k: usize,
    /// [C + 1, D] f64: the class prototypes, then the noise prototype.
    prototypes: Tensor,
    /// [1, C + 1]: their squared norms.
    prototypes_sq: Tensor,
    /// The indexed gradients [N, D], f64.
    index: SqL2Index,
}

impl Grood {
    /// The gradients [B, D] (f64) of features `h` [B, D] whose predicted
    /// classes are `predicted` [B] (u32).
    fn gradients(&self, h: &Tensor, predicted: &Tensor) -> Result<Tensor> {
        let h = h.to_dtype(DType::F64)?;
        let c = self.prototypes.dim(0)? - 1;
        // ||h - p||^2 = ||h||^2 + ||p||^2 - 2 h.p, in f64.
        let d2 = h
            .matmul(&self.prototypes.t()?)?
            .affine(-2.0, 0.0)?
            .broadcast_add(&h.sqr()?.sum_keepdim(D::Minus1)?)?
            .broadcast_add(&self.prototypes_sq)?
            .clamp(0.0, f64::INFINITY)?;
        let dist = d2.sqrt()?;
        let p = candle_nn::ops::softmax(&dist.neg()?, D::Minus1)?;
        let (proto, weight, norm) = match self.wrt {
            Wrt::Noise => {
                let proto = self.prototypes.narrow(0, c, 1)?;
                (proto, p.narrow(1, c, 1)?, dist.narrow(1, c, 1)?)
            }
            Wrt::Class => {
                let idx = predicted.unsqueeze(1)?;
                let proto = self.prototypes.index_select(predicted, 0)?;
                let weight = (p.gather(&idx, 1)? - 1.0)?;
                (proto, weight, dist.gather(&idx, 1)?)
            }
        };
        // h on a prototype has no direction: its gradient is zero, as
        // torch.norm's subgradient there.
        let scale = weight.broadcast_div(&norm.clamp(f64::MIN_POSITIVE, f64::INFINITY)?)?;
        Ok(h.broadcast_sub(&proto)?.broadcast_mul(&scale)?)
    }
}

impl Score for Grood {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let device = self.prototypes.device();
        let h = f.feature.to_device(device)?;
        let predicted = f.logits.argmax(D::Minus1)?.to_device(device)?;
        let g = self.gradients(&h, &predicted)?;
        self.index.score(&g, self.k, f.logits.device())
    }

    fn stats(&self) -> Vec<(&'static str, f64)> {
        vec![("indexed", self.index.len() as f64)]
    }
}

/// The C class prototypes and the noise prototype (their mean), [C + 1, D]
/// f64 on the CPU.
fn prototypes(fit: &Fit, num_classes: usize) -> Vec<f64> {
    let d = fit.feature_dim;
    let mut p = vec![0f64; (num_classes + 1) * d];
    for (row, &c) in fit.by_class.classes.iter().enumerate() {
        if c < num_classes {
            p[c * d..(c + 1) * d].copy_from_slice(&fit.by_class.means[row * d..(row + 1) * d]);
        }
    }
    for j in 0..d {
        p[num_classes * d + j] =
            (0..num_classes).map(|c| p[c * d + j]).sum::<f64>() / num_classes as f64;
    }
    p
}

pub(crate) fn prepare(m: &Method, ctx: &Prepare) -> Result<Box<dyn Score>> {
    let key = m.key();
    let fit = ctx.fit_of(m)?.fit;
    let classes = fit.labelled_bank(key)?;
    let wrt = match super::choice(m, "gradient")? {
        "noise" => Wrt::Noise,
        "class" => Wrt::Class,
        other => return Err(Error::Invalid(format!("{key}: no gradient {other:?}"))),
    };
    let k = super::number(m, "k")? as usize;
    let c = fit.model.num_classes;
    let d = fit.feature_dim;
    let device = ctx.model.device();
    let protos = Tensor::from_vec(prototypes(fit, c), (c + 1, d), device)?;
    let mut grood = Grood {
        wrt,
        k,
        prototypes_sq: protos.sqr()?.sum(D::Minus1)?.unsqueeze(0)?,
        prototypes: protos,
        index: SqL2Index::new(Tensor::zeros((0, d), DType::F64, device)?)?,
    };
    // The correctly classified bank rows, whose gradients are the index.
    let mut rows = Vec::new();
    for (i, (&label, &pred)) in classes.labels.iter().zip(&classes.predicted).enumerate() {
        if label as usize >= c || pred as usize >= c {
            return Err(Error::Invalid(format!(
                "{key}: the fit's bank row {i} has class {} for a model with {c} classes",
                label.max(pred)
            )));
        }
        if label == pred {
            rows.push(i as u32);
        }
    }
    if rows.len() < k {
        return Err(Error::Invalid(format!(
            "{key}: k = {k} but only {} of the fit bank's {} images are correctly classified",
            rows.len(),
            fit.bank_rows
        )));
    }
    let bank = Tensor::from_slice(&fit.bank, (fit.bank_rows, d), &Device::Cpu)?;
    let idx = Tensor::new(rows.as_slice(), &Device::Cpu)?;
    let h = bank.index_select(&idx, 0)?.to_device(device)?;
    let predicted = Tensor::from_slice(&classes.predicted, fit.bank_rows, &Device::Cpu)?
        .index_select(&idx, 0)?
        .to_device(device)?;
    // A bank as large as ImageNet's default (20,000 rows) in a few batches.
    grood.index = SqL2Index::build(rows.len(), 4096, |start, n| {
        grood.gradients(&h.narrow(0, start, n)?, &predicted.narrow(0, start, n)?)
    })?;
    Ok(Box::new(grood))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed form against finite differences of the loss
    /// CE(softmax(-||h - p_j||), y) in the prototype.
    #[test]
    fn gradient_is_the_nearest_prototype_loss_gradient() {
        let (c, d) = (3usize, 4usize);
        let protos: Vec<f64> = (0..(c + 1) * d)
            .map(|i| ((i * 7 % 11) as f64) / 5.0 - 1.0)
            .collect();
        let h = [0.3f64, -0.2, 0.9, 0.1];
        let y = 1usize;
        let loss = |p: &[f64]| {
            let s: Vec<f64> = (0..=c)
                .map(|j| {
                    -(0..d)
                        .map(|k| (h[k] - p[j * d + k]).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect();
            let lse = s.iter().map(|v| v.exp()).sum::<f64>().ln();
            lse - s[y]
        };
        let cpu = Device::Cpu;
        let t = Tensor::from_vec(protos.clone(), (c + 1, d), &cpu).unwrap();
        for (wrt, row) in [(Wrt::Noise, c), (Wrt::Class, y)] {
            let g = Grood {
                wrt,
                k: 1,
                prototypes_sq: t
                    .sqr()
                    .unwrap()
                    .sum(D::Minus1)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
                prototypes: t.clone(),
                index: SqL2Index::new(Tensor::zeros((0, d), DType::F64, &cpu).unwrap()).unwrap(),
            };
            let hx = Tensor::new(&[h], &cpu).unwrap();
            let pred = Tensor::new(&[y as u32], &cpu).unwrap();
            let got = g.gradients(&hx, &pred).unwrap().to_vec2::<f64>().unwrap();
            for k in 0..d {
                let eps = 1e-6;
                let (mut a, mut b) = (protos.clone(), protos.clone());
                a[row * d + k] += eps;
                b[row * d + k] -= eps;
                let want = (loss(&a) - loss(&b)) / (2.0 * eps);
                assert!(
                    (got[0][k] - want).abs() < 1e-8,
                    "{wrt:?} {k}: {} vs {want}",
                    got[0][k]
                );
            }
        }
    }
}
