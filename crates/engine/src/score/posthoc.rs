//! Post-hoc scores that need no fit: entropy and GEN on the softmax, and
//! ASH (-p, -b, -s) and SCALE, which reshape the penultimate feature `h`
//! and take the energy of the head's logits on it. Definitions as OpenOOD
//! implements them (../shared/docs/POSTHOC.md); all batched on the device.

use super::{Forward, Method, Prepare, Score};
use crate::error::{Error, Result};
use candle_core::{DType, Tensor, D};

type Prepared = Result<Box<dyn Score>>;

/// logsumexp(h W^T + b) for features `h` [B, D]: the energy of the logits
/// the head gives `h`.
pub(crate) fn head_energy(h: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let z = h.matmul(&w.t()?)?.broadcast_add(b)?;
    Ok(z.log_sum_exp(D::Minus1)?)
}

/// sum_c p_c log p_c: minus the softmax entropy.
struct Entropy;

impl Score for Entropy {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let logp = candle_nn::ops::log_softmax(f.logits, D::Minus1)?;
        Ok((logp.exp()? * &logp)?.sum(D::Minus1)?)
    }
}

pub(crate) fn prepare_entropy(_: &Method, _: &Prepare) -> Prepared {
    Ok(Box::new(Entropy))
}

/// GEN: -sum over the M largest p_c of p_c^g (1 - p_c)^g.
struct Gen {
    gamma: f64,
    m: usize,
}

impl Score for Gen {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let p = candle_nn::ops::softmax(f.logits, D::Minus1)?;
        let c = p.dim(D::Minus1)?;
        let p = if self.m < c {
            let (sorted, _) = p.sort_last_dim(false)?;
            sorted.narrow(D::Minus1, 0, self.m)?
        } else {
            p
        };
        let q = p.affine(-1.0, 1.0)?;
        let terms = (p.powf(self.gamma)? * q.powf(self.gamma)?)?;
        Ok(terms.sum(D::Minus1)?.neg()?)
    }
}

pub(crate) fn prepare_gen(m: &Method, _: &Prepare) -> Prepared {
    Ok(Box::new(Gen {
        gamma: super::number(m, "gamma")?,
        m: super::number(m, "m")? as usize,
    }))
}

/// Which reshaping of `h` an ASH-like method applies.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Keep the k largest entries, zero the rest.
    Prune,
    /// The k largest set to sum(h)/k, the rest 0.
    Binarize,
    /// Prune, then scale by exp(sum(h) / sum(h')).
    PruneScale,
    /// Scale `h` by exp(sum(h) / sum(top-k of h)), nothing pruned.
    Scale,
}

struct Ash {
    shape: Shape,
    /// Entries kept: D - round(D q / 100), numpy's round.
    k: usize,
    w: Tensor,
    b: Tensor,
}

/// `k = D - round(D q / 100)` with round half to even, as OpenOOD.
pub fn kept_entries(dim: usize, percentile: f64) -> usize {
    let pruned = (dim as f64 * percentile / 100.0).round_ties_even() as usize;
    dim.saturating_sub(pruned)
}

/// A [B, D] 0/1 mask of the `k` largest entries of each row of `h`.
fn top_k_mask(h: &Tensor, k: usize) -> Result<Tensor> {
    let (b, d) = h.dims2()?;
    if k >= d {
        return Ok(h.ones_like()?);
    }
    let zeros = h.zeros_like()?;
    if k == 0 {
        return Ok(zeros);
    }
    // Sorting runs on the CPU for any width; the mask goes back.
    let order = h
        .to_device(&candle_core::Device::Cpu)?
        .arg_sort_last_dim(false)?
        .narrow(1, 0, k)?
        .contiguous()?
        .to_device(h.device())?;
    let ones = Tensor::ones((b, k), h.dtype(), h.device())?;
    Ok(zeros.scatter_add(&order, &ones, 1)?)
}

impl Score for Ash {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let h = f.feature.to_dtype(DType::F32)?;
        let mask = top_k_mask(&h, self.k)?;
        let kept = (&h * &mask)?;
        let s1 = h.sum_keepdim(D::Minus1)?;
        let h2 = match self.shape {
            Shape::Prune => kept,
            Shape::Binarize => mask.broadcast_mul(&(s1 / self.k as f64)?)?,
            Shape::PruneScale => {
                let s2 = kept.sum_keepdim(D::Minus1)?;
                kept.broadcast_mul(&(s1 / s2)?.exp()?)?
            }
            Shape::Scale => {
                let s2 = kept.sum_keepdim(D::Minus1)?;
                h.broadcast_mul(&(s1 / s2)?.exp()?)?
            }
        };
        head_energy(&h2, &self.w, &self.b)
    }
}

fn prepare_ash(m: &Method, ctx: &Prepare, shape: Shape) -> Prepared {
    let (w, b) = ctx.model.head();
    let dim = w.dim(1)?;
    let q = super::number(m, "percentile")?;
    let k = kept_entries(dim, q);
    if k == 0 && shape != Shape::Prune {
        return Err(Error::Invalid(format!(
            "{}: percentile {q} keeps no entry of the {dim}-d feature",
            m.key()
        )));
    }
    Ok(Box::new(Ash {
        shape,
        k,
        w: w.to_dtype(DType::F32)?,
        b: b.to_dtype(DType::F32)?,
    }))
}

pub(crate) fn prepare_ash_p(m: &Method, ctx: &Prepare) -> Prepared {
    prepare_ash(m, ctx, Shape::Prune)
}

pub(crate) fn prepare_ash_b(m: &Method, ctx: &Prepare) -> Prepared {
    prepare_ash(m, ctx, Shape::Binarize)
}

pub(crate) fn prepare_ash_s(m: &Method, ctx: &Prepare) -> Prepared {
    prepare_ash(m, ctx, Shape::PruneScale)
}

pub(crate) fn prepare_scale(m: &Method, ctx: &Prepare) -> Prepared {
    prepare_ash(m, ctx, Shape::Scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_entries_rounds_half_to_even() {
        assert_eq!(kept_entries(2048, 90.0), 2048 - 1843);
        assert_eq!(kept_entries(10, 85.0), 2); // round(8.5) = 8
        assert_eq!(kept_entries(10, 65.0), 4); // round(6.5) = 6
        assert_eq!(kept_entries(10, 0.0), 10);
        assert_eq!(kept_entries(10, 100.0), 0);
    }

    #[test]
    fn top_k_mask_keeps_the_largest() {
        let h = Tensor::new(&[[0.5f32, 3.0, 1.0, 2.0]], &candle_core::Device::Cpu).unwrap();
        let m = top_k_mask(&h, 2).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(m, vec![vec![0.0, 1.0, 0.0, 1.0]]);
    }
}
