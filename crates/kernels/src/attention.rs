//! Multi-head self-attention's core, fused: from the in-projection's
//! output [B, N, 3 D] (q, k, v, each [H heads][hd]) to the heads' weighted
//! sums [B, H, N, hd], per (image, head) a task that multiplies on the
//! packed kernel (q kᵀ with kᵀ packed, the probabilities times v packed)
//! and takes the softmax in between, vectorized. Queries go in blocks of
//! [`QUERIES`], so a long sequence's N x N scores never sit in memory whole
//! (at most QUERIES x N per thread).
//!
//! The backward pass (input gradients: ODIN, Mahalanobis) recomputes the
//! probabilities on candle's ops and holds each image's N x N at once.

use super::op::{Bwd, Grads, In, Kernel, Op};
use super::output::Output;
use super::packed::{self, matmul_block, PackedB};
use super::simd;
use candle_core::{Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Query rows per block of scores.
const QUERIES: usize = 128;

/// Whether [`attention`] runs heads of `head_dim` on this CPU (the packed
/// kernel takes 16 columns at a time).
pub fn attention_fits(head_dim: usize) -> bool {
    packed::usable(head_dim)
}

/// softmax(q kᵀ / √hd) v per head, from `qkv` [B, N, 3 D] (torch's
/// `in_proj` output: q, k, v, each `heads` heads of hd = D / heads) to
/// [B, heads, N, hd], f32. See [`attention_fits`].
pub fn attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let qkv = qkv.to_dtype(candle_core::DType::F32)?.contiguous()?;
    qkv.apply_op1(Op(Attention { heads }))
}

struct Attention {
    heads: usize,
}

impl Attention {
    /// (batch, tokens, width D, head width).
    fn dims(&self, dims: &[usize]) -> Result<(usize, usize, usize, usize)> {
        let &[b, n, d3] = dims else {
            candle_core::bail!("attention: expected [B, N, 3 D], got {dims:?}")
        };
        let d = d3 / 3;
        let h = self.heads;
        if d3 != 3 * d || h == 0 || d % h != 0 || !attention_fits(d / h) || n == 0 {
            candle_core::bail!(
                "attention: {dims:?} does not split into 3 x {h} heads the kernel takes"
            )
        }
        Ok((b, n, d, d / h))
    }
}

impl Kernel<1> for Attention {
    const NAME: &'static str = "attention";

    fn forward(&self, [In { x, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let (b, n, d, hd) = self.dims(l.dims())?;
        let h = self.heads;
        let scale = 1.0 / (hd as f32).sqrt();
        // kᵀ padded to whole panels; the padding's scores are never read.
        let npad = n.next_multiple_of(16);
        let mut out = Output::new(b * h * n * hd);
        out.par_chunks(n * hd)
            .enumerate()
            .for_each_init(Vec::new, |scores, (task, o)| {
                // The products below add to it.
                let o = o.zeros();
                let (img, head) = (task / h, task % h);
                let rows = &x[img * n * 3 * d..][..n * 3 * d];
                let part =
                    |which: usize, t: usize| &rows[t * 3 * d + which * d + head * hd..][..hd];
                let mut kt = vec![0f32; hd * npad];
                let mut v = vec![0f32; n * hd];
                for t in 0..n {
                    for (c, &val) in part(1, t).iter().enumerate() {
                        kt[c * npad + t] = val;
                    }
                    v[t * hd..][..hd].copy_from_slice(part(2, t));
                }
                let kt = PackedB::new(&kt, hd, npad).expect("npad is whole panels");
                let v = PackedB::new(&v, n, hd).expect("attention_fits(hd)");
                let q = &rows[head * hd..];
                for q0 in (0..n).step_by(QUERIES) {
                    let qn = QUERIES.min(n - q0);
                    scores.clear();
                    scores.resize(qn * npad, 0.0);
                    matmul_block(scores, &q[q0 * 3 * d..], 3 * d, &kt);
                    for row in scores.chunks_exact_mut(npad) {
                        simd::softmax_row(&mut row[..n], scale);
                    }
                    matmul_block(&mut o[q0 * hd..][..qn * hd], scores, npad, &v);
                }
            });
        Ok((out.finish(), Shape::from((b, h, n, hd))))
    }

    fn backward(&self, t: Bwd<'_, 1>) -> Grads<1> {
        let (b, n, d, hd) = self.dims(t.args[0].dims())?;
        let h = self.heads;
        let qkv = t.args[0]
            .detach()
            .reshape((b, n, 3, h, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let q = (qkv.get(0)?.contiguous()? * scale)?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let p = candle_nn_softmax(&q.matmul(&k.t()?)?)?;
        let go = t.grad.contiguous()?;
        let dv = p.t()?.matmul(&go)?;
        let dp = go.matmul(&v.t()?)?;
        let ds = (&p * dp.broadcast_sub(&(&dp * &p)?.sum_keepdim(D::Minus1)?)?)?;
        let dq = (ds.matmul(&k)? * scale)?;
        let dk = ds.t()?.matmul(&q)?;
        let g = Tensor::stack(&[dq, dk, dv], 0)? // [3, B, H, N, hd]
            .permute((1, 3, 0, 2, 4))?
            .reshape((b, n, 3 * d))?;
        Ok([Some(g)])
    }
}

/// Softmax over the last dimension on candle's ops (no candle-nn here).
fn candle_nn_softmax(s: &Tensor) -> Result<Tensor> {
    let e = s.broadcast_sub(&s.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rand;
    use candle_core::Var;

    /// The composed attention on candle's ops.
    fn reference(qkv: &Tensor, h: usize) -> Tensor {
        let (b, n, d3) = qkv.dims3().unwrap();
        let hd = d3 / 3 / h;
        let qkv = qkv
            .reshape((b, n, 3, h, hd))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap();
        let q = (qkv.get(0).unwrap().contiguous().unwrap() / (hd as f64).sqrt()).unwrap();
        let k = qkv.get(1).unwrap().contiguous().unwrap();
        let v = qkv.get(2).unwrap().contiguous().unwrap();
        let s = q.matmul(&k.t().unwrap()).unwrap();
        candle_nn_softmax(&s).unwrap().matmul(&v).unwrap()
    }

    /// Values and input gradients against the composed ops, with a token
    /// count that is not whole panels and crosses a query block.
    #[test]
    fn matches_the_composed_ops_and_their_gradient() {
        if !attention_fits(16) {
            eprintln!("SKIPPED: no AVX2 + FMA");
            return;
        }
        for (b, n, h, hd) in [(2, 5, 2, 16), (1, QUERIES + 9, 3, 32)] {
            let x = Var::from_tensor(&(rand(&[b, n, 3 * h * hd], 7) * 0.5).unwrap()).unwrap();
            let ours = attention(x.as_tensor(), h).unwrap();
            let want = reference(x.as_tensor(), h);
            let diff = |a: &Tensor, b: &Tensor| {
                let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
                let s = b
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                d.to_scalar::<f32>().unwrap() / s
            };
            assert!(
                diff(&ours, &want) < 1e-5,
                "values {n}: {}",
                diff(&ours, &want)
            );
            let w = rand(ours.dims(), 8);
            let ga = (&ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&want * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let (ga, gb) = (
                ga.get(x.as_tensor()).unwrap(),
                gb.get(x.as_tensor()).unwrap(),
            );
            assert!(diff(ga, gb) < 1e-5, "gradient {n}: {}", diff(ga, gb));
        }
    }
}
