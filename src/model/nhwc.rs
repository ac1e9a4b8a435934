//! Channels-last ([B, H, W, C]) CPU kernels, each a candle custom op with
//! its input-gradient backward pass (weights are constants at inference, so
//! no weight gradient is produced).
//!
//! For EfficientNet-Lite:
//! - the depthwise convolution + bias + ReLU6: candle's grouped convolution
//!   runs one convolution per channel and has no backward pass, and ODIN
//!   and Mahalanobis differentiate the network with respect to its input;
//! - the stem convolution (NCHW image in, NHWC out) + bias + ReLU6, which
//!   saves candle's im2col and two layout copies;
//! - bias + ReLU6 and bias + residual after a 1x1 convolution, one parallel
//!   pass instead of two or three single-threaded ones.
//!
//! For BiT (ResNetV2):
//! - GroupNorm + ReLU in one parallel op (candle_nn's GroupNorm is eight
//!   tensor ops, each a pass over memory, and ReLU a ninth);
//! - dense k x k convolutions as im2col blocks on gemm, and 1x1 convolutions
//!   (no bias, the residual added in the product) on [`pointwise`];
//! - the stem's zero-padded 3x3 max-pool.
//!
//! The kernels are f32 and parallel (rayon). [`depthwise_composed`] is the
//! same depthwise convolution from candle ops for other devices.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Where a k x k convolution of stride s reads: input h x w, padding before
/// (pt, pl), output ho x wo. Padding after is whatever makes ho x wo fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub s: usize,
    pub pt: usize,
    pub pl: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geometry {
    /// The input row read by output row `oy` at kernel row `dy`, if inside.
    fn in_row(&self, oy: usize, dy: usize) -> Option<usize> {
        (oy * self.s + dy)
            .checked_sub(self.pt)
            .filter(|&r| r < self.h)
    }

    /// The output columns [lo, hi) whose kernel column `dx` falls inside the
    /// input (input column ox * s + dx - pl).
    fn cols(&self, dx: usize) -> (usize, usize) {
        let lo = (self.pl.saturating_sub(dx)).div_ceil(self.s);
        let hi = match (self.w - 1 + self.pl).checked_sub(dx) {
            Some(m) => (m / self.s + 1).min(self.wo),
            None => 0,
        };
        (lo, hi.max(lo))
    }

    /// The output row reading input row `iy` at kernel row `dy`, if any.
    fn out_row(&self, iy: usize, dy: usize) -> Option<usize> {
        let t = (iy + self.pt).checked_sub(dy)?;
        (t % self.s == 0 && t / self.s < self.ho).then_some(t / self.s)
    }
}

/// `dst[i] += a[i] * k[i]`. The kernels spend their time here, so on
/// x86-64 with AVX2 and FMA it is explicit 8-wide code: the crate builds
/// with little optimization in tests, where a plain loop stays scalar.
#[inline]
fn fma(dst: &mut [f32], a: &[f32], k: &[f32]) {
    let n = dst.len();
    let (a, k) = (&a[..n], &k[..n]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features are present; all three slices hold n values.
        unsafe { simd::fma(dst, a, k) };
        return;
    }
    for ((d, &a), &k) in dst.iter_mut().zip(a).zip(k) {
        *d += a * k;
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// Safety: AVX2 and FMA present, `a` and `k` at least as long as `d`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma(d: &mut [f32], a: &[f32], k: &[f32]) {
        let n = d.len();
        let (dp, ap, kp) = (d.as_mut_ptr(), a.as_ptr(), k.as_ptr());
        let mut i = 0;
        while i + 8 <= n {
            let v = _mm256_fmadd_ps(
                _mm256_loadu_ps(ap.add(i)),
                _mm256_loadu_ps(kp.add(i)),
                _mm256_loadu_ps(dp.add(i)),
            );
            _mm256_storeu_ps(dp.add(i), v);
            i += 8;
        }
        while i < n {
            *dp.add(i) += *ap.add(i) * *kp.add(i);
            i += 1;
        }
    }

    /// Safety: AVX2 present, `a` at least as long as `d`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn add(d: &mut [f32], a: &[f32], relu6: bool) {
        let n = d.len();
        let (dp, ap) = (d.as_mut_ptr(), a.as_ptr());
        let (lo, hi) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
        let mut i = 0;
        while i + 8 <= n {
            let mut v = _mm256_add_ps(_mm256_loadu_ps(dp.add(i)), _mm256_loadu_ps(ap.add(i)));
            if relu6 {
                v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            }
            _mm256_storeu_ps(dp.add(i), v);
            i += 8;
        }
        while i < n {
            let mut v = *dp.add(i) + *ap.add(i);
            if relu6 {
                v = v.clamp(0.0, 6.0);
            }
            *dp.add(i) = v;
            i += 1;
        }
    }

    /// Safety: AVX2 and FMA present, `w` holds p.len() rows of d.len().
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemv(d: &mut [f32], p: &[f32], w: &[f32]) {
        let cout = d.len();
        let (dp, wp) = (d.as_mut_ptr(), w.as_ptr());
        let mut o = 0;
        // Four independent accumulators hide the FMA latency.
        while o + 32 <= cout {
            let mut acc = [
                _mm256_loadu_ps(dp.add(o)),
                _mm256_loadu_ps(dp.add(o + 8)),
                _mm256_loadu_ps(dp.add(o + 16)),
                _mm256_loadu_ps(dp.add(o + 24)),
            ];
            for (j, &a) in p.iter().enumerate() {
                let av = _mm256_set1_ps(a);
                let row = wp.add(j * cout + o);
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(av, _mm256_loadu_ps(row.add(8 * r)), *acc);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(dp.add(o + 8 * r), *acc);
            }
            o += 32;
        }
        while o + 8 <= cout {
            let mut acc = _mm256_loadu_ps(dp.add(o));
            for (j, &a) in p.iter().enumerate() {
                acc = _mm256_fmadd_ps(
                    _mm256_set1_ps(a),
                    _mm256_loadu_ps(wp.add(j * cout + o)),
                    acc,
                );
            }
            _mm256_storeu_ps(dp.add(o), acc);
            o += 8;
        }
        while o < cout {
            for (j, &a) in p.iter().enumerate() {
                *dp.add(o) += a * *wp.add(j * cout + o);
            }
            o += 1;
        }
    }
}

/// `dst[i] += a[i]`, then clamped to [0, 6] if `relu6`.
#[inline]
fn add(dst: &mut [f32], a: &[f32], relu6: bool) {
    let a = &a[..dst.len()];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: as in `fma`.
        unsafe { simd::add(dst, a, relu6) };
        return;
    }
    for (d, &a) in dst.iter_mut().zip(a) {
        *d += a;
        if relu6 {
            *d = d.clamp(0.0, 6.0);
        }
    }
}

/// `out[o] += sum_j p[j] * w[j * cout + o]` for one output pixel.
#[inline]
fn gemv(out: &mut [f32], p: &[f32], w: &[f32]) {
    let cout = out.len();
    let w = &w[..p.len() * cout];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: as in `fma`; w holds p.len() rows of cout.
        unsafe { simd::gemv(out, p, w) };
        return;
    }
    for (&a, wj) in p.iter().zip(w.chunks_exact(cout)) {
        for (o, &k) in out.iter_mut().zip(wj) {
            *o += a * k;
        }
    }
}

fn relu6(v: &mut [f32]) {
    for v in v {
        *v = v.clamp(0.0, 6.0);
    }
}

/// The f32 data of a contiguous tensor.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: f32 only, got {:?}", s.dtype())
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: non-contiguous input"),
    }
}

/// The gradient before a ReLU6, from its output: passed where the output is
/// strictly inside (0, 6), as PyTorch's hardtanh backward does.
fn relu6_grad(grad: &[f32], out: &[f32]) -> Vec<f32> {
    let mut g = vec![0f32; grad.len()];
    g.par_chunks_mut(4096)
        .zip(grad.par_chunks(4096).zip(out.par_chunks(4096)))
        .for_each(|(g, (gr, r))| {
            for ((g, &gr), &r) in g.iter_mut().zip(gr).zip(r) {
                *g = if r > 0.0 && r < 6.0 { gr } else { 0.0 };
            }
        });
    g
}

// ---------------------------------------------------------------------------
// Depthwise convolution.

/// Per kernel offset, its channel weights repeated over enough pixels
/// (`t`) that one `fma` call covers at least 256 values: [k * k, t * c].
fn tile_weights(w: &[f32], k: usize, c: usize) -> (Vec<f32>, usize) {
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
fn fma_run(dst: &mut [f32], src: &[f32], tile: &[f32]) {
    for (d, a) in dst.chunks_mut(tile.len()).zip(src.chunks(tile.len())) {
        fma(d, a, tile);
    }
}

/// Input row `row` [w, c] split into its s stride phases, each contiguous:
/// phase p holds pixels p, p + s, p + 2s, ... at `p * stride_len`.
fn split_phases(row: &[f32], c: usize, s: usize, out: &mut Vec<f32>) -> usize {
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
struct DwPlan {
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

    /// Output row `oy` [wo, c] of the convolution + bias + ReLU6 of one
    /// image `img` [h, w, c]; `phases` is scratch space.
    fn row(&self, img: &[f32], b: &[f32], oy: usize, out: &mut [f32], phases: &mut Vec<f32>) {
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
            for dx in 0..g.k {
                let (lo, hi) = g.cols(dx);
                if lo == hi {
                    continue;
                }
                let ix = lo * g.s + dx - g.pl;
                let start = (ix % g.s) * per + (ix / g.s) * c;
                let src = &src[start..start + (hi - lo) * c];
                fma_run(&mut out[lo * c..hi * c], src, self.tile(dy, dx));
            }
        }
        relu6(out);
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
            for dx in 0..g.k {
                let (lo, hi) = g.cols(dx);
                if lo == hi {
                    continue;
                }
                let ix = lo * g.s + dx - g.pl;
                let start = (ix % g.s) * per + (ix / g.s) * c;
                let dst = &mut phases[start..start + (hi - lo) * c];
                fma_run(dst, &grow[lo * c..hi * c], self.tile(dy, dx));
            }
        }
        for (x, px) in out.chunks_exact_mut(c).enumerate() {
            let at = (x % g.s) * per + (x / g.s) * c;
            px.copy_from_slice(&phases[at..at + c]);
        }
    }
}

/// Depthwise convolution (weights [k, k, C]) + bias + ReLU6 of NHWC f32.
struct Depthwise {
    g: Geometry,
    w: Arc<[f32]>,
    b: Arc<[f32]>,
}

impl CustomOp1 for Depthwise {
    fn name(&self) -> &'static str {
        "nhwc-depthwise-relu6"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let (g, c) = (self.g, self.b.len());
        let &[n, h, w, xc] = l.dims() else {
            candle_core::bail!("depthwise: expected [B, H, W, C], got {:?}", l.dims())
        };
        if (h, w, xc) != (g.h, g.w, c) {
            candle_core::bail!(
                "depthwise: input {:?} does not fit {g:?}, {c} channels",
                l.dims()
            )
        }
        let (plane, row) = (h * w * c, g.wo * c);
        let plan = DwPlan::new(g, c, &self.w);
        let mut out = vec![0f32; n * g.ho * row];
        out.par_chunks_mut(row)
            .enumerate()
            .for_each_init(Vec::new, |phases, (r, o)| {
                let (i, oy) = (r / g.ho, r % g.ho);
                let img = &x[i * plane..(i + 1) * plane];
                plan.row(img, &self.b, oy, o, phases);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, g.ho, g.wo, c))))
    }

    fn bwd(&self, _: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = DepthwiseGrad {
            g: self.g,
            w: self.w.clone(),
            c: self.b.len(),
        };
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&res.contiguous()?, &op)?,
        ))
    }
}

/// d input of [`Depthwise`] from (d output, output).
struct DepthwiseGrad {
    g: Geometry,
    w: Arc<[f32]>,
    c: usize,
}

impl CustomOp2 for DepthwiseGrad {
    fn name(&self) -> &'static str {
        "nhwc-depthwise-relu6-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let gpre = relu6_grad(
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
        );
        let (g, c, n) = (self.g, self.c, l1.dims()[0]);
        let (plane, row) = (g.ho * g.wo * c, g.w * c);
        let plan = DwPlan::new(g, c, &self.w);
        let mut out = vec![0f32; n * g.h * row];
        out.par_chunks_mut(row)
            .enumerate()
            .for_each_init(Vec::new, |phases, (r, o)| {
                let (i, iy) = (r / g.h, r % g.h);
                let gp = &gpre[i * plane..(i + 1) * plane];
                plan.grad_row(gp, iy, o, phases);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, g.h, g.w, c))))
    }
}

/// Depthwise convolution + bias + ReLU6 of NHWC input on the CPU; weights
/// [k, k, C] and bias [C] as f32. Other float dtypes run in f32.
pub(crate) fn depthwise_relu6(
    x: &Tensor,
    g: Geometry,
    w: &Arc<[f32]>,
    b: &Arc<[f32]>,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let op = Depthwise {
        g,
        w: w.clone(),
        b: b.clone(),
    };
    x.to_dtype(candle_core::DType::F32)?
        .contiguous()?
        .apply_op1(op)?
        .to_dtype(dtype)
}

/// The same depthwise convolution + bias + ReLU6 from differentiable candle
/// ops (any device, any dtype): the sum over the k x k kernel offsets of
/// strided views of the padded input times per-channel weights. Strides
/// come from viewing the padded input as [B, H/s, s, W/s, s, C] and taking
/// one phase, so no view is copied before its multiply.
pub(crate) fn depthwise_composed(
    x: &Tensor,
    g: Geometry,
    w: &Tensor,
    b: &Tensor,
) -> Result<Tensor> {
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
    acc.clamp(0f32, 6f32)
}

// ---------------------------------------------------------------------------
// Stem: a dense k x k convolution of a few input channels.

/// Dense convolution of an NCHW image (cin channels) to NHWC + bias + ReLU6;
/// weights [k, k, cin, cout].
struct Stem {
    g: Geometry,
    cin: usize,
    w: Arc<[f32]>,
    b: Arc<[f32]>,
}

impl CustomOp1 for Stem {
    fn name(&self) -> &'static str {
        "nhwc-stem-relu6"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let (g, cin, cout) = (self.g, self.cin, self.b.len());
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
        let mut out = vec![0f32; n * g.ho * row];
        out.par_chunks_mut(row)
            .enumerate()
            .for_each_init(Vec::new, |patches, (r, o)| {
                let (i, oy) = (r / g.ho, r % g.ho);
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
                    px.copy_from_slice(&self.b);
                    gemv(px, p, &self.w);
                }
                relu6(o);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, g.ho, g.wo, cout))))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = StemGrad {
            g: self.g,
            cin: self.cin,
            w: self.w.clone(),
            cout: self.b.len(),
            n: arg.dim(0)?,
        };
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&res.contiguous()?, &op)?,
        ))
    }
}

/// d input of [`Stem`] from (d output, output), NCHW.
struct StemGrad {
    g: Geometry,
    cin: usize,
    cout: usize,
    n: usize,
    w: Arc<[f32]>,
}

impl CustomOp2 for StemGrad {
    fn name(&self) -> &'static str {
        "nhwc-stem-relu6-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let gpre = relu6_grad(
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
        );
        let (g, cin, cout) = (self.g, self.cin, self.cout);
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
                                let wk = &self.w[((dy * g.k + dx) * cin + ci) * cout..][..cout];
                                let dot: f32 = gv.iter().zip(wk).map(|(a, b)| a * b).sum();
                                gx[(ci * g.h + iy) * g.w + ix] += dot;
                            }
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((self.n, cin, g.h, g.w))))
    }
}

/// The stem convolution + bias + ReLU6 on the CPU: NCHW image in, NHWC out;
/// weights [k, k, cin, cout]. Other float dtypes run in f32.
pub(crate) fn stem_relu6(
    x: &Tensor,
    g: Geometry,
    w: &Arc<[f32]>,
    b: &Arc<[f32]>,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let op = Stem {
        g,
        cin: x.dim(1)?,
        w: w.clone(),
        b: b.clone(),
    };
    x.to_dtype(candle_core::DType::F32)?
        .contiguous()?
        .apply_op1(op)?
        .to_dtype(dtype)
}

// ---------------------------------------------------------------------------
// 1x1 convolution: a matrix product over pixels, bias, ReLU6 or residual.

/// `dst := dst + lhs x rhs` with row-major [m, k] lhs, [m, n] dst and a rhs
/// [k, n] read with strides (row `rhs_rs`, column `rhs_cs`).
fn matmul_acc(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    mkn: (usize, usize, usize),
    rhs_rs: usize,
    rhs_cs: usize,
) {
    let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
    matmul_acc_par(dst, lhs, rhs, mkn, rhs_rs, rhs_cs, threads)
}

/// [`matmul_acc`] with the given parallelism (`None` inside tasks that
/// already run in parallel).
fn matmul_acc_par(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    (m, k, n): (usize, usize, usize),
    rhs_rs: usize,
    rhs_cs: usize,
    parallelism: gemm::Parallelism,
) {
    assert!(dst.len() == m * n && lhs.len() == m * k && rhs.len() == k * n);
    assert!((k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len());
    // SAFETY: the asserts bound every index gemm reads or writes.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Pixels [.., cin] x weight [cin, cout] (+ bias) (+ residual), ReLU6 if
/// asked. Run directly on gemm (rather than candle's matmul) to fold the bias
/// and residual into the product and, in the backward pass, to skip the
/// weight gradient candle would compute for the constant weights.
struct Pointwise {
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
        matmul_acc(&mut out, x, &self.w, (rows, cin, cout), cout, 1);
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
struct PointwiseResidual(Pointwise);

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
struct PointwiseGrad {
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

/// Rows of whole pixels, big enough to amortise scheduling.
fn chunk(c: usize) -> usize {
    c * (8192 / c).max(1)
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

// ---------------------------------------------------------------------------
// BiT: GroupNorm + ReLU, dense k x k convolutions (im2col), the stem's pool.

/// Whether the AVX2 + FMA loops below can run.
#[inline]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name` running `$body` (a plain loop over slices, marked
/// `#[inline(always)]`) compiled for AVX2 + FMA when the CPU has them: the
/// crate's target stops at SSE2, and LLVM vectorizes the loop 8-wide only
/// inside a function that enables the features.
macro_rules! avx2_variant {
    ($name:ident => $body:ident ($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if has_avx2() {
                    // SAFETY: the features are present.
                    return unsafe { fast($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// Per channel of `c`: sum and sum of squares of the pixels `x` (f64).
#[inline(always)]
fn moments_body(x: &[f32], c: usize, acc: &mut [f64]) {
    let (s, q) = acc.split_at_mut(c);
    for px in x.chunks_exact(c) {
        for ((s, q), &v) in s.iter_mut().zip(q.iter_mut()).zip(px) {
            let v = v as f64;
            *s += v;
            *q += v * v;
        }
    }
}
avx2_variant!(moments => moments_body(x: &[f32], c: usize, acc: &mut [f64]));

/// Per channel: sums of x, x², d and d x, where d is the gradient `g`
/// passed by the ReLU (output `y` > 0).
#[inline(always)]
fn grad_moments_body(x: &[f32], g: &[f32], y: &[f32], c: usize, acc: &mut [f64]) {
    let (sx, rest) = acc.split_at_mut(c);
    let (sxx, rest) = rest.split_at_mut(c);
    let (sd, sdx) = rest.split_at_mut(c);
    for ((px, pg), py) in x
        .chunks_exact(c)
        .zip(g.chunks_exact(c))
        .zip(y.chunks_exact(c))
    {
        for k in 0..c {
            let v = px[k] as f64;
            let d = if py[k] > 0.0 { pg[k] as f64 } else { 0.0 };
            sx[k] += v;
            sxx[k] += v * v;
            sd[k] += d;
            sdx[k] += d * v;
        }
    }
}
avx2_variant!(grad_moments => grad_moments_body(
    x: &[f32], g: &[f32], y: &[f32], c: usize, acc: &mut [f64]
));

/// `out = max(x * scale + shift, 0)` per channel.
#[inline(always)]
fn affine_relu_body(x: &[f32], scale: &[f32], shift: &[f32], out: &mut [f32]) {
    let c = scale.len();
    for (o, px) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        for k in 0..c {
            o[k] = (px[k] * scale[k] + shift[k]).max(0.0);
        }
    }
}
avx2_variant!(affine_relu => affine_relu_body(
    x: &[f32], scale: &[f32], shift: &[f32], out: &mut [f32]
));

/// The GroupNorm + ReLU input gradient: `dx = a d + b x + c` per channel,
/// d the gradient passed by the ReLU.
#[inline(always)]
fn gn_grad_body(x: &[f32], g: &[f32], y: &[f32], abc: &[f32], dx: &mut [f32]) {
    let c = abc.len() / 3;
    let (a, rest) = abc.split_at(c);
    let (b, cc) = rest.split_at(c);
    for (((o, px), pg), py) in dx
        .chunks_exact_mut(c)
        .zip(x.chunks_exact(c))
        .zip(g.chunks_exact(c))
        .zip(y.chunks_exact(c))
    {
        for k in 0..c {
            let d = if py[k] > 0.0 { pg[k] } else { 0.0 };
            o[k] = a[k] * d + b[k] * px[k] + cc[k];
        }
    }
}
avx2_variant!(gn_grad => gn_grad_body(
    x: &[f32], g: &[f32], y: &[f32], abc: &[f32], dx: &mut [f32]
));

/// Splits each of `n` images of `p` pixels into runs of `chunk` pixels,
/// enough runs to keep the pool busy: (runs per image, chunk).
fn pixel_runs(n: usize, p: usize) -> (usize, usize) {
    let want = (4 * rayon::current_num_threads()).div_ceil(n.max(1));
    let chunk = p.div_ceil(want.max(1)).max(64).min(p.max(1));
    (p.div_ceil(chunk), chunk)
}

/// Per image, `k` per-channel f64 sums of `c` channels over its `p`
/// pixels, each run of pixels summed by `f(image, pixels, acc)` in
/// parallel and the runs added in order (deterministic): [n, k * c].
fn per_image_sums(
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

/// Runs `f(image, first pixel, pixels of out, pixels of each input)` over
/// runs of whole pixels of every image in parallel; `out` and every input
/// are [n, p, c] (an input may have another channel count `ci`).
fn per_pixel_runs(
    out: &mut [f32],
    (n, p, c): (usize, usize, usize),
    f: impl Fn(usize, &mut [f32], usize) + Sync,
) {
    let (_, chunk) = pixel_runs(n, p);
    out.par_chunks_mut(p * c).enumerate().for_each(|(i, img)| {
        img.par_chunks_mut(chunk * c)
            .enumerate()
            .for_each(|(j, o)| f(i, o, j * chunk))
    });
}

/// GroupNorm (`groups` groups, affine) + ReLU over [N, ..., C] f32.
/// Statistics in f64 from one pass of sums (E[x²] - E[x]² is exact enough
/// in f64 for activations).
struct GroupNormRelu {
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

impl CustomOp1 for GroupNormRelu {
    fn name(&self) -> &'static str {
        "nhwc-group-norm-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
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
        let mut out = vec![0f32; n * p * c];
        per_pixel_runs(&mut out, (n, p, c), |i, o, first| {
            let xi = &x[(i * p + first) * c..][..o.len()];
            affine_relu(xi, &scale[i * c..][..c], &shift[i * c..][..c], o);
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = GroupNormReluGrad(GroupNormRelu {
            groups: self.groups,
            eps: self.eps,
            gamma: self.gamma.clone(),
            beta: self.beta.clone(),
        });
        Ok(Some(grad.contiguous()?.apply_op3_no_bwd(
            &arg.contiguous()?,
            &res.contiguous()?,
            &op,
        )?))
    }
}

/// d input of [`GroupNormRelu`] from (d output, input, output). With
/// x̂ = (x - μ) r and d the gradient past the ReLU, per group of n values:
/// dx = r γ d - (r / n) Σ γ d - x̂ (r / n) Σ γ d x̂.
struct GroupNormReluGrad(GroupNormRelu);

impl CustomOp3 for GroupNormReluGrad {
    fn name(&self) -> &'static str {
        "nhwc-group-norm-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let gn = &self.0;
        let g = f32_slice(s1, l1, self.name())?;
        let x = f32_slice(s2, l2, self.name())?;
        let y = f32_slice(s3, l3, self.name())?;
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
        let mut dx = vec![0f32; n * p * c];
        per_pixel_runs(&mut dx, (n, p, c), |i, o, first| {
            let run = (i * p + first) * c..(i * p + first) * c + o.len();
            gn_grad(
                &x[run.clone()],
                &g[run.clone()],
                &y[run],
                &abc[i * 3 * c..][..3 * c],
                o,
            );
        });
        Ok((CpuStorage::F32(dx), l2.shape().clone()))
    }
}

/// GroupNorm (affine, `groups` groups, `eps`) + ReLU of channels-last `x`
/// on the CPU, differentiable with respect to `x`. Other float dtypes run in
/// f32.
pub(crate) fn group_norm_relu(
    x: &Tensor,
    groups: usize,
    eps: f64,
    gamma: &Arc<[f32]>,
    beta: &Arc<[f32]>,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let op = GroupNormRelu {
        groups,
        eps,
        gamma: gamma.clone(),
        beta: beta.clone(),
    };
    x.to_dtype(candle_core::DType::F32)?
        .contiguous()?
        .apply_op1(op)?
        .to_dtype(dtype)
}

impl Geometry {
    /// A k x k convolution or pool of stride s with `p` zeros on every side
    /// (PyTorch's `padding=p`).
    pub(crate) fn symmetric(h: usize, w: usize, k: usize, s: usize, p: usize) -> Result<Self> {
        if s == 0 || h + 2 * p < k || w + 2 * p < k {
            candle_core::bail!("{h}x{w} input too small for a {k}x{k} window with padding {p}")
        }
        Ok(Geometry {
            h,
            w,
            k,
            s,
            pt: p,
            pl: p,
            ho: (h + 2 * p - k) / s + 1,
            wo: (w + 2 * p - k) / s + 1,
        })
    }
}

/// Output pixels per im2col block: patches of about 4 MB, and at least one
/// block per thread.
fn block_rows(m: usize, patch: usize) -> usize {
    let cap = ((1usize << 20) / patch.max(1)).max(16);
    let per_thread = m.div_ceil(rayon::current_num_threads()).max(1);
    cap.min(per_thread)
}

/// Dense k x k convolution of NHWC f32 without bias: weights [k, k, cin,
/// cout] (rows (dy, dx, ci)). Blocks of output pixels are unfolded into
/// their receptive fields (im2col) and multiplied on gemm, a block per task.
struct Conv {
    g: Geometry,
    cin: usize,
    cout: usize,
    w: Arc<[f32]>,
}

impl Conv {
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

impl CustomOp1 for Conv {
    fn name(&self) -> &'static str {
        "nhwc-conv"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let (g, cin, cout) = (self.g, self.cin, self.cout);
        let &[n, h, w, xc] = l.dims() else {
            candle_core::bail!("conv: expected [B, H, W, C], got {:?}", l.dims())
        };
        if (h, w, xc) != (g.h, g.w, cin) {
            candle_core::bail!(
                "conv: input {:?} does not fit {g:?}, {cin} channels",
                l.dims()
            )
        }
        let (plane, pixels, kk) = (h * w * cin, g.ho * g.wo, self.patch_len());
        let m = n * pixels;
        let rows = block_rows(m, kk);
        let mut out = vec![0f32; m * cout];
        out.par_chunks_mut(rows * cout)
            .enumerate()
            .for_each_init(Vec::new, |patches, (b, o)| {
                let count = o.len() / cout;
                patches.resize(count * kk, 0.0);
                for (r, dst) in patches.chunks_exact_mut(kk).enumerate() {
                    let at = b * rows + r;
                    let (i, q) = (at / pixels, at % pixels);
                    self.patch(&x[i * plane..][..plane], q / g.wo, q % g.wo, dst);
                }
                let none = gemm::Parallelism::None;
                matmul_acc_par(o, patches, &self.w, (count, kk, cout), cout, 1, none);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, g.ho, g.wo, cout))))
    }

    fn bwd(&self, arg: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = ConvGrad {
            conv: Conv {
                g: self.g,
                cin: self.cin,
                cout: self.cout,
                w: self.w.clone(),
            },
            n: arg.dim(0)?,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// d input of [`Conv`] from d output: per image, the gradient of every
/// receptive field (d output x weight transposed, one gemm), then each input
/// row sums the fields that read it.
struct ConvGrad {
    conv: Conv,
    n: usize,
}

impl CustomOp1 for ConvGrad {
    fn name(&self) -> &'static str {
        "nhwc-conv-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let grad = f32_slice(s, l, self.name())?;
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
        Ok((CpuStorage::F32(out), Shape::from((self.n, g.h, g.w, cin))))
    }
}

/// Dense convolution of NHWC `x` on the CPU: geometry `g`, weights [k, k,
/// cin, cout], no bias; differentiable with respect to `x`. Other float
/// dtypes run in f32.
pub(crate) fn conv(x: &Tensor, g: Geometry, w: &Arc<[f32]>) -> Result<Tensor> {
    let dtype = x.dtype();
    let cin = x.dim(3)?;
    let patch = g.k * g.k * cin;
    if !w.len().is_multiple_of(patch) {
        candle_core::bail!("conv: {} weights for patches of {patch}", w.len())
    }
    let op = Conv {
        g,
        cin,
        cout: w.len() / patch,
        w: w.clone(),
    };
    x.to_dtype(candle_core::DType::F32)?
        .contiguous()?
        .apply_op1(op)?
        .to_dtype(dtype)
}

/// k x k max-pool of stride s over NHWC f32 padded with `pad` zeros on
/// every side, the zeros taking part (BiT pads explicitly, then pools).
struct MaxPoolPadded {
    g: Geometry,
}

impl MaxPoolPadded {
    /// For output pixel (oy, ox) of `img` and each channel, the index of the
    /// maximum in scan order (the first of equals, as PyTorch), or None for
    /// a padding zero; `best` is scratch of c values.
    fn argmax(
        &self,
        img: &[f32],
        c: usize,
        oy: usize,
        ox: usize,
        best: &mut [f32],
        arg: &mut [Option<usize>],
    ) {
        let g = &self.g;
        let mut first = true;
        for dy in 0..g.k {
            let iy = (oy * g.s + dy).checked_sub(g.pt).filter(|&r| r < g.h);
            for dx in 0..g.k {
                let ix = (ox * g.s + dx).checked_sub(g.pl).filter(|&r| r < g.w);
                let at = iy.zip(ix).map(|(iy, ix)| (iy * g.w + ix) * c);
                for ch in 0..c {
                    let v = at.map_or(0.0, |a| img[a + ch]);
                    if first || v > best[ch] {
                        best[ch] = v;
                        arg[ch] = at.map(|a| a + ch);
                    }
                }
                first = false;
            }
        }
    }
}

impl CustomOp1 for MaxPoolPadded {
    fn name(&self) -> &'static str {
        "nhwc-max-pool-padded"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let g = self.g;
        let &[n, h, w, c] = l.dims() else {
            candle_core::bail!("max-pool: expected [B, H, W, C], got {:?}", l.dims())
        };
        if (h, w) != (g.h, g.w) {
            candle_core::bail!("max-pool: input {:?} does not fit {g:?}", l.dims())
        }
        let (plane, row) = (h * w * c, g.wo * c);
        let mut out = vec![0f32; n * g.ho * row];
        out.par_chunks_mut(row).enumerate().for_each(|(r, o)| {
            let (i, oy) = (r / g.ho, r % g.ho);
            let img = &x[i * plane..][..plane];
            for (ox, px) in o.chunks_exact_mut(c).enumerate() {
                let mut first = true;
                for dy in 0..g.k {
                    let iy = (oy * g.s + dy).checked_sub(g.pt).filter(|&r| r < g.h);
                    for dx in 0..g.k {
                        let ix = (ox * g.s + dx).checked_sub(g.pl).filter(|&r| r < g.w);
                        match iy.zip(ix) {
                            Some((iy, ix)) => {
                                let src = &img[(iy * g.w + ix) * c..][..c];
                                if first {
                                    px.copy_from_slice(src);
                                } else {
                                    for (p, &v) in px.iter_mut().zip(src) {
                                        *p = p.max(v);
                                    }
                                }
                            }
                            None if first => px.fill(0.0),
                            None => px.iter_mut().for_each(|p| *p = p.max(0.0)),
                        }
                        first = false;
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, g.ho, g.wo, c))))
    }

    fn bwd(&self, arg: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = MaxPoolPaddedGrad(MaxPoolPadded { g: self.g });
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&arg.contiguous()?, &op)?,
        ))
    }
}

/// d input of [`MaxPoolPadded`] from (d output, input): each output's
/// gradient goes to its maximum (nowhere when that is a padding zero).
struct MaxPoolPaddedGrad(MaxPoolPadded);

impl CustomOp2 for MaxPoolPaddedGrad {
    fn name(&self) -> &'static str {
        "nhwc-max-pool-padded-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let grad = f32_slice(s1, l1, self.name())?;
        let x = f32_slice(s2, l2, self.name())?;
        let g = self.0.g;
        let &[n, h, w, c] = l2.dims() else {
            candle_core::bail!("max-pool grad: expected [B, H, W, C], got {:?}", l2.dims())
        };
        let (plane, oplane) = (h * w * c, g.ho * g.wo * c);
        if grad.len() != n * oplane {
            candle_core::bail!("max-pool grad: {:?} does not fit {g:?}", l1.dims())
        }
        let mut out = vec![0f32; n * plane];
        // Windows overlap: one image per task.
        out.par_chunks_mut(plane).enumerate().for_each(|(i, dx)| {
            let img = &x[i * plane..][..plane];
            let (mut best, mut arg) = (vec![0f32; c], vec![None; c]);
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    self.0.argmax(img, c, oy, ox, &mut best, &mut arg);
                    let gp = &grad[i * oplane + (oy * g.wo + ox) * c..][..c];
                    for (a, &gv) in arg.iter().zip(gp) {
                        if let Some(a) = a {
                            dx[*a] += gv;
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), l2.shape().clone()))
    }
}

/// k x k max-pool of stride s of NHWC `x` zero-padded by `pad` on every
/// side, on the CPU, differentiable with respect to `x`. Other float dtypes
/// run in f32.
pub(crate) fn max_pool_padded(x: &Tensor, k: usize, s: usize, pad: usize) -> Result<Tensor> {
    let dtype = x.dtype();
    let (_, h, w, _) = x.dims4()?;
    let op = MaxPoolPadded {
        g: Geometry::symmetric(h, w, k, s, pad)?,
    };
    x.to_dtype(candle_core::DType::F32)?
        .contiguous()?
        .apply_op1(op)?
        .to_dtype(dtype)
}

/// Spatial mean of [B, H, W, C] as f32 [B, C].
pub(crate) fn mean(x: &Tensor) -> Result<Tensor> {
    x.to_dtype(candle_core::DType::F32)?.flatten(1, 2)?.mean(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        // Deterministic values in [-2, 2) without a random-number crate.
        let n: usize = shape.iter().product();
        let mut state = seed;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn host(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn arc(t: &Tensor) -> Arc<[f32]> {
        host(t).into()
    }

    fn geometry(h: usize, w: usize, k: usize, s: usize, pt: usize, pl: usize) -> Geometry {
        // Every window that starts inside the (top/left-padded) input.
        let (ho, wo) = ((h - 1 + pt) / s + 1, (w - 1 + pl) / s + 1);
        Geometry {
            h,
            w,
            k,
            s,
            pt,
            pl,
            ho,
            wo,
        }
    }

    /// Direct definition: out[n,oy,ox,c] = relu6(b[c] + sum over the window
    /// of w[dy,dx,ci,c] x[n,ci,oy*s+dy-pt,ox*s+dx-pl]), zero outside, in f64.
    /// `depthwise` pairs input channel c with output channel c only.
    fn direct(
        x: &[f32],
        (n, cin, h, w): (usize, usize, usize, usize),
        wt: &[f32],
        b: &[f32],
        g: &Geometry,
        depthwise: bool,
        nhwc_in: bool,
    ) -> Vec<f32> {
        let cout = b.len();
        let at = |i: usize, ci: usize, y: usize, xx: usize| {
            if nhwc_in {
                x[((i * h + y) * w + xx) * cin + ci]
            } else {
                x[((i * cin + ci) * h + y) * w + xx]
            }
        };
        let mut out = Vec::new();
        for i in 0..n {
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    for (co, &bias) in b.iter().enumerate() {
                        let mut acc = bias as f64;
                        for dy in 0..g.k {
                            for dx in 0..g.k {
                                let (iy, ix) = (
                                    (oy * g.s + dy) as isize - g.pt as isize,
                                    (ox * g.s + dx) as isize - g.pl as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let cis: Vec<usize> = if depthwise {
                                    vec![co]
                                } else {
                                    (0..cin).collect()
                                };
                                for ci in cis {
                                    let wi = if depthwise {
                                        (dy * g.k + dx) * cout + co
                                    } else {
                                        ((dy * g.k + dx) * cin + ci) * cout + co
                                    };
                                    acc +=
                                        at(i, ci, iy as usize, ix as usize) as f64 * wt[wi] as f64;
                                }
                            }
                        }
                        out.push(acc.clamp(0.0, 6.0) as f32);
                    }
                }
            }
        }
        out
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    const CASES: [(usize, usize, usize, usize, usize, usize); 6] = [
        // h, w, k, s, pt, pl
        (9, 9, 3, 1, 1, 1),
        (10, 7, 5, 2, 1, 2),
        (8, 8, 3, 2, 0, 0),
        (6, 11, 5, 1, 2, 2),
        (3, 3, 5, 2, 2, 2),
        (7, 5, 3, 2, 1, 1),
    ];

    #[test]
    fn depthwise_kernels_match_the_definition_and_each_other() {
        for (i, &(h, w, k, s, pt, pl)) in CASES.iter().enumerate() {
            let (n, c) = (2, 5);
            let g = geometry(h, w, k, s, pt, pl);
            let x = rand(&[n, h, w, c], 3 * i as u64);
            let wt = rand(&[k, k, c], 3 * i as u64 + 1);
            let b = rand(&[c], 3 * i as u64 + 2);
            let want = direct(
                &host(&x),
                (n, c, h, w),
                &host(&wt),
                &host(&b),
                &g,
                true,
                true,
            );
            let xv = Var::from_tensor(&x).unwrap();
            let fused = depthwise_relu6(xv.as_tensor(), g, &arc(&wt), &arc(&b)).unwrap();
            let composed = depthwise_composed(xv.as_tensor(), g, &wt, &b).unwrap();
            assert_eq!(fused.dims(), &[n, g.ho, g.wo, c]);
            assert!(max_diff(&host(&fused), &want) < 1e-5, "case {i}: kernel");
            assert!(
                max_diff(&host(&composed), &want) < 1e-5,
                "case {i}: composed"
            );
            // The gradients of one weighted sum through both agree.
            let r = rand(fused.dims(), 99);
            let grad = |y: &Tensor| {
                let gs = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                host(gs.get(xv.as_tensor()).unwrap())
            };
            let (gf, gc) = (grad(&fused), grad(&composed));
            assert!(gc.iter().filter(|v| **v != 0.0).count() > gc.len() / 4);
            assert!(max_diff(&gf, &gc) < 1e-5, "case {i}: gradients");
        }
    }

    #[test]
    fn stem_kernel_matches_the_definition_and_candles_conv() {
        for (i, &(h, w, k, s, pt, pl)) in CASES.iter().enumerate() {
            let (n, cin, cout) = (2, 3, 4);
            let g = geometry(h, w, k, s, pt, pl);
            let x = rand(&[n, cin, h, w], 5 * i as u64);
            let wt = rand(&[k, k, cin, cout], 5 * i as u64 + 1);
            let b = rand(&[cout], 5 * i as u64 + 2);
            let want = direct(
                &host(&x),
                (n, cin, h, w),
                &host(&wt),
                &host(&b),
                &g,
                false,
                false,
            );
            let xv = Var::from_tensor(&x).unwrap();
            let ours = stem_relu6(xv.as_tensor(), g, &arc(&wt), &arc(&b)).unwrap();
            assert_eq!(ours.dims(), &[n, g.ho, g.wo, cout]);
            assert!(max_diff(&host(&ours), &want) < 1e-5, "case {i}");
            // candle's (differentiable) conv2d on the explicitly padded input.
            let (hp, wp) = ((g.ho - 1) * s + k, (g.wo - 1) * s + k);
            let xp = xv
                .as_tensor()
                .pad_with_zeros(2, pt, hp - h - pt)
                .unwrap()
                .pad_with_zeros(3, pl, wp - w - pl)
                .unwrap();
            let oihw = wt.permute((3, 2, 0, 1)).unwrap().contiguous().unwrap();
            let theirs = xp
                .conv2d(&oihw, 0, s, 1, 1)
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap()
                .broadcast_add(&b)
                .unwrap()
                .clamp(0f32, 6f32)
                .unwrap();
            assert!(max_diff(&host(&theirs), &want) < 1e-5, "case {i}: candle");
            let r = rand(ours.dims(), 7);
            let grad = |y: &Tensor| {
                let gs = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                host(gs.get(xv.as_tensor()).unwrap())
            };
            let (go, gt) = (grad(&ours), grad(&theirs));
            assert!(gt.iter().filter(|v| **v != 0.0).count() > gt.len() / 4);
            assert!(max_diff(&go, &gt) < 1e-5, "case {i}: gradients");
        }
    }

    #[test]
    fn pointwise_matches_candle_with_gradients() {
        for (relu6, residual) in [(true, false), (false, false), (false, true)] {
            let (cin, cout) = (5, 7);
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

    /// Gradients of `sum(y * r)` with respect to `x` through `f`.
    fn input_grad(x: &Var, f: impl Fn(&Tensor) -> Tensor) -> (Vec<f32>, Vec<f32>) {
        let y = f(x.as_tensor());
        let r = rand(y.dims(), 77);
        let gs = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (host(&y), host(gs.get(x.as_tensor()).unwrap()))
    }

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
        ]
        .iter()
        .enumerate()
        {
            let x = Var::from_tensor(&rand(&[2, h, w, cin], 41 + i as u64)).unwrap();
            let oihw = rand(&[cout, cin, k, k], 51 + i as u64);
            let hwio = oihw.permute((2, 3, 1, 0)).unwrap();
            let g = Geometry::symmetric(h, w, k, s, p).unwrap();
            let ours = input_grad(&x, |x| conv(x, g, &arc(&hwio)).unwrap());
            let theirs = input_grad(&x, |x| {
                x.permute((0, 3, 1, 2))
                    .unwrap()
                    .conv2d(&oihw, p, s, 1, 1)
                    .unwrap()
                    .permute((0, 2, 3, 1))
                    .unwrap()
            });
            assert!(max_diff(&ours.0, &theirs.0) < 1e-4, "case {i}: values");
            assert!(max_diff(&ours.1, &theirs.1) < 1e-4, "case {i}: gradients");
        }
    }

    #[test]
    fn padded_max_pool_matches_pad_then_pool_with_gradients() {
        for (h, w) in [(9, 9), (10, 7), (4, 5)] {
            // Negative values too, so that padding zeros win some windows.
            let x = Var::from_tensor(&rand(&[2, h, w, 3], 61)).unwrap();
            let ours = input_grad(&x, |x| max_pool_padded(x, 3, 2, 1).unwrap());
            let theirs = input_grad(&x, |x| {
                let nchw = x.permute((0, 3, 1, 2)).unwrap();
                let padded = nchw
                    .pad_with_zeros(2, 1, 1)
                    .unwrap()
                    .pad_with_zeros(3, 1, 1)
                    .unwrap();
                crate::model::ops::max_pool2d(&padded, 3, 2)
                    .unwrap()
                    .permute((0, 2, 3, 1))
                    .unwrap()
            });
            assert_eq!(max_diff(&ours.0, &theirs.0), 0.0);
            assert!(max_diff(&ours.1, &theirs.1) < 1e-6);
        }
    }
}
