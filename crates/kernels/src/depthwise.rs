//! EfficientNet-Lite's depthwise convolution + bias + ReLU6 over NHWC:
//! candle's grouped convolution runs one convolution per channel and has
//! no backward pass, and ODIN and Mahalanobis differentiate the network
//! with respect to its input. [`depthwise_composed`] is the same from candle
//! ops for other devices.

use super::op::{apply_f32, gradient, Bwd, Grads, In, Kernel};
use super::simd::fma;
use super::{nhwc_batch, par_rows, Act, ConvRelu6, Geometry};
use candle_core::{Result, Shape, Tensor};
use std::ops::Range;

/// Per kernel offset, its channel weights repeated over enough pixels
/// (`t`) that one `fma` call covers at least 256 values: [k * k, t * c].
pub(super) fn tile_weights(w: &[f32], k: usize, c: usize) -> (Vec<f32>, usize) {
    let t = 256usize.div_ceil(c);
    let mut tiled = Vec::with_capacity(k * k * t * c);
    for wk in w.chunks_exact(c) {
        for _ in 0..t {
            tiled.extend_from_slice(wk);
        }
    }
    (tiled, t * c)
}

/// A run of `dst` (whole pixels) += the same-length run of `src` times the
/// tiled channel weights.
pub(super) fn fma_run(dst: &mut [f32], src: &[f32], tile: &[f32]) {
    for (d, a) in dst.chunks_mut(tile.len()).zip(src.chunks(tile.len())) {
        fma(d, a, tile);
    }
}

/// Input row `row` [w, c] split into its s stride phases, each contiguous:
/// phase p holds pixels p, p + s, p + 2s, ... at `p * stride_len`.
pub(super) fn split_phases(row: &[f32], c: usize, s: usize, out: &mut Vec<f32>) -> usize {
    let w = row.len() / c;
    let per = w.div_ceil(s) * c;
    out.clear();
    out.resize(s * per, 0.0);
    for (x, px) in row.chunks_exact(c).enumerate() {
        let at = (x % s) * per + (x / s) * c;
        out[at..at + c].copy_from_slice(px);
    }
    per
}

/// A depthwise convolution ready to run: geometry, channels, weights tiled
/// by [`tile_weights`] (`tl` values per kernel offset).
pub(super) struct DwPlan {
    g: Geometry,
    c: usize,
    tiled: Vec<f32>,
    tl: usize,
}

impl DwPlan {
    fn new(g: Geometry, c: usize, w: &[f32]) -> Self {
        let (tiled, tl) = tile_weights(w, g.k, c);
        DwPlan { g, c, tiled, tl }
    }

    fn tile(&self, dy: usize, dx: usize) -> &[f32] {
        &self.tiled[(dy * self.g.k + dx) * self.tl..][..self.tl]
    }

    /// Per kernel column `dx` that reads inside the input, `f(dx, outputs,
    /// inputs)`: the ranges of an output row and of the matching input row
    /// split into stride phases of `per` values each (`per` unused for
    /// stride 1), both whole pixels.
    fn taps(&self, per: usize, mut f: impl FnMut(usize, Range<usize>, Range<usize>)) {
        let (g, c) = (&self.g, self.c);
        for dx in 0..g.k {
            let (lo, hi) = g.cols(dx);
            if lo == hi {
                continue;
            }
            let ix = lo * g.s + dx - g.pl;
            let start = (ix % g.s) * per + (ix / g.s) * c;
            f(dx, lo * c..hi * c, start..start + (hi - lo) * c);
        }
    }

    /// Output row `oy` [wo, c] of the convolution + bias, then `act`, of
    /// one image `img` [h, w, c]; `phases` is scratch space.
    fn row(
        &self,
        img: &[f32],
        (b, act): (&[f32], Act),
        oy: usize,
        out: &mut [f32],
        phases: &mut Vec<f32>,
    ) {
        let (g, c) = (&self.g, self.c);
        for px in out.chunks_exact_mut(c) {
            px.copy_from_slice(b);
        }
        for dy in 0..g.k {
            let Some(iy) = g.in_row(oy, dy) else { continue };
            let row = &img[iy * g.w * c..(iy + 1) * g.w * c];
            // A run of output pixels reads every s-th input pixel: one phase.
            let (src, per) = if g.s == 1 {
                (row, 0)
            } else {
                let per = split_phases(row, c, g.s, phases);
                (&phases[..], per)
            };
            self.taps(per, |dx, o, i| {
                fma_run(&mut out[o], &src[i], self.tile(dy, dx))
            });
        }
        act.apply_seq(out);
    }

    /// Input row `iy` [w, c] of the input gradient (the transpose of `row`)
    /// from the gradient before ReLU6 `gpre` [ho, wo, c] of the same image.
    fn grad_row(&self, gpre: &[f32], iy: usize, out: &mut [f32], phases: &mut Vec<f32>) {
        let (g, c) = (&self.g, self.c);
        // Accumulate per stride phase (contiguous runs), interleave at the end.
        let per = g.w.div_ceil(g.s) * c;
        phases.clear();
        phases.resize(g.s * per, 0.0);
        for dy in 0..g.k {
            let Some(oy) = g.out_row(iy, dy) else {
                continue;
            };
            let grow = &gpre[oy * g.wo * c..(oy + 1) * g.wo * c];
            self.taps(per, |dx, o, i| {
                fma_run(&mut phases[i], &grow[o], self.tile(dy, dx))
            });
        }
        for (x, px) in out.chunks_exact_mut(c).enumerate() {
            let at = (x % g.s) * per + (x / g.s) * c;
            px.copy_from_slice(&phases[at..at + c]);
        }
    }
}

/// Depthwise convolution (weights [k, k, C]) + bias + ReLU6 of NHWC f32.
#[derive(Clone)]
pub(super) struct Depthwise(ConvRelu6, Act);

impl Kernel<1> for Depthwise {
    const NAME: &'static str = "nhwc-depthwise";

    fn forward(&self, [In { x, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let ConvRelu6 { g, w, b } = &self.0;
        let (g, c) = (*g, b.len());
        let n = nhwc_batch("depthwise", l, &g, c)?;
        let plane = g.h * g.w * c;
        let plan = DwPlan::new(g, c, w);
        let out = par_rows((n, g.ho, g.wo * c), |i, oy, o, phases| {
            plan.row(&x[i * plane..(i + 1) * plane], (b, self.1), oy, o, phases)
        });
        Ok((out, Shape::from((n, g.ho, g.wo, c))))
    }

    fn backward(&self, t: Bwd<'_, 1>) -> Grads<1> {
        let op = DepthwiseGrad(self.clone());
        Ok([gradient(op, [t.grad, t.res])?])
    }
}

/// d input of [`Depthwise`] from (d output, output).
pub(super) struct DepthwiseGrad(Depthwise);

impl Kernel<2> for DepthwiseGrad {
    const NAME: &'static str = "nhwc-depthwise-grad";

    fn forward(&self, [grad, res]: [In<'_>; 2]) -> Result<(Vec<f32>, Shape)> {
        let gpre = (self.0).1.grad(grad.x, res.x);
        let ConvRelu6 { g, w, b } = &(self.0).0;
        let (g, c, n) = (*g, b.len(), grad.dims()[0]);
        let plane = g.ho * g.wo * c;
        let plan = DwPlan::new(g, c, w);
        let out = par_rows((n, g.h, g.w * c), |i, iy, o, phases| {
            plan.grad_row(&gpre[i * plane..(i + 1) * plane], iy, o, phases)
        });
        Ok((out, Shape::from((n, g.h, g.w, c))))
    }
}

/// Depthwise convolution + bias + ReLU6 of NHWC input on the CPU; weights
/// [k, k, C] and bias [C] as f32. Other float dtypes run in f32.
pub fn depthwise_relu6(x: &Tensor, conv: ConvRelu6) -> Result<Tensor> {
    depthwise(x, conv, Act::Relu6)
}

/// [`depthwise_relu6`] with any activation (`Act::Linear`: the BatchNorm's
/// output, a probe point).
pub fn depthwise(x: &Tensor, conv: ConvRelu6, act: Act) -> Result<Tensor> {
    apply_f32(x, Depthwise(conv, act))
}

/// The same depthwise convolution + bias + ReLU6 from differentiable candle
/// ops (any device, any dtype): the sum over the k x k kernel offsets of
/// strided views of the padded input times per-channel weights. Strides
/// come from viewing the padded input as [B, H/s, s, W/s, s, C] and taking
/// one phase, so no view is copied before its multiply.
pub fn depthwise_composed(x: &Tensor, g: Geometry, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    depthwise_linear(x, g, w, b)?.clamp(0f32, 6f32)
}

/// [`depthwise_composed`] before its ReLU6: the convolution plus bias.
pub fn depthwise_linear(x: &Tensor, g: Geometry, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, _, _, c) = x.dims4()?;
    let (k, s) = (g.k, g.s);
    // Padded extent every (offset, output) pair indexes, a multiple of s.
    let (hp, wp) = (s * (g.ho + (k - 1) / s), s * (g.wo + (k - 1) / s));
    let fit = |t: Tensor, dim: usize, before: usize, len: usize| -> Result<Tensor> {
        let t = t.pad_with_zeros(dim, before, 0)?;
        let have = t.dim(dim)?;
        if have < len {
            t.pad_with_zeros(dim, 0, len - have)
        } else {
            t.narrow(dim, 0, len)
        }
    };
    let xp = fit(fit(x.clone(), 1, g.pt, hp)?, 2, g.pl, wp)?;
    let xp = xp.reshape((n, hp / s, s, wp / s, s, c))?;
    let mut acc = b.reshape((1, 1, 1, c))?.broadcast_as((n, g.ho, g.wo, c))?;
    for dy in 0..k {
        for dx in 0..k {
            let view = xp
                .narrow(2, dy % s, 1)?
                .narrow(4, dx % s, 1)?
                .squeeze(4)?
                .squeeze(2)?
                .narrow(1, dy / s, g.ho)?
                .narrow(2, dx / s, g.wo)?;
            let wk = w
                .narrow(0, dy, 1)?
                .narrow(1, dx, 1)?
                .reshape((1, 1, 1, c))?;
            acc = (acc + view.broadcast_mul(&wk)?)?;
        }
    }
    Ok(acc)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use candle_core::Var;

    #[test]
    fn depthwise_kernels_match_the_definition_and_each_other() {
        check_against_direct(
            (2, 5, 5),
            true,
            (3, 99),
            |x, g, wt, b| depthwise_relu6(x, ConvRelu6::new(g, &arc(wt), &arc(b))).unwrap(),
            |x, g, wt, b| depthwise_composed(x, g, wt, b).unwrap(),
        );
    }

    #[test]
    fn the_linear_kernel_matches_candles_linear_form() {
        let g = geometry(9, 7, 3, 2, 1, 1);
        let (x, wt, b) = (
            rand(&[2, 9, 7, 5], 31),
            rand(&[3, 3, 5], 32),
            rand(&[5], 33),
        );
        let xv = Var::from_tensor(&x).unwrap();
        let ours = depthwise(
            xv.as_tensor(),
            ConvRelu6::new(g, &arc(&wt), &arc(&b)),
            Act::Linear,
        )
        .unwrap();
        let theirs = depthwise_linear(xv.as_tensor(), g, &wt, &b).unwrap();
        assert!(max_diff(&host(&ours), &host(&theirs)) < 1e-5);
        assert!(host(&ours).iter().any(|&v| v < 0.0));
        let r = rand(ours.dims(), 34);
        let grad = |y: &Tensor| {
            let gs = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            host(gs.get(xv.as_tensor()).unwrap())
        };
        assert!(max_diff(&grad(&ours), &grad(&theirs)) < 1e-5);
    }
}
