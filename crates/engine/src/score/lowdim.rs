//! Low-dimensional gradients (Wu et al., "Low-Dimensional Gradient Helps
//! Out-of-Distribution Detection", TPAMI 2024), the authors' ImageNet recipe
//! (Wuyingwen/Low-dimensional-Gradient-Helps-OOD-Detection,
//! github_Average_gradient.py and github_main.py) on the classifier head's
//! parameters theta = (W, b):
//! - an image's gradient is g(x) = d/dtheta logsumexp(W h + b) =
//!   (p h^T, p), p = softmax(W h + b) (their `Energy_Model`);
//! - NFK (the default): over the fit set, z = mean g and the diagonal
//!   Fisher L = mean (g - z)^2, I = 1/sqrt(L) (an infinite entry becomes 1,
//!   then every entry equal to 1 becomes the largest, as their code does),
//!   and g~(x) = I (g(x) - z); NTK: g~ = g;
//! - the basis: one direction per class of the fit, the class-mean of g~
//!   over its images, normalized (their "average gradient" basis, with K =
//!   the classes the fit has; a class without images has no direction);
//! - the feature is g~(x) projected on the basis, and the score is KNN's on
//!   it: minus the k-th smallest squared distance between the normalized
//!   feature and the normalized features of the fit's images (k = 10, their
//!   ImageNet setting).
//!
//! Their code takes every parameter of the network and per-sample
//! gradients by vmap; a ResNet-50's 25.6 M parameters times 1,000 classes is
//! a 100 GB basis. Here the parameters are the head's, whose gradient has
//! the closed form above, and the basis is never formed: with A = I^2,
//! <A (g(x) - z), Gbar_c - z> = mean_{i in c} <A g(x), g_i> - <A g(x), z> -
//! <A z, Gbar_c - z>, and <A g(x), g_i> = sum_jk p_j p_ij A_jk h_k h_ik, so a
//! batch costs N C D multiply-adds per image for a fit bank of N images.
//! Everything is in f64: NTK's features are nearly parallel (their
//! distances differ in the sixth digit), and NFK's terms cancel (the product
//! in f32 took the ResNet fixture's error from 6e-7 to 5e-5 relative).

use super::fit::Fit;
use super::fitted::{normalize, SqL2Index};
use super::{Forward, Method, Prepare, Score};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use rayon::prelude::*;

/// How gradients are compared: the Fisher-normalized kernel or the plain
/// tangent kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Nfk,
    Ntk,
}

/// Most f64 entries of one intermediate product (256 MB).
const CHUNK_ENTRIES: usize = 1 << 25;

struct LowDim {
    kernel: Kernel,
    k: usize,
    /// The head, f64: [C, D] and [1, C].
    w: Tensor,
    b: Tensor,
    /// The fit bank's features [N, D] and softmax [N, C], f64.
    h_fit: Tensor,
    p_fit: Tensor,
    /// NFK's weights A = I^2 on W's entries [C, D] and b's [1, C], and A z
    /// for both.
    a_w: Tensor,
    a_b: Tensor,
    az_w: Tensor,
    az_b: Tensor,
    /// [N, K]: 1/n_c where bank row i is of the basis's class c.
    members: Tensor,
    /// [1, K]: <A z, Gbar_c - z> (zero for NTK) and the norm of each
    /// direction before normalization.
    kappa: Tensor,
    norm: Tensor,
    /// The fit bank's normalized features [N, K].
    bank: SqL2Index,
}

impl LowDim {
    /// The score's tensors on the head's device, from the fit statistics
    /// `s` of the bank rows `h_fit` [N, D] with softmax `p_fit` [N, C]; the
    /// bank's own features are left empty.
    fn assemble(
        kernel: Kernel,
        k: usize,
        w: Tensor,
        b: Tensor,
        h_fit: Tensor,
        p_fit: Tensor,
        s: Stats,
    ) -> Result<LowDim> {
        let device = w.device().clone();
        let (n, c) = p_fit.dims2()?;
        let d = h_fit.dim(1)?;
        let kk = s.classes.len();
        // One class's mean gradient is the fit's mean: no direction to
        // normalize (NFK), and one coordinate to compare (either kernel).
        if kk < 2 {
            return Err(Error::Invalid(format!(
                "lowdim-grad: its basis is one direction per class of the fit, and the fit's \
                 bank has images of {kk} class{}; fit on images of several classes",
                if kk == 1 { "" } else { "es" }
            )));
        }
        if let Some(col) = s.norm.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::Invalid(format!(
                "lowdim-grad: class {}'s direction has norm {}",
                s.classes[col], s.norm[col]
            )));
        }
        let mut members = vec![0f64; n * kk];
        for (col, rows) in s.members.iter().enumerate() {
            for &i in rows {
                members[i * kk + col] = 1.0 / rows.len() as f64;
            }
        }
        let row =
            |v: &[f64]| -> Result<Tensor> { Ok(Tensor::from_slice(v, (1, v.len()), &device)?) };
        let (a_w, a_b, az_w, az_b) = match kernel {
            Kernel::Ntk => {
                let z = Tensor::zeros((1, 1), DType::F64, &device)?;
                (z.clone(), z.clone(), z.clone(), z)
            }
            Kernel::Nfk => {
                let az: Vec<f64> = s.a.iter().zip(&s.z).map(|(a, z)| a * z).collect();
                let w_len = c * d;
                (
                    Tensor::from_slice(&s.a[..w_len], (c, d), &device)?,
                    row(&s.a[w_len..])?,
                    Tensor::from_slice(&az[..w_len], (c, d), &device)?,
                    row(&az[w_len..])?,
                )
            }
        };
        Ok(LowDim {
            kernel,
            k,
            w,
            b,
            h_fit,
            p_fit,
            a_w,
            a_b,
            az_w,
            az_b,
            members: Tensor::from_vec(members, (n, kk), &device)?,
            kappa: row(&s.kappa)?,
            norm: row(&s.norm)?,
            bank: SqL2Index::new(Tensor::zeros((0, kk), DType::F64, &device)?)?,
        })
    }

    /// The projected gradients [B, K] of features `h` [B, D] (f64).
    fn features(&self, h: &Tensor) -> Result<Tensor> {
        let logits = h.matmul(&self.w.t()?)?.broadcast_add(&self.b)?;
        let p = candle_nn::ops::softmax(&logits, D::Minus1)?;
        let num = match self.kernel {
            // <g(x), g_i> = (p . p_i)(h . h_i + 1).
            Kernel::Ntk => {
                let pp = p.matmul(&self.p_fit.t()?)?;
                let hh = (h.matmul(&self.h_fit.t()?)? + 1.0)?;
                (pp * hh)?.matmul(&self.members)?
            }
            Kernel::Nfk => {
                let t = (self.weight_products(h, &p)?
                    + p.broadcast_mul(&self.a_b)?.matmul(&self.p_fit.t()?)?)?;
                // <A g(x), z> = p^T (A z)_W h + (A z)_b . p.
                let cross = (p.matmul(&self.az_w)? * h)?.sum_keepdim(D::Minus1)?
                    + p.broadcast_mul(&self.az_b)?.sum_keepdim(D::Minus1)?;
                t.matmul(&self.members)?
                    .broadcast_sub(&cross?)?
                    .broadcast_sub(&self.kappa)?
            }
        };
        Ok(num.broadcast_div(&self.norm)?)
    }

    /// sum_jk p_j p_ij A_jk h_k h_ik for every image of the batch and every
    /// bank row i: [B, N].
    fn weight_products(&self, h: &Tensor, p: &Tensor) -> Result<Tensor> {
        let (bsz, d) = h.dims2()?;
        let (n, c) = self.p_fit.dims2()?;
        let rows = (CHUNK_ENTRIES / (n * c.max(d))).max(1);
        let mut parts = Vec::new();
        for start in (0..bsz).step_by(rows) {
            let m = rows.min(bsz - start);
            let hb = h.narrow(0, start, m)?;
            let pb = p.narrow(0, start, m)?;
            // (h_b h_i) A^T: [m N, C].
            let y = hb
                .unsqueeze(1)?
                .broadcast_mul(&self.h_fit.unsqueeze(0)?)?
                .reshape((m * n, d))?;
            let r = y.matmul(&self.a_w.t()?)?.reshape((m, n, c))?;
            let r = r.broadcast_mul(&self.p_fit.unsqueeze(0)?)?;
            parts.push(r.broadcast_mul(&pb.unsqueeze(1)?)?.sum(D::Minus1)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}

impl Score for LowDim {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let h = f.feature.to_device(self.w.device())?.to_dtype(DType::F64)?;
        let q = normalize(&self.features(&h)?)?;
        self.bank.score(&q, self.k, f.logits.device())
    }

    fn stats(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("directions", self.norm.dim(1).unwrap_or(0) as f64),
            ("bank", self.bank.len() as f64),
        ]
    }
}

/// The fit-set statistics on the CPU, f64, row-major.
struct Stats {
    /// z over W's entries [C * D] then b's [C].
    z: Vec<f64>,
    /// A = I^2, same layout (NFK only).
    a: Vec<f64>,
    /// The basis's classes, their members (bank rows), kappa and norms.
    classes: Vec<usize>,
    members: Vec<Vec<usize>>,
    kappa: Vec<f64>,
    norm: Vec<f64>,
}

/// z, the diagonal Fisher's A and each class direction's kappa and norm,
/// from the bank's features `h` [N, D] and softmax `p` [N, C].
fn stats(kernel: Kernel, h: &[f64], p: &[f64], labels: &[u32], c: usize, d: usize) -> Stats {
    let n = labels.len();
    let w_len = c * d;
    // z_W[j, k] = mean_i p_ij h_ik; z_b[j] = mean_i p_ij.
    let mut z = vec![0f64; w_len + c];
    z[..w_len]
        .par_chunks_mut(d)
        .enumerate()
        .for_each(|(j, row)| {
            for i in 0..n {
                let pij = p[i * c + j];
                for (zk, hk) in row.iter_mut().zip(&h[i * d..(i + 1) * d]) {
                    *zk += pij * hk;
                }
            }
            row.iter_mut().for_each(|v| *v /= n as f64);
        });
    for j in 0..c {
        z[w_len + j] = (0..n).map(|i| p[i * c + j]).sum::<f64>() / n as f64;
    }
    let a = match kernel {
        Kernel::Ntk => Vec::new(),
        Kernel::Nfk => {
            // L = mean (g_i - z)^2, summed as their code does (not as
            // E[g^2] - z^2, which cancels).
            let mut l = vec![0f64; w_len + c];
            l[..w_len]
                .par_chunks_mut(d)
                .enumerate()
                .for_each(|(j, row)| {
                    let zj = &z[j * d..(j + 1) * d];
                    for i in 0..n {
                        let pij = p[i * c + j];
                        for ((lk, hk), zk) in row.iter_mut().zip(&h[i * d..(i + 1) * d]).zip(zj) {
                            let u = pij * hk - zk;
                            *lk += u * u;
                        }
                    }
                });
            for j in 0..c {
                l[w_len + j] = (0..n).map(|i| (p[i * c + j] - z[w_len + j]).powi(2)).sum();
            }
            fisher_weights(&l, n)
        }
    };
    let mut classes: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    classes.sort_unstable();
    classes.dedup();
    let members: Vec<Vec<usize>> = classes
        .iter()
        .map(|&cl| (0..n).filter(|&i| labels[i] as usize == cl).collect())
        .collect();
    // Per class: Gbar_c densely, one row of W at a time.
    let (kappa, norm): (Vec<f64>, Vec<f64>) = members
        .par_iter()
        .map(|rows| {
            let inv = 1.0 / rows.len() as f64;
            let (mut kappa, mut sq) = (0f64, 0f64);
            let mut g = vec![0f64; d];
            let mut add = |idx: usize, gv: f64| match kernel {
                Kernel::Ntk => sq += gv * gv,
                Kernel::Nfk => {
                    let dv = gv - z[idx];
                    sq += a[idx] * dv * dv;
                    kappa += a[idx] * z[idx] * dv;
                }
            };
            for j in 0..c {
                g.iter_mut().for_each(|v| *v = 0.0);
                for &i in rows {
                    let pij = p[i * c + j] * inv;
                    for (gk, hk) in g.iter_mut().zip(&h[i * d..(i + 1) * d]) {
                        *gk += pij * hk;
                    }
                }
                for (k, &gv) in g.iter().enumerate() {
                    add(j * d + k, gv);
                }
            }
            for j in 0..c {
                let gv = rows.iter().map(|&i| p[i * c + j]).sum::<f64>() * inv;
                add(w_len + j, gv);
            }
            (kappa, sq.sqrt())
        })
        .unzip();
    Stats {
        z,
        a,
        classes,
        members,
        kappa,
        norm,
    }
}

/// A = I^2 from the summed squared deviations `l` of `n` images, I =
/// 1/sqrt(L): an infinite I (a parameter whose gradient never varied)
/// becomes 1, and then every I equal to 1 becomes the largest I, as
/// github_Average_gradient.py's `pre_compute` does.
fn fisher_weights(l: &[f64], n: usize) -> Vec<f64> {
    let mut i2: Vec<f64> = l
        .iter()
        .map(|&v| 1.0 / (v / n as f64).sqrt())
        .map(|v| if v.is_infinite() { 1.0 } else { v })
        .collect();
    let max = i2.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for v in &mut i2 {
        if *v == 1.0 {
            *v = max;
        }
        *v *= *v;
    }
    i2
}

pub(crate) fn prepare(m: &Method, ctx: &Prepare) -> Result<Box<dyn Score>> {
    let key = m.key();
    let fit: &Fit = ctx.fit_of(m)?.fit;
    let classes = fit.labelled_bank(key)?;
    let kernel = match super::choice(m, "kernel")? {
        "nfk" => Kernel::Nfk,
        "ntk" => Kernel::Ntk,
        other => return Err(Error::Invalid(format!("{key}: no kernel {other:?}"))),
    };
    let k = super::number(m, "k")? as usize;
    let (n, d) = (fit.bank_rows, fit.feature_dim);
    if k > n {
        return Err(Error::Invalid(format!(
            "{key}: k = {k} but the fit's bank holds {n} images"
        )));
    }
    let (w, b) = ctx.model.head();
    let c = w.dim(0)?;
    if let Some(&l) = classes.labels.iter().find(|&&l| l as usize >= c) {
        return Err(Error::Invalid(format!(
            "{key}: the fit's bank has class {l} for a model with {c} classes"
        )));
    }
    let device = ctx.model.device();
    let f64_on = |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F64)?.to_device(device)?) };
    let w = f64_on(w)?;
    let b = f64_on(b)?.reshape((1, c))?;
    let h_fit = f64_on(&Tensor::from_slice(&fit.bank, (n, d), &Device::Cpu)?)?;
    let logits = h_fit.matmul(&w.t()?)?.broadcast_add(&b)?;
    let p_fit = candle_nn::ops::softmax(&logits, D::Minus1)?;
    let cpu = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f64>()?)
    };
    let s = stats(kernel, &cpu(&h_fit)?, &cpu(&p_fit)?, &classes.labels, c, d);
    let mut lowdim = LowDim::assemble(kernel, k, w, b, h_fit, p_fit, s)?;
    // The bank's own features: KNN's neighbours.
    lowdim.bank = SqL2Index::build(n, 256, |start, rows| {
        normalize(&lowdim.features(&lowdim.h_fit.narrow(0, start, rows)?)?)
    })?;
    Ok(Box::new(lowdim))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The factored features against the definition: g~(x) = A^(1/2) (g(x)
    /// - z) formed entry by entry, projected on the normalized class means.
    #[test]
    fn factored_features_equal_the_formed_gradients() {
        let (n, c, d) = (7usize, 3usize, 4usize);
        let cpu = Device::Cpu;
        let val = |i: usize, m: usize, s: f64| ((i * m % 13) as f64) / 6.0 * s - 0.4;
        let h: Vec<f64> = (0..n * d).map(|i| val(i, 5, 1.0).abs()).collect();
        let w: Vec<f64> = (0..c * d).map(|i| val(i, 7, 0.9)).collect();
        let bias = [0.1f64, -0.3, 0.2];
        // Class 2 has no image: two directions.
        let labels = [0u32, 1, 0, 1, 1, 0, 0];
        let wt = Tensor::from_vec(w.clone(), (c, d), &cpu).unwrap();
        let bt = Tensor::new(&[bias], &cpu).unwrap();
        let ht = Tensor::from_vec(h.clone(), (n, d), &cpu).unwrap();
        let p_fit = candle_nn::ops::softmax(
            &ht.matmul(&wt.t().unwrap())
                .unwrap()
                .broadcast_add(&bt)
                .unwrap(),
            D::Minus1,
        )
        .unwrap();
        let pv = p_fit.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let grad = |i: usize| -> Vec<f64> {
            let mut g: Vec<f64> = (0..c * d)
                .map(|e| pv[i * c + e / d] * h[i * d + e % d])
                .collect();
            g.extend((0..c).map(|j| pv[i * c + j]));
            g
        };
        let x = [0.5f64, 0.0, 1.2, 0.3];
        for kernel in [Kernel::Nfk, Kernel::Ntk] {
            let s = stats(kernel, &h, &pv, &labels, c, d);
            // The definition, formed.
            let gs: Vec<Vec<f64>> = (0..n).map(grad).collect();
            let p_len = c * d + c;
            let z: Vec<f64> = (0..p_len)
                .map(|e| gs.iter().map(|g| g[e]).sum::<f64>() / n as f64)
                .collect();
            let l: Vec<f64> = (0..p_len)
                .map(|e| gs.iter().map(|g| (g[e] - z[e]).powi(2)).sum::<f64>())
                .collect();
            let a = fisher_weights(&l, n);
            let tilde = |g: &[f64]| -> Vec<f64> {
                match kernel {
                    Kernel::Ntk => g.to_vec(),
                    Kernel::Nfk => (0..p_len).map(|e| a[e].sqrt() * (g[e] - z[e])).collect(),
                }
            };
            let basis: Vec<Vec<f64>> = [0u32, 1]
                .iter()
                .map(|&cl| {
                    let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == cl).collect();
                    let mean: Vec<f64> = (0..p_len)
                        .map(|e| rows.iter().map(|&i| gs[i][e]).sum::<f64>() / rows.len() as f64)
                        .collect();
                    let v = tilde(&mean);
                    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                    v.into_iter().map(|x| x / norm).collect()
                })
                .collect();
            let logits: Vec<f64> = (0..c)
                .map(|j| bias[j] + (0..d).map(|k| w[j * d + k] * x[k]).sum::<f64>())
                .collect();
            let lse = logits.iter().map(|v| v.exp()).sum::<f64>().ln();
            let px: Vec<f64> = logits.iter().map(|v| (v - lse).exp()).collect();
            let mut gx: Vec<f64> = (0..c * d).map(|e| px[e / d] * x[e % d]).collect();
            gx.extend(&px);
            let gx = tilde(&gx);
            let want: Vec<f64> = basis
                .iter()
                .map(|v| v.iter().zip(&gx).map(|(a, b)| a * b).sum())
                .collect();
            // The factored form.
            let ld = LowDim::assemble(
                kernel,
                1,
                wt.clone(),
                bt.clone(),
                ht.clone(),
                p_fit.clone(),
                s,
            )
            .unwrap();
            let got = ld
                .features(&Tensor::new(&[x], &cpu).unwrap())
                .unwrap()
                .to_vec2::<f64>()
                .unwrap();
            for (g, w) in got[0].iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-9 * w.abs().max(1.0),
                    "{kernel:?}: {got:?} vs {want:?}"
                );
            }
        }
    }

    /// Their inf handling: a parameter that never varied gets the largest
    /// weight, and so does one whose I is exactly 1.
    #[test]
    fn fisher_weights_follow_their_inf_handling() {
        // L = l / n: 0 (inf), 1 (I = 1), 0.25 (I = 2), 4 (I = 0.5).
        let a = fisher_weights(&[0.0, 2.0, 0.5, 8.0], 2);
        assert_eq!(a, vec![4.0, 4.0, 4.0, 0.25]);
    }
}
