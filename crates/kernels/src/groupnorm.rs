//! BiT's GroupNorm + ReLU in one parallel op (candle_nn's GroupNorm is
//! eight tensor ops, each a pass over memory, and ReLU a ninth).

use super::op::{apply_f32, gradient, Bwd, Grads, In, Kernel};
use super::output::Output;
use super::simd::{affine_relu, gn_grad, grad_moments, moments};
use candle_core::{Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Splits each of `n` images of `p` pixels into runs of `chunk` pixels,
/// enough runs to keep the pool busy: (runs per image, chunk).
pub(super) fn pixel_runs(n: usize, p: usize) -> (usize, usize) {
    let want = (4 * rayon::current_num_threads()).div_ceil(n.max(1));
    let chunk = p.div_ceil(want.max(1)).max(64).min(p.max(1));
    (p.div_ceil(chunk), chunk)
}

/// Per image, `k` per-channel f64 sums of `c` channels over its `p`
/// pixels, each run of pixels summed by `f(image, pixels, acc)` in
/// parallel and the runs added in order (deterministic): [n, k * c].
pub(super) fn per_image_sums(
    n: usize,
    p: usize,
    c: usize,
    k: usize,
    f: impl Fn(usize, std::ops::Range<usize>, &mut [f64]) + Sync,
) -> Vec<f64> {
    let (runs, chunk) = pixel_runs(n, p);
    let partial: Vec<Vec<f64>> = (0..n * runs)
        .into_par_iter()
        .map(|t| {
            let (i, j) = (t / runs, t % runs);
            let (lo, hi) = (j * chunk, ((j + 1) * chunk).min(p));
            let mut acc = vec![0f64; k * c];
            if lo < hi {
                f(i, lo..hi, &mut acc);
            }
            acc
        })
        .collect();
    let mut sums = vec![0f64; n * k * c];
    for (t, acc) in partial.iter().enumerate() {
        let img = &mut sums[(t / runs) * k * c..][..k * c];
        for (s, a) in img.iter_mut().zip(acc) {
            *s += a;
        }
    }
    sums
}

/// An output [n, p, c] computed by `f(image, run of out, first pixel)`
/// over runs of whole pixels of every image in parallel (each run zeros
/// first).
pub(super) fn per_pixel_runs(
    (n, p, c): (usize, usize, usize),
    f: impl Fn(usize, &mut [f32], usize) + Sync,
) -> Vec<f32> {
    let (_, chunk) = pixel_runs(n, p);
    let mut out = Output::new(n * p * c);
    out.par_chunks(p * c).enumerate().for_each(|(i, img)| {
        img.par_chunks(chunk * c)
            .enumerate()
            .for_each(|(j, o)| f(i, o.zeros(), j * chunk))
    });
    out.finish()
}

/// GroupNorm (`groups` groups, affine) + ReLU over [N, ..., C] f32.
/// Statistics in f64 from one pass of sums (E[x²] - E[x]² is exact enough
/// in f64 for activations).
#[derive(Clone)]
pub(super) struct GroupNormRelu {
    groups: usize,
    eps: f64,
    gamma: Arc<[f32]>,
    beta: Arc<[f32]>,
}

impl GroupNormRelu {
    /// (images, pixels per image, channels).
    fn dims(&self, l: &Layout) -> Result<(usize, usize, usize)> {
        let dims = l.dims();
        let c = self.gamma.len();
        if dims.len() < 2 || dims.last() != Some(&c) || !c.is_multiple_of(self.groups) {
            candle_core::bail!(
                "group-norm: {dims:?} does not end in {c} channels in {} groups",
                self.groups
            )
        }
        let n = dims[0];
        Ok((n, l.shape().elem_count() / (n * c).max(1), c))
    }

    /// Per image and group, mean and 1 / sqrt(var + eps) from the sums of x
    /// and x² at `sums[i * stride + ..]`.
    fn stats(&self, sums: &[f64], stride: usize, n: usize, p: usize) -> Vec<(f64, f64)> {
        let c = self.gamma.len();
        let cpg = c / self.groups;
        let count = (p * cpg) as f64;
        let mut out = Vec::with_capacity(n * self.groups);
        for i in 0..n {
            let (s, q) = sums[i * stride..][..2 * c].split_at(c);
            for g in 0..self.groups {
                let sum: f64 = s[g * cpg..(g + 1) * cpg].iter().sum();
                let sq: f64 = q[g * cpg..(g + 1) * cpg].iter().sum();
                let mean = sum / count;
                let var = (sq / count - mean * mean).max(0.0);
                out.push((mean, 1.0 / (var + self.eps).sqrt()));
            }
        }
        out
    }
}

impl Kernel<1> for GroupNormRelu {
    const NAME: &'static str = "nhwc-group-norm-relu";

    fn forward(&self, [In { x, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let (n, p, c) = self.dims(l)?;
        let sums = per_image_sums(n, p, c, 2, |i, r, acc| {
            moments(&x[(i * p + r.start) * c..(i * p + r.end) * c], c, acc)
        });
        let stats = self.stats(&sums, 2 * c, n, p);
        let cpg = c / self.groups;
        // Per image and channel: y = max(x * scale + shift, 0).
        let mut scale = vec![0f32; n * c];
        let mut shift = vec![0f32; n * c];
        for i in 0..n {
            for ch in 0..c {
                let (mean, rstd) = stats[i * self.groups + ch / cpg];
                let a = self.gamma[ch] as f64 * rstd;
                scale[i * c + ch] = a as f32;
                shift[i * c + ch] = (self.beta[ch] as f64 - mean * a) as f32;
            }
        }
        let out = per_pixel_runs((n, p, c), |i, o, first| {
            let xi = &x[(i * p + first) * c..][..o.len()];
            affine_relu(xi, &scale[i * c..][..c], &shift[i * c..][..c], o);
        });
        Ok((out, l.shape().clone()))
    }

    fn backward(&self, t: Bwd<'_, 1>) -> Grads<1> {
        let op = GroupNormReluGrad(self.clone());
        Ok([gradient(op, [t.grad, t.args[0], t.res])?])
    }
}

/// d input of [`GroupNormRelu`] from (d output, input, output). With
/// x̂ = (x - μ) r and d the gradient past the ReLU, per group of n values:
/// dx = r γ d - (r / n) Σ γ d - x̂ (r / n) Σ γ d x̂.
pub(super) struct GroupNormReluGrad(GroupNormRelu);

impl Kernel<3> for GroupNormReluGrad {
    const NAME: &'static str = "nhwc-group-norm-relu-grad";

    fn forward(
        &self,
        [In { x: g, .. }, In { x, l: l2 }, In { x: y, .. }]: [In<'_>; 3],
    ) -> Result<(Vec<f32>, Shape)> {
        let gn = &self.0;
        let (n, p, c) = gn.dims(l2)?;
        if g.len() != x.len() || y.len() != x.len() {
            candle_core::bail!(
                "group-norm grad: sizes {}, {}, {}",
                g.len(),
                x.len(),
                y.len()
            )
        }
        let sums = per_image_sums(n, p, c, 4, |i, r, acc| {
            let run = (i * p + r.start) * c..(i * p + r.end) * c;
            grad_moments(&x[run.clone()], &g[run.clone()], &y[run], c, acc)
        });
        let stats = gn.stats(&sums, 4 * c, n, p);
        let cpg = c / gn.groups;
        let count = (p * cpg) as f64;
        // Per image: a, b, c of dx = a d + b x + c, per channel.
        let mut abc = vec![0f32; n * 3 * c];
        for i in 0..n {
            let (sd, sdx) = sums[i * 4 * c + 2 * c..][..2 * c].split_at(c);
            for grp in 0..gn.groups {
                let (mean, r) = stats[i * gn.groups + grp];
                let chans = grp * cpg..(grp + 1) * cpg;
                let s1: f64 = chans.clone().map(|k| gn.gamma[k] as f64 * sd[k]).sum();
                let s2: f64 = r * chans
                    .clone()
                    .map(|k| gn.gamma[k] as f64 * (sdx[k] - mean * sd[k]))
                    .sum::<f64>();
                let b = -r * r * s2 / count;
                let cst = mean * r * r * s2 / count - r * s1 / count;
                for k in chans {
                    let at = i * 3 * c;
                    abc[at + k] = (r * gn.gamma[k] as f64) as f32;
                    abc[at + c + k] = b as f32;
                    abc[at + 2 * c + k] = cst as f32;
                }
            }
        }
        let dx = per_pixel_runs((n, p, c), |i, o, first| {
            let run = (i * p + first) * c..(i * p + first) * c + o.len();
            gn_grad(
                &x[run.clone()],
                &g[run.clone()],
                &y[run],
                &abc[i * 3 * c..][..3 * c],
                o,
            );
        });
        Ok((dx, l2.shape().clone()))
    }
}

/// GroupNorm (affine, `groups` groups, `eps`) + ReLU of channels-last `x`
/// on the CPU, differentiable with respect to `x`. Other float dtypes run in
/// f32.
pub fn group_norm_relu(
    x: &Tensor,
    groups: usize,
    eps: f64,
    gamma: &Arc<[f32]>,
    beta: &Arc<[f32]>,
) -> Result<Tensor> {
    let op = GroupNormRelu {
        groups,
        eps,
        gamma: gamma.clone(),
        beta: beta.clone(),
    };
    apply_f32(x, op)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use candle_core::Var;

    #[test]
    fn group_norm_relu_matches_candle_nn_with_gradients() {
        for (n, h, w, c, groups) in [(2, 5, 7, 8, 4), (1, 3, 3, 6, 6), (3, 4, 2, 4, 1)] {
            // A shifted, scaled input: statistics far from (0, 1).
            let x = Var::from_tensor(&((rand(&[n, h, w, c], 31) * 3.0).unwrap() + 5.0).unwrap())
                .unwrap();
            let gamma = rand(&[c], 32);
            let beta = rand(&[c], 33);
            let ours = input_grad(&x, |x| {
                group_norm_relu(x, groups, 1e-5, &arc(&gamma), &arc(&beta)).unwrap()
            });
            let gn =
                candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), c, groups, 1e-5).unwrap();
            let theirs = input_grad(&x, |x| {
                use candle_core::Module;
                let nchw = x.permute((0, 3, 1, 2)).unwrap();
                gn.forward(&nchw)
                    .unwrap()
                    .relu()
                    .unwrap()
                    .permute((0, 2, 3, 1))
                    .unwrap()
            });
            assert!(theirs.0.contains(&0.0), "the ReLU cuts");
            assert!(
                max_diff(&ours.0, &theirs.0) < 1e-5,
                "{n} {h} {w} {c}: values"
            );
            assert!(
                max_diff(&ours.1, &theirs.1) < 1e-4,
                "{n} {h} {w} {c}: gradients"
            );
        }
    }
}
