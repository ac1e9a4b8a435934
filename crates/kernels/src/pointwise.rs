//! 1x1 convolutions: a matrix product over pixels, with the bias, ReLU6 or
//! the residual folded in, in one parallel pass.

use super::depthwise::tile_weights;
use super::gemm::matmul_acc;
use super::op::{gradient, Bwd, Grads, In, Kernel, Op};
use super::packed::{self, PackedB};
use super::simd::{add, relu6};
use super::{chunk, relu6_grad};
use candle_core::{Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// `dims` with the last (channel) dimension set to `c`.
fn with_channels(dims: &[usize], c: usize) -> Shape {
    let mut out = dims.to_vec();
    *out.last_mut().expect("rank >= 1") = c;
    Shape::from(out)
}

/// Pixels [.., cin] x weight [cin, cout] (+ bias) (+ residual), ReLU6 if
/// asked. Run directly on gemm (rather than candle's matmul) to fold the bias
/// and residual into the product and, in the backward pass, to skip the
/// weight gradient candle would compute for the constant weights.
pub(super) struct Pointwise {
    w: Arc<[f32]>,
    b: Option<Arc<[f32]>>,
    cout: usize,
    relu6: bool,
}

impl Pointwise {
    fn dims(&self, l: &Layout) -> Result<(usize, usize, Shape)> {
        let (cout, cin) = (self.cout, self.w.len() / self.cout);
        let dims = l.dims();
        if dims.last() != Some(&cin) {
            candle_core::bail!("pointwise: {dims:?} has not {cin} channels")
        }
        Ok((l.shape().elem_count() / cin, cin, with_channels(dims, cout)))
    }

    /// `out` holds the residual (or anything when `residual` is false).
    fn run(
        &self,
        x: &[f32],
        rows: usize,
        cin: usize,
        mut out: Vec<f32>,
        residual: bool,
    ) -> Vec<f32> {
        let cout = self.cout;
        // Without a bias `out` already holds what the product adds to.
        if let Some(b) = &self.b {
            let (tile, _) = tile_weights(b, 1, cout);
            out.par_chunks_mut(chunk(tile.len())).for_each(|o| {
                for o in o.chunks_mut(tile.len()) {
                    if residual {
                        add(o, &tile, false);
                    } else {
                        o.copy_from_slice(&tile[..o.len()]);
                    }
                }
            });
        }
        match PackedB::new(&self.w, cin, cout) {
            Some(w) => packed::matmul(&mut out, x, &w),
            None => matmul_acc(&mut out, x, &self.w, (rows, cin, cout), cout, 1),
        }
        if self.relu6 {
            out.par_chunks_mut(8192).for_each(relu6);
        }
        out
    }

    /// d input from (d output, output).
    fn input_grad(&self, grad: &Tensor, res: &Tensor) -> Result<Option<Tensor>> {
        let op = PointwiseGrad {
            w: self.w.clone(),
            cout: self.cout,
            relu6: self.relu6,
        };
        gradient(op, [grad, res])
    }
}

impl Kernel<1> for Pointwise {
    const NAME: &'static str = "nhwc-pointwise";

    fn forward(&self, [In { x, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let (rows, cin, shape) = self.dims(l)?;
        let out = self.run(x, rows, cin, vec![0f32; rows * self.cout], false);
        Ok((out, shape))
    }

    fn backward(&self, t: Bwd<'_, 1>) -> Grads<1> {
        Ok([self.input_grad(t.grad, t.res)?])
    }
}

/// [`Pointwise`] with a residual added (and no ReLU6).
pub(super) struct PointwiseResidual(Pointwise);

impl Kernel<2> for PointwiseResidual {
    const NAME: &'static str = "nhwc-pointwise-residual";

    fn forward(&self, [In { x, l }, r]: [In<'_>; 2]) -> Result<(Vec<f32>, Shape)> {
        let (rows, cin, shape) = self.0.dims(l)?;
        if shape.dims() != r.dims() {
            candle_core::bail!("pointwise: residual {:?}, output {shape:?}", r.dims())
        }
        let out = self.0.run(x, rows, cin, r.x.to_vec(), true);
        Ok((out, shape))
    }

    fn backward(&self, t: Bwd<'_, 2>) -> Grads<2> {
        Ok([self.0.input_grad(t.grad, t.res)?, Some(t.grad.clone())])
    }
}

/// d input of [`Pointwise`] from (d output, output): the gradient before
/// ReLU6 times the weight transposed.
pub(super) struct PointwiseGrad {
    w: Arc<[f32]>,
    cout: usize,
    relu6: bool,
}

impl Kernel<2> for PointwiseGrad {
    const NAME: &'static str = "nhwc-pointwise-grad";

    fn forward(&self, [grad, res]: [In<'_>; 2]) -> Result<(Vec<f32>, Shape)> {
        let gpre = if self.relu6 {
            relu6_grad(grad.x, res.x)
        } else {
            grad.x.to_vec()
        };
        let (cout, cin) = (self.cout, self.w.len() / self.cout);
        let rows = gpre.len() / cout;
        let mut out = vec![0f32; rows * cin];
        // w is [cin, cout]; its transpose [cout, cin] has row stride 1.
        matmul_acc(&mut out, &gpre, &self.w, (rows, cout, cin), 1, cout);
        Ok((out, with_channels(grad.dims(), cin)))
    }
}
/// 1x1 convolution of NHWC `x` on the CPU: weight [cin, cout], bias if
/// any, then ReLU6 or + `residual`. Other float dtypes run in f32.
pub fn pointwise(
    x: &Tensor,
    w: &Arc<[f32]>,
    b: Option<&Arc<[f32]>>,
    relu6: bool,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let f32 = candle_core::DType::F32;
    let x = x.to_dtype(f32)?.contiguous()?;
    let cin = *x.dims().last().unwrap_or(&0);
    if cin == 0 || !w.len().is_multiple_of(cin) {
        candle_core::bail!("pointwise: {} weights for {cin} input channels", w.len())
    }
    let op = Pointwise {
        w: w.clone(),
        b: b.cloned(),
        cout: w.len() / cin,
        relu6,
    };
    let out = match residual {
        None => x.apply_op1(Op(op))?,
        Some(_) if relu6 => candle_core::bail!("pointwise: ReLU6 with a residual"),
        Some(r) => x.apply_op2(&r.to_dtype(f32)?.contiguous()?, Op(PointwiseResidual(op)))?,
    };
    out.to_dtype(dtype)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use candle_core::Var;

    #[test]
    fn pointwise_matches_candle_with_gradients() {
        // cout 7 runs on gemm, 32 on the packed kernel.
        for (relu6, residual, cout) in [
            (true, false, 7),
            (false, false, 7),
            (false, true, 7),
            (true, false, 32),
            (false, true, 32),
        ] {
            let cin = 5;
            let x = Var::from_tensor(&rand(&[3, 4, 6, cin], 21)).unwrap();
            let r = Var::from_tensor(&rand(&[3, 4, 6, cout], 22)).unwrap();
            let w = (rand(&[cin, cout], 23) * 2.0).unwrap();
            let b = rand(&[cout], 24);
            let res = residual.then_some(r.as_tensor());
            let ours = pointwise(x.as_tensor(), &arc(&w), Some(&arc(&b)), relu6, res).unwrap();
            let y = x
                .as_tensor()
                .reshape((72, cin))
                .unwrap()
                .matmul(&w)
                .unwrap()
                .reshape((3, 4, 6, cout))
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let theirs = match (relu6, residual) {
                (true, _) => y.clamp(0f32, 6f32).unwrap(),
                (false, true) => (y + r.as_tensor()).unwrap(),
                (false, false) => y,
            };
            assert!(max_diff(&host(&ours), &host(&theirs)) < 1e-5);
            if relu6 {
                let v = host(&ours);
                assert!(v.contains(&0.0) && v.contains(&6.0));
            }
            let weights = rand(ours.dims(), 25);
            let grads = |y: &Tensor| {
                let gs = (y * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let gr = gs.get(r.as_tensor()).map(host);
                (host(gs.get(x.as_tensor()).unwrap()), gr)
            };
            let ((gx, gr), (tx, tr)) = (grads(&ours), grads(&theirs));
            assert!(max_diff(&gx, &tx) < 1e-5);
            assert_eq!(gr.is_some(), residual);
            if let (Some(gr), Some(tr)) = (gr, tr) {
                assert!(max_diff(&gr, &tr) < 1e-6);
            }
        }
    }
}
