//! Dense k x k convolutions over NHWC: EfficientNet-Lite's stem (NCHW
//! image in, NHWC out, + bias + ReLU6, saving candle's im2col and two layout
//! copies) and BiT's convolutions as im2col blocks on gemm.

use super::gemm::{matmul_acc, matmul_acc_par};
use super::op::{apply_f32, gradient, Bwd, Grads, In, Kernel};
use super::output::Output;
use super::packed::{self, matmul_block};
use super::simd::{add, gemv, relu6};
use super::weights::Weights;
use super::winograd;
use super::{chunk, nhwc_batch, par_rows, relu6_grad, Act, ActGrad, ConvRelu6, Geometry};
use candle_core::{Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Dense convolution of an NCHW image (cin channels) to NHWC + bias + ReLU6;
/// weights [k, k, cin, cout].
#[derive(Clone)]
pub(super) struct Stem {
    conv: ConvRelu6,
    cin: usize,
}

impl Kernel<1> for Stem {
    const NAME: &'static str = "nhwc-stem-relu6";

    fn forward(&self, [In { x, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let ConvRelu6 { g, w: wt, b } = &self.conv;
        let (g, cin, cout) = (*g, self.cin, b.len());
        let &[n, xc, h, w] = l.dims() else {
            candle_core::bail!("stem: expected [B, C, H, W], got {:?}", l.dims())
        };
        if (xc, h, w) != (cin, g.h, g.w) {
            candle_core::bail!(
                "stem: input {:?} does not fit {g:?}, {cin} channels",
                l.dims()
            )
        }
        let (row, m) = (g.wo * cout, g.k * g.k * cin);
        let out = par_rows((n, g.ho, row), |i, oy, o, patches| {
            let img = &x[i * cin * h * w..(i + 1) * cin * h * w];
            // The row's receptive fields [wo, (dy, dx, ci)], zero outside.
            patches.clear();
            patches.resize(g.wo * m, 0.0);
            for dy in 0..g.k {
                let Some(iy) = g.in_row(oy, dy) else { continue };
                for dx in 0..g.k {
                    let (lo, hi) = g.cols(dx);
                    for ci in 0..cin {
                        let xrow = &img[(ci * h + iy) * w..(ci * h + iy + 1) * w];
                        let j = (dy * g.k + dx) * cin + ci;
                        for ox in lo..hi {
                            patches[ox * m + j] = xrow[ox * g.s + dx - g.pl];
                        }
                    }
                }
            }
            for (px, p) in o.chunks_exact_mut(cout).zip(patches.chunks_exact(m)) {
                px.copy_from_slice(b);
                gemv(px, p, wt);
            }
            relu6(o);
        });
        Ok((out, Shape::from((n, g.ho, g.wo, cout))))
    }

    fn backward(&self, t: Bwd<'_, 1>) -> Grads<1> {
        let op = StemGrad {
            stem: self.clone(),
            n: t.args[0].dim(0)?,
        };
        Ok([gradient(op, [t.grad, t.res])?])
    }
}

/// d input of [`Stem`] from (d output, output), NCHW.
pub(super) struct StemGrad {
    stem: Stem,
    n: usize,
}

impl Kernel<2> for StemGrad {
    const NAME: &'static str = "nhwc-stem-relu6-grad";

    fn forward(&self, [grad, res]: [In<'_>; 2]) -> Result<(Vec<f32>, Shape)> {
        let gpre = relu6_grad(grad.x, res.x);
        let Stem { conv, cin } = &self.stem;
        let (g, cin, cout) = (conv.g, *cin, conv.b.len());
        let (plane, image) = (g.ho * g.wo * cout, cin * g.h * g.w);
        let mut out = vec![0f32; self.n * image];
        // One image per task: every output pixel scatters into cin rows.
        out.par_chunks_mut(image).enumerate().for_each(|(i, gx)| {
            let gp = &gpre[i * plane..(i + 1) * plane];
            for oy in 0..g.ho {
                for dy in 0..g.k {
                    let Some(iy) = g.in_row(oy, dy) else { continue };
                    for dx in 0..g.k {
                        let (lo, hi) = g.cols(dx);
                        for ox in lo..hi {
                            let ix = ox * g.s + dx - g.pl;
                            let gv = &gp[(oy * g.wo + ox) * cout..][..cout];
                            for ci in 0..cin {
                                let wk = &conv.w[((dy * g.k + dx) * cin + ci) * cout..][..cout];
                                let dot: f32 = gv.iter().zip(wk).map(|(a, b)| a * b).sum();
                                gx[(ci * g.h + iy) * g.w + ix] += dot;
                            }
                        }
                    }
                }
            }
        });
        Ok((out, Shape::from((self.n, cin, g.h, g.w))))
    }
}

/// The stem convolution + bias + ReLU6 on the CPU: NCHW image in, NHWC out;
/// weights [k, k, cin, cout]. Other float dtypes run in f32.
pub fn stem_relu6(x: &Tensor, conv: ConvRelu6) -> Result<Tensor> {
    let op = Stem {
        conv,
        cin: x.dim(1)?,
    };
    apply_f32(x, op)
}

/// Output pixels per im2col block: patches of about 4 MB, and at least one
/// block per thread.
pub(super) fn block_rows(m: usize, patch: usize) -> usize {
    let cap = ((1usize << 20) / patch.max(1)).max(16);
    let per_thread = m.div_ceil(rayon::current_num_threads()).max(1);
    cap.min(per_thread)
}

/// Dense k x k convolution of NHWC f32: weights [k, k, cin, cout] (rows
/// (dy, dx, ci)), then the bias and the activation. Blocks of output pixels
/// are unfolded into their receptive fields (im2col) and multiplied on
/// gemm, a block per task.
#[derive(Clone)]
pub(super) struct Conv {
    g: Geometry,
    cin: usize,
    cout: usize,
    w: Weights,
    b: Option<Arc<[f32]>>,
    act: Act,
}

impl Conv {
    /// The bias and the activation over output pixels `o`, on this thread.
    fn epilogue(&self, o: &mut [f32]) {
        if let Some(b) = &self.b {
            for px in o.chunks_exact_mut(self.cout) {
                add(px, b, false);
            }
        }
        self.act.apply_seq(o);
    }

    fn patch_len(&self) -> usize {
        self.g.k * self.g.k * self.cin
    }

    /// The receptive field of output pixel (oy, ox) of image `img` [h, w,
    /// cin] as one row [(dy, dx, ci)], zeros outside.
    fn patch(&self, img: &[f32], oy: usize, ox: usize, dst: &mut [f32]) {
        let (g, cin) = (&self.g, self.cin);
        let run = g.k * cin;
        for (dy, row) in dst.chunks_exact_mut(run).enumerate() {
            let Some(iy) = g.in_row(oy, dy) else {
                row.fill(0.0);
                continue;
            };
            let src = &img[iy * g.w * cin..(iy + 1) * g.w * cin];
            let x0 = (ox * g.s) as isize - g.pl as isize;
            if x0 >= 0 && x0 as usize + g.k <= g.w {
                // The k pixels of a kernel row are contiguous in NHWC.
                row.copy_from_slice(&src[x0 as usize * cin..][..run]);
                continue;
            }
            for (dx, px) in row.chunks_exact_mut(cin).enumerate() {
                let ix = x0 + dx as isize;
                if ix >= 0 && (ix as usize) < g.w {
                    px.copy_from_slice(&src[ix as usize * cin..][..cin]);
                } else {
                    px.fill(0.0);
                }
            }
        }
    }
}

impl Kernel<1> for Conv {
    const NAME: &'static str = "nhwc-conv";

    fn forward(&self, [In { x, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let (g, cin, cout) = (self.g, self.cin, self.cout);
        let n = nhwc_batch("conv", l, &g, cin)?;
        let (plane, pixels, kk) = (g.h * g.w * cin, g.ho * g.wo, self.patch_len());
        let m = n * pixels;
        if winograd::applies(&g, cin, cout) {
            if let Some(t) = self.w.winograd(cin, cout) {
                // The epilogue per band of rows, while it is in cache.
                let out = winograd::conv3x3(x, &g, n, t, &|o| self.epilogue(o));
                return Ok((out, Shape::from((n, g.ho, g.wo, cout))));
            }
        }
        let packed = self.w.packed(kk, cout);
        let rows = match packed {
            // Blocks the packed kernel takes whole (its rows x KC in L2).
            Some(_) => packed::block_rows(m),
            None => block_rows(m, kk),
        };
        let mut out = Output::new(m * cout);
        out.par_chunks(rows * cout)
            .enumerate()
            .for_each_init(Vec::new, |patches, (b, o)| {
                let count = o.len() / cout;
                patches.resize(count * kk, 0.0);
                for (r, dst) in patches.chunks_exact_mut(kk).enumerate() {
                    let at = b * rows + r;
                    let (i, q) = (at / pixels, at % pixels);
                    self.patch(&x[i * plane..][..plane], q / g.wo, q % g.wo, dst);
                }
                match &packed {
                    // The bias and activation while the block is in cache.
                    Some(w) => {
                        let o = match &self.b {
                            Some(b) => o.rows(b),
                            None => o.zeros(),
                        };
                        matmul_block(o, patches, kk, w);
                        self.act.apply_seq(o);
                    }
                    None => {
                        let none = gemm::Parallelism::None;
                        let o = o.zeros();
                        matmul_acc_par(o, patches, &self.w, (count, kk, cout), cout, 1, none)
                    }
                }
            });
        let mut out = out.finish();
        if packed.is_none() {
            out.par_chunks_mut(chunk(cout))
                .for_each(|o| self.epilogue(o));
        }
        Ok((out, Shape::from((n, g.ho, g.wo, cout))))
    }

    fn backward(&self, t: Bwd<'_, 1>) -> Grads<1> {
        let op = ConvGrad {
            conv: self.clone(),
            n: t.args[0].dim(0)?,
        };
        let grad = match self.act {
            Act::Linear => None,
            act => gradient(ActGrad(act), [t.grad, t.res])?,
        };
        Ok([gradient(op, [grad.as_ref().unwrap_or(t.grad)])?])
    }
}

/// d input of [`Conv`] from d output: per image, the gradient of every
/// receptive field (d output x weight transposed, one gemm), then each input
/// row sums the fields that read it.
pub(super) struct ConvGrad {
    conv: Conv,
    n: usize,
}

impl Kernel<1> for ConvGrad {
    const NAME: &'static str = "nhwc-conv-grad";

    fn forward(&self, [In { x: grad, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let Conv { g, cin, cout, .. } = self.conv;
        let (pixels, kk) = (g.ho * g.wo, self.conv.patch_len());
        if grad.len() != self.n * pixels * cout {
            candle_core::bail!("conv grad: {:?} does not fit {g:?}", l.dims())
        }
        let plane = g.h * g.w * cin;
        let mut out = vec![0f32; self.n * plane];
        let mut fields = vec![0f32; pixels * kk];
        for (i, img) in out.chunks_exact_mut(plane).enumerate() {
            fields.fill(0.0);
            let gi = &grad[i * pixels * cout..][..pixels * cout];
            // w is [kk, cout]; its transpose [cout, kk] has row stride 1.
            matmul_acc(&mut fields, gi, &self.conv.w, (pixels, cout, kk), 1, cout);
            let fields = &fields;
            img.par_chunks_mut(g.w * cin)
                .enumerate()
                .for_each(|(iy, row)| {
                    for dy in 0..g.k {
                        let Some(oy) = g.out_row(iy, dy) else {
                            continue;
                        };
                        for dx in 0..g.k {
                            let (lo, hi) = g.cols(dx);
                            for ox in lo..hi {
                                let ix = ox * g.s + dx - g.pl;
                                let src = &fields[(oy * g.wo + ox) * kk + (dy * g.k + dx) * cin..];
                                add(&mut row[ix * cin..][..cin], &src[..cin], false);
                            }
                        }
                    }
                });
        }
        Ok((out, Shape::from((self.n, g.h, g.w, cin))))
    }
}

/// Dense convolution of NHWC `x` on the CPU: geometry `g`, weights [k, k,
/// cin, cout], then the bias [cout] if any and `act`; differentiable with
/// respect to `x`. Other float dtypes run in f32.
pub fn conv(
    x: &Tensor,
    g: Geometry,
    w: &Weights,
    b: Option<&Arc<[f32]>>,
    act: Act,
) -> Result<Tensor> {
    let cin = x.dim(3)?;
    let patch = g.k * g.k * cin;
    if !w.len().is_multiple_of(patch) {
        candle_core::bail!("conv: {} weights for patches of {patch}", w.len())
    }
    let cout = w.len() / patch;
    if let Some(b) = b.filter(|b| b.len() != cout) {
        candle_core::bail!("conv: {} biases for {cout} output channels", b.len())
    }
    let op = Conv {
        g,
        cin,
        cout,
        w: w.clone(),
        b: b.cloned(),
        act,
    };
    apply_f32(x, op)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use candle_core::Var;

    #[test]
    fn stem_kernel_matches_the_definition_and_candles_conv() {
        let theirs = |x: &Tensor, g: Geometry, wt: &Tensor, b: &Tensor| {
            // candle's (differentiable) conv2d on the explicitly padded input.
            let (hp, wp) = ((g.ho - 1) * g.s + g.k, (g.wo - 1) * g.s + g.k);
            let xp = x
                .pad_with_zeros(2, g.pt, hp - g.h - g.pt)
                .unwrap()
                .pad_with_zeros(3, g.pl, wp - g.w - g.pl)
                .unwrap();
            let oihw = wt.permute((3, 2, 0, 1)).unwrap().contiguous().unwrap();
            xp.conv2d(&oihw, 0, g.s, 1, 1)
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap()
                .broadcast_add(b)
                .unwrap()
                .clamp(0f32, 6f32)
                .unwrap()
        };
        check_against_direct(
            (2, 3, 4),
            false,
            (5, 7),
            |x, g, wt, b| stem_relu6(x, ConvRelu6::new(g, &arc(wt), &arc(b))).unwrap(),
            theirs,
        );
    }

    #[test]
    fn dense_conv_matches_candle_conv2d_with_gradients() {
        // (h, w, cin, cout, k, s, p): BiT's stem, 3x3 with and without
        // stride, strided 1x1; odd and even sizes. (candle's conv2d backward
        // mis-sizes strided gradients of non-square inputs: those are square.)
        for (i, &(h, w, cin, cout, k, s, p)) in [
            (11, 11, 3, 5, 7, 2, 3),
            (6, 7, 4, 6, 3, 1, 1),
            (7, 7, 4, 6, 3, 2, 1),
            (8, 8, 4, 6, 3, 2, 1),
            (7, 7, 5, 3, 1, 2, 0),
            // Channels the packed kernel takes (cout % 16 == 0): Winograd
            // for stride-1 3x3 (odd and even sizes, partial edge tiles),
            // im2col blocks on the packed kernel otherwise.
            (6, 7, 8, 16, 3, 1, 1),
            (9, 9, 16, 32, 3, 1, 1),
            (8, 8, 8, 16, 3, 2, 1),
            (7, 7, 8, 32, 1, 2, 0),
        ]
        .iter()
        .enumerate()
        {
            let x = Var::from_tensor(&rand(&[2, h, w, cin], 41 + i as u64)).unwrap();
            let oihw = rand(&[cout, cin, k, k], 51 + i as u64);
            let hwio = oihw.permute((2, 3, 1, 0)).unwrap();
            let g = Geometry::symmetric(h, w, k, s, p).unwrap();
            // Every other case with a bias and a ReLU folded in.
            let (b, act) = match i % 2 {
                0 => (None, Act::Linear),
                _ => (Some(rand(&[cout], 61 + i as u64)), Act::Relu),
            };
            let ours = input_grad(&x, |x| {
                conv(x, g, &arc(&hwio).into(), b.as_ref().map(arc).as_ref(), act).unwrap()
            });
            let theirs = input_grad(&x, |x| {
                let y = x
                    .permute((0, 3, 1, 2))
                    .unwrap()
                    .conv2d(&oihw, p, s, 1, 1)
                    .unwrap()
                    .permute((0, 2, 3, 1))
                    .unwrap();
                match &b {
                    Some(b) => y.broadcast_add(b).unwrap().relu().unwrap(),
                    None => y,
                }
            });
            assert!(max_diff(&ours.0, &theirs.0) < 1e-4, "case {i}: values");
            assert!(max_diff(&ours.1, &theirs.1) < 1e-4, "case {i}: gradients");
            if act == Act::Relu {
                assert!(ours.0.contains(&0.0), "case {i}: the ReLU clips");
            }
        }
    }

    /// ResNet's stem (7x7/2, 3 -> 64) at batch 8, wall time per image with
    /// one and with two threads:
    /// `cargo test --release -p gradnorm-kernels bench_stem -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_stem() {
        let x = Tensor::rand(-1f32, 1., (8, 224, 224, 3), &candle_core::Device::Cpu).unwrap();
        let g = Geometry::symmetric(224, 224, 7, 2, 3).unwrap();
        let w = Weights::new(
            Tensor::rand(-1f32, 1., 147 * 64, &candle_core::Device::Cpu)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into(),
        );
        let b: Arc<[f32]> = vec![0.1f32; 64].into();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                conv(&x, g, &w, Some(&b), Act::Relu).unwrap();
                let t = std::time::Instant::now();
                for _ in 0..5 {
                    conv(&x, g, &w, Some(&b), Act::Relu).unwrap();
                }
                eprintln!(
                    "{threads} threads: {:.2} ms/img",
                    t.elapsed().as_secs_f64() * 1e3 / 40.0
                );
            });
        }
    }
}
