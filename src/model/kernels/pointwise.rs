//! 1x1 convolutions: a matrix product over pixels, with the bias, ReLU6 or
//! the residual folded in, in one parallel pass.

use super::depthwise::tile_weights;
use super::gemm::matmul_acc;
use super::packed::{self, PackedB};
use super::simd::{add, relu6};
use super::{chunk, f32_slice, relu6_grad};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;
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
        let mut out = dims.to_vec();
        *out.last_mut().expect("rank >= 1") = cout;
        Ok((l.shape().elem_count() / cin, cin, Shape::from(out)))
    }

    /// `out` holds the residual (or anything when `residual` is false).
    fn forward(
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

    fn backward(&self, grad: &Tensor, res: &Tensor) -> Result<Tensor> {
        let op = PointwiseGrad {
            w: self.w.clone(),
            cout: self.cout,
            relu6: self.relu6,
        };
        grad.contiguous()?.apply_op2_no_bwd(&res.contiguous()?, &op)
    }
}

impl CustomOp1 for Pointwise {
    fn name(&self) -> &'static str {
        "nhwc-pointwise"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let (rows, cin, shape) = self.dims(l)?;
        let out = self.forward(x, rows, cin, vec![0f32; rows * self.cout], false);
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, _: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.backward(grad, res)?))
    }
}

/// [`Pointwise`] with a residual added (and no ReLU6).
pub(super) struct PointwiseResidual(Pointwise);

impl CustomOp2 for PointwiseResidual {
    fn name(&self) -> &'static str {
        "nhwc-pointwise-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let r = f32_slice(s2, l2, self.name())?;
        let (rows, cin, shape) = self.0.dims(l1)?;
        if shape.dims() != l2.dims() {
            candle_core::bail!("pointwise: residual {:?}, output {shape:?}", l2.dims())
        }
        let out = self.0.forward(x, rows, cin, r.to_vec(), true);
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.0.backward(grad, res)?), Some(grad.clone())))
    }
}

/// d input of [`Pointwise`] from (d output, output): the gradient before
/// ReLU6 times the weight transposed.
pub(super) struct PointwiseGrad {
    w: Arc<[f32]>,
    cout: usize,
    relu6: bool,
}

impl CustomOp2 for PointwiseGrad {
    fn name(&self) -> &'static str {
        "nhwc-pointwise-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let grad = f32_slice(s1, l1, self.name())?;
        let gpre = if self.relu6 {
            relu6_grad(grad, f32_slice(s2, l2, self.name())?)
        } else {
            grad.to_vec()
        };
        let (cout, cin) = (self.cout, self.w.len() / self.cout);
        let rows = gpre.len() / cout;
        let mut out = vec![0f32; rows * cin];
        // w is [cin, cout]; its transpose [cout, cin] has row stride 1.
        matmul_acc(&mut out, &gpre, &self.w, (rows, cout, cin), 1, cout);
        let mut dims = l1.dims().to_vec();
        *dims.last_mut().expect("rank >= 1") = cin;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}
/// 1x1 convolution of NHWC `x` on the CPU: weight [cin, cout], bias if
/// any, then ReLU6 or + `residual`. Other float dtypes run in f32.
pub(crate) fn pointwise(
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
        None => x.apply_op1(op)?,
        Some(_) if relu6 => candle_core::bail!("pointwise: ReLU6 with a residual"),
        Some(r) => x.apply_op2(&r.to_dtype(f32)?.contiguous()?, PointwiseResidual(op))?,
    };
    out.to_dtype(dtype)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::testing::*;
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
