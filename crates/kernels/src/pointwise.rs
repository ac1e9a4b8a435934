//! 1x1 convolutions: a matrix product over pixels, with the bias, the
//! residual and the activation folded in.

use super::gemm::matmul_acc;
use super::op::{gradient, Bwd, Grads, In, Kernel, Op};
use super::output::{Chunk, Output};
use super::packed;
use super::simd::{self, add};
use super::weights::Weights;
use super::{chunk, Act, ActGrad};
use candle_core::{Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// `dims` with the last (channel) dimension set to `c`.
fn with_channels(dims: &[usize], c: usize) -> Shape {
    let mut out = dims.to_vec();
    *out.last_mut().expect("rank >= 1") = c;
    Shape::from(out)
}

/// Pixels [.., cin] x weight [cin, cout] (+ bias) (+ residual), then the
/// activation. Run directly on gemm (rather than candle's matmul) to fold the bias
/// and residual into the product and, in the backward pass, to skip the
/// weight gradient candle would compute for the constant weights.
pub(super) struct Pointwise {
    w: Weights,
    b: Option<Arc<[f32]>>,
    cout: usize,
    act: Act,
    /// The exact GELU after the activation ([`PointwiseGelu`] only: its
    /// derivative needs the input to it, which the backward pass here,
    /// working from the output, does not have).
    gelu: bool,
}

impl Pointwise {
    /// The op for input `x` [.., cin]: `w` is [cin, cout].
    fn new(x: &Tensor, w: &Weights, b: Option<&Arc<[f32]>>, act: Act, gelu: bool) -> Result<Self> {
        let cin = *x.dims().last().unwrap_or(&0);
        if cin == 0 || !w.len().is_multiple_of(cin) {
            candle_core::bail!("pointwise: {} weights for {cin} input channels", w.len())
        }
        Ok(Pointwise {
            w: w.clone(),
            b: b.cloned(),
            cout: w.len() / cin,
            act,
            gelu,
        })
    }

    fn dims(&self, l: &Layout) -> Result<(usize, usize, Shape)> {
        let (cout, cin) = (self.cout, self.w.len() / self.cout);
        let dims = l.dims();
        if dims.last() != Some(&cin) {
            candle_core::bail!("pointwise: {dims:?} has not {cin} channels")
        }
        Ok((l.shape().elem_count() / cin, cin, with_channels(dims, cout)))
    }

    /// What the product adds to, for the rows of `o` from row `at`.
    fn init<'a>(&self, o: Chunk<'a>, at: usize, residual: Option<&[f32]>) -> &'a mut [f32] {
        match (residual, &self.b) {
            (Some(r), b) => {
                let len = o.len();
                let o = o.copy(&r[at * self.cout..][..len]);
                if let Some(b) = b {
                    for px in o.chunks_exact_mut(self.cout) {
                        add(px, b, false);
                    }
                }
                o
            }
            (None, Some(b)) => o.rows(b),
            (None, None) => o.zeros(),
        }
    }

    /// The output of `rows` rows of `x`, `residual` added when given.
    fn run(&self, x: &[f32], rows: usize, cin: usize, residual: Option<&[f32]>) -> Vec<f32> {
        let cout = self.cout;
        let mut out = Output::new(rows * cout);
        let init = |o, at| self.init(o, at, residual);
        match self.w.packed(cin, cout) {
            // Each block of rows start to end while it is in cache: the
            // initial values, the product, the activation.
            Some(w) => {
                let block = packed::block_rows(rows);
                out.par_chunks(block * cout)
                    .zip(x.par_chunks(block * cin))
                    .enumerate()
                    .for_each(|(i, (o, x))| {
                        let o = init(o, i * block);
                        packed::matmul_block(o, x, cin, w);
                        self.finish(o);
                    });
                out.finish()
            }
            None => {
                out.par_chunks(chunk(cout)).enumerate().for_each(|(i, o)| {
                    init(o, i * chunk(cout) / cout);
                });
                let mut out = out.finish();
                matmul_acc(&mut out, x, &self.w, (rows, cin, cout), cout, 1);
                out.par_chunks_mut(chunk(cout)).for_each(|o| self.finish(o));
                out
            }
        }
    }

    /// The activation (and GELU) over output rows `o`, on this thread.
    fn finish(&self, o: &mut [f32]) {
        self.act.apply_seq(o);
        if self.gelu {
            simd::gelu_in_place(o);
        }
    }

    /// d input from (d output, output).
    fn input_grad(&self, grad: &Tensor, res: &Tensor) -> Result<Option<Tensor>> {
        let op = PointwiseGrad {
            w: self.w.clone(),
            cout: self.cout,
            act: self.act,
        };
        gradient(op, [grad, res])
    }
}

impl Kernel<1> for Pointwise {
    const NAME: &'static str = "nhwc-pointwise";

    fn forward(&self, [In { x, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let (rows, cin, shape) = self.dims(l)?;
        let out = self.run(x, rows, cin, None);
        Ok((out, shape))
    }

    fn backward(&self, t: Bwd<'_, 1>) -> Grads<1> {
        Ok([self.input_grad(t.grad, t.res)?])
    }
}

/// [`Pointwise`] with a residual added before the activation.
pub(super) struct PointwiseResidual(Pointwise);

impl Kernel<2> for PointwiseResidual {
    const NAME: &'static str = "nhwc-pointwise-residual";

    fn forward(&self, [In { x, l }, r]: [In<'_>; 2]) -> Result<(Vec<f32>, Shape)> {
        let (rows, cin, shape) = self.0.dims(l)?;
        if shape.dims() != r.dims() {
            candle_core::bail!("pointwise: residual {:?}, output {shape:?}", r.dims())
        }
        let out = self.0.run(x, rows, cin, Some(r.x));
        Ok((out, shape))
    }

    fn backward(&self, t: Bwd<'_, 2>) -> Grads<2> {
        // The residual's gradient is the one before the activation.
        let residual = match self.0.act {
            Act::Linear => Some(t.grad.clone()),
            act => gradient(ActGrad(act), [t.grad, t.res])?,
        };
        Ok([self.0.input_grad(t.grad, t.res)?, residual])
    }
}

/// d input of [`Pointwise`] from (d output, output): the gradient before
/// the activation times the weight transposed.
pub(super) struct PointwiseGrad {
    w: Weights,
    cout: usize,
    act: Act,
}

impl Kernel<2> for PointwiseGrad {
    const NAME: &'static str = "nhwc-pointwise-grad";

    fn forward(&self, [grad, res]: [In<'_>; 2]) -> Result<(Vec<f32>, Shape)> {
        let gpre = self.act.grad(grad.x, res.x);
        let (cout, cin) = (self.cout, self.w.len() / self.cout);
        let rows = gpre.len() / cout;
        let out = match self.w.packed_transposed(cin, cout) {
            Some(wt) => {
                let block = packed::block_rows(rows);
                let mut out = Output::new(rows * cin);
                out.par_chunks(block * cin)
                    .zip(gpre.par_chunks(block * cout))
                    .for_each(|(o, g)| packed::matmul_block(o.zeros(), g, cout, wt));
                out.finish()
            }
            // w is [cin, cout]; its transpose [cout, cin] has row stride 1.
            None => {
                let mut out = vec![0f32; rows * cin];
                matmul_acc(&mut out, &gpre, &self.w, (rows, cout, cin), 1, cout);
                out
            }
        };
        Ok((out, with_channels(grad.dims(), cin)))
    }
}

/// 1x1 convolution of NHWC `x` on the CPU: weight [cin, cout], bias if
/// any, + `residual` if any, then `act`. Other float dtypes run in f32.
pub fn pointwise(
    x: &Tensor,
    w: &Weights,
    b: Option<&Arc<[f32]>>,
    act: Act,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let f32 = candle_core::DType::F32;
    let x = x.to_dtype(f32)?.contiguous()?;
    let op = Pointwise::new(&x, w, b, act, false)?;
    let out = match residual {
        None => x.apply_op1(Op(op))?,
        Some(r) => x.apply_op2(&r.to_dtype(f32)?.contiguous()?, Op(PointwiseResidual(op)))?,
    };
    out.to_dtype(dtype)
}

/// [`Pointwise`] followed by the exact GELU, per block of rows while it is
/// in cache (ViT's mlp.0; the two apart write and read the whole output
/// once more). Forward only.
struct PointwiseGelu(Pointwise);

impl Kernel<1> for PointwiseGelu {
    const NAME: &'static str = "nhwc-pointwise-gelu";

    fn forward(&self, [In { x, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let (rows, cin, shape) = self.0.dims(l)?;
        Ok((self.0.run(x, rows, cin, None), shape))
    }
}

/// [`pointwise`] with the bias and no activation, then the exact GELU, in
/// one op: the same bits as the two apart. Forward only, so `None` where
/// `x` is tracked for gradients (the caller then runs the two apart).
pub fn pointwise_gelu(x: &Tensor, w: &Weights, b: Option<&Arc<[f32]>>) -> Result<Option<Tensor>> {
    if x.track_op() || x.dtype() != candle_core::DType::F32 {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let op = Pointwise::new(&x, w, b, Act::Linear, true)?;
    x.apply_op1(Op(PointwiseGelu(op))).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use candle_core::Var;

    #[test]
    fn pointwise_matches_candle_with_gradients() {
        // cout 7 runs on gemm, 32 on the packed kernel; the input gradient
        // takes the packed kernel when cin is 16 as well.
        let cases = [
            (Act::Relu6, false, 7),
            (Act::Linear, false, 7),
            (Act::Linear, true, 7),
            (Act::Relu6, false, 32),
            (Act::Linear, true, 32),
            (Act::Relu, true, 32),
            (Act::Relu, false, 7),
        ];
        for ((act, residual, cout), cin) in cases.into_iter().flat_map(|c| [(c, 5), (c, 16)]) {
            let x = Var::from_tensor(&rand(&[3, 4, 6, cin], 21)).unwrap();
            let r = Var::from_tensor(&rand(&[3, 4, 6, cout], 22)).unwrap();
            let w = (rand(&[cin, cout], 23) * 2.0).unwrap();
            let b = rand(&[cout], 24);
            let res = residual.then_some(r.as_tensor());
            let ours = pointwise(x.as_tensor(), &arc(&w).into(), Some(&arc(&b)), act, res).unwrap();
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
            let y = if residual {
                (y + r.as_tensor()).unwrap()
            } else {
                y
            };
            let theirs = match act {
                Act::Relu6 => y.clamp(0f32, 6f32).unwrap(),
                Act::Relu => y.relu().unwrap(),
                Act::Linear => y,
            };
            assert!(max_diff(&host(&ours), &host(&theirs)) < 1e-5);
            if act == Act::Relu6 {
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

    /// The fused GELU gives the bits of the two ops apart, on the packed
    /// kernel (32 columns) and on gemm (7); a tracked input is left to them.
    #[test]
    fn pointwise_gelu_equals_pointwise_then_gelu() {
        for cout in [32, 7] {
            let x = rand(&[2, 5, 24], 1);
            let w = Weights::new(arc(&rand(&[24, cout], 2)));
            let b = arc(&rand(&[cout], 3));
            let fused = pointwise_gelu(&x, &w, Some(&b)).unwrap().unwrap();
            let linear = pointwise(&x, &w, Some(&b), Act::Linear, None).unwrap();
            let apart = crate::gelu_erf(&linear).unwrap();
            assert_eq!(host(&fused), host(&apart), "cout {cout}");
            let v = Var::from_tensor(&x).unwrap();
            assert!(pointwise_gelu(v.as_tensor(), &w, Some(&b))
                .unwrap()
                .is_none());
        }
    }

    /// ResNet-50's stage-1 last 1x1 (64 -> 256, + residual, ReLU) at
    /// batch 8, one thread, each part apart:
    /// `cargo test --release -p gradnorm-kernels bench_residual -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_residual() {
        let (rows, cin, cout) = (8 * 56 * 56, 64, 256);
        let x = rand(&[8, 56, 56, cin], 1);
        let r = rand(&[8, 56, 56, cout], 2);
        let w = Weights::new(arc(&rand(&[cin, cout], 3)));
        let b = arc(&rand(&[cout], 4));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            let time = |what: &str, f: &mut dyn FnMut()| {
                f();
                let t = std::time::Instant::now();
                for _ in 0..5 {
                    f();
                }
                eprintln!(
                    "{what}: {:.2} ms/img",
                    t.elapsed().as_secs_f64() * 1e3 / 40.0
                );
            };
            time("pointwise + residual + relu", &mut || {
                pointwise(&x, &w, Some(&b), Act::Relu, Some(&r)).unwrap();
            });
            time("pointwise + relu", &mut || {
                pointwise(&x, &w, Some(&b), Act::Relu, None).unwrap();
            });
            let (xs, packed) = (host(&x), w.packed(cin, cout).unwrap());
            time("product alone", &mut || {
                let mut out = vec![0f32; rows * cout];
                packed::matmul_block(&mut out, &xs, cin, packed);
            });
        });
    }
}
