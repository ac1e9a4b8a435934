//! Small differentiable building blocks shared by the backbones.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Weight standardization (BiT's StdConv2d): per output channel,
/// `(w - mean) / sqrt(var + 1e-10)` with mean and biased variance over
/// (in, kh, kw). Differentiable, so training can call it every step.
pub fn standardize(w: &Tensor) -> Result<Tensor> {
    let shape = w.shape().clone();
    let flat = w.flatten_from(1)?;
    let mean = flat.mean_keepdim(1)?;
    let centred = flat.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    centred
        .broadcast_div(&(var + 1e-10)?.sqrt()?)?
        .reshape(shape)
}

/// The divisor of [`standardize`]: sqrt(var + 1e-10) of each output
/// channel, [O].
pub fn standardize_scale(w: &Tensor) -> Result<Tensor> {
    let flat = w.flatten_from(1)?;
    let centred = flat.broadcast_sub(&flat.mean_keepdim(1)?)?;
    (centred.sqr()?.mean(1)? + 1e-10)?.sqrt()
}

/// `k x k` max-pool with stride `s` and no padding. candle's `max_pool2d` has
/// no backward pass when kernel != stride, and ODIN and Mahalanobis need
/// d score / d input through the stem pools; so when `x` is tracked by
/// autograd the pool is built from the k² strided views of `x`. Each output
/// takes its value and its gradient from the first view (in row-major
/// window order) that holds the maximum, as PyTorch's pool does: a plain
/// maximum of views would share the gradient among ties, and ties are
/// common in flat regions of real images.
pub fn max_pool2d(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    if !x.track_op() {
        return x.max_pool2d_with_stride(k, s);
    }
    let (b, c, h, w) = x.dims4()?;
    if h < k || w < k {
        candle_core::bail!("max_pool2d: input {h}x{w} smaller than kernel {k}");
    }
    let (ho, wo) = ((h - k) / s + 1, (w - k) / s + 1);
    // Pad on the right so that every offset has s * out elements to fold; the
    // padding is never selected.
    let (need_h, need_w) = (k - 1 + s * ho, k - 1 + s * wo);
    let x = x
        .pad_with_zeros(2, 0, need_h - h)?
        .pad_with_zeros(3, 0, need_w - w)?;
    let mut views = Vec::with_capacity(k * k);
    for dy in 0..k {
        let rows = x
            .narrow(2, dy, s * ho)?
            .reshape((b, c, ho, s, need_w))?
            .narrow(3, 0, 1)?
            .squeeze(3)?;
        for dx in 0..k {
            views.push(
                rows.narrow(3, dx, s * wo)?
                    .reshape((b, c, ho, wo, s))?
                    .narrow(4, 0, 1)?
                    .squeeze(4)?,
            );
        }
    }
    let mut max = views[0].detach();
    for v in &views[1..] {
        max = max.maximum(&v.detach())?;
    }
    // Constant one-hot masks of the first maximum; the output is the sum of
    // the views under them.
    let mut unclaimed = max.ones_like()?;
    let mut out: Option<Tensor> = None;
    for v in &views {
        let first = v.detach().eq(&max)?.to_dtype(v.dtype())?.mul(&unclaimed)?;
        unclaimed = unclaimed.sub(&first)?;
        let term = v.mul(&first)?;
        out = Some(match out {
            None => term,
            Some(acc) => acc.add(&term)?,
        });
    }
    Ok(out.expect("k >= 1"))
}

/// 2-D convolution (groups 1, dilation 1) as im2col and one matmul. Same
/// result as `Tensor::conv2d`; on the CPU its backward pass is a col2im and
/// two matmuls, several times faster than candle's conv backward (direct
/// convolutions), so training uses it. Elsewhere it is `conv2d`.
pub fn conv2d_im2col(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    let (b, c, h, wd) = x.dims4()?;
    let (co, ci, kh, kw) = w.dims4()?;
    if ci != c {
        candle_core::bail!("conv2d_im2col: input has {c} channels, kernel expects {ci}");
    }
    let geo = Im2Col::new([b, c, h, wd], (kh, kw), padding, stride)?;
    let cols = x.contiguous()?.apply_op1(geo)?; // [b * ho * wo, c * kh * kw]
    cols.matmul(&w.reshape((co, c * kh * kw))?.t()?)?
        .reshape((b, geo.ho, geo.wo, co))?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

/// Unfolds [b, c, h, w] (f32, contiguous, CPU) into rows of patches
/// [b * ho * wo, c * kh * kw], columns ordered (c, ky, kx) as a kernel.
#[derive(Debug, Clone, Copy)]
struct Im2Col {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    padding: usize,
    stride: usize,
    ho: usize,
    wo: usize,
}

impl Im2Col {
    /// The geometry of input dims `[b, c, h, w]` under a `kh` x `kw`
    /// kernel.
    fn new(
        [b, c, h, w]: [usize; 4],
        (kh, kw): (usize, usize),
        padding: usize,
        stride: usize,
    ) -> Result<Self> {
        if stride == 0 || h + 2 * padding < kh || w + 2 * padding < kw {
            candle_core::bail!("im2col: input {h}x{w} too small for kernel {kh}x{kw}");
        }
        let out = |n: usize, k: usize| (n + 2 * padding - k) / stride + 1;
        Ok(Im2Col {
            b,
            c,
            h,
            w,
            kh,
            kw,
            padding,
            stride,
            ho: out(h, kh),
            wo: out(w, kw),
        })
    }

    fn row_len(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Calls `f(row element, input element)` for every patch entry of image
    /// `bi` that lies inside the input (the rest is zero padding).
    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let k = self.row_len();
        for oy in 0..self.ho {
            for ox in 0..self.wo {
                let row = (oy * self.wo + ox) * k;
                for ci in 0..self.c {
                    for ky in 0..self.kh {
                        let iy = (oy * self.stride + ky).wrapping_sub(self.padding);
                        if iy >= self.h {
                            continue;
                        }
                        for kx in 0..self.kw {
                            let ix = (ox * self.stride + kx).wrapping_sub(self.padding);
                            if ix < self.w {
                                f(
                                    row + (ci * self.kh + ky) * self.kw + kx,
                                    (ci * self.h + iy) * self.w + ix,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        _ => candle_core::bail!("{what}: needs a contiguous f32 tensor"),
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, "im2col")?;
        let (image, rows) = (self.c * self.h * self.w, self.ho * self.wo * self.row_len());
        let mut out = vec![0f32; self.b * rows];
        out.par_chunks_mut(rows)
            .zip(x.par_chunks(image))
            .for_each(|(o, xi)| self.for_each(|r, i| o[r] = xi[i]));
        let shape = Shape::from((self.b * self.ho * self.wo, self.row_len()));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im(*self))?))
    }
}

/// The adjoint of `Im2Col`: sums patch rows back into [b, c, h, w].
struct Col2Im(Im2Col);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let cols = f32_slice(storage, layout, "col2im")?;
        let (image, rows) = (g.c * g.h * g.w, g.ho * g.wo * g.row_len());
        let mut out = vec![0f32; g.b * image];
        out.par_chunks_mut(image)
            .zip(cols.par_chunks(rows))
            .for_each(|(o, ci)| g.for_each(|r, i| o[i] += ci[r]));
        Ok((CpuStorage::F32(out), Shape::from((g.b, g.c, g.h, g.w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// A seeded normal tensor (the same draw every run).
    fn randn(seed: u64, mean: f32, std: f32, dims: &[usize]) -> Result<Tensor> {
        let n = dims.iter().product();
        let v = crate::rng::normals(seed, mean, std, n);
        Tensor::from_vec(v, dims, &Device::Cpu)
    }

    #[test]
    fn differentiable_pool_equals_candle_pool() -> Result<()> {
        for (i, (h, w)) in [(9, 9), (10, 7), (12, 12)].into_iter().enumerate() {
            let x = randn(i as u64, 0., 1., &[2, 3, h, w])?;
            let want = x.max_pool2d_with_stride(3, 2)?;
            let var = Var::from_tensor(&x)?;
            let got = max_pool2d(var.as_tensor(), 3, 2)?;
            assert_eq!(want.dims(), got.dims());
            let diff = (want - &got)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0);
            // Every output routes its gradient to exactly one input (no ties
            // in random data), so the gradient sums to the output count.
            let grads = got.sum_all()?.backward()?;
            let g = grads.get(var.as_tensor()).unwrap();
            let total = g.sum_all()?.to_scalar::<f32>()?;
            assert!((total - got.elem_count() as f32).abs() < 1e-3);
        }
        Ok(())
    }

    #[test]
    fn a_tie_sends_the_gradient_to_the_first_maximum_only() -> Result<()> {
        // A constant 3x3 input pooled 3x3 stride 2: one window, nine ties.
        // PyTorch's pool routes the gradient to the first (top-left) one.
        let x = Var::from_tensor(&Tensor::ones((1, 1, 3, 3), DType::F32, &Device::Cpu)?)?;
        let y = max_pool2d(x.as_tensor(), 3, 2)?;
        let grads = y.sum_all()?.backward()?;
        let g = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(g, [1., 0., 0., 0., 0., 0., 0., 0., 0.]);
        Ok(())
    }

    #[test]
    fn im2col_convolution_equals_candle_convolution() -> Result<()> {
        // (in, out, kernel, padding, stride, size): BiT's stem, 3x3 and 1x1
        // convolutions with and without stride, odd sizes included.
        for (case, (ci, co, k, p, s, n)) in [
            (3, 8, 7, 3, 2, 20),
            (4, 6, 3, 1, 1, 9),
            (4, 6, 3, 1, 2, 9),
            (5, 7, 1, 0, 1, 6),
            (5, 7, 1, 0, 2, 7),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 10 + 3 * case as u64;
            let x = Var::from_tensor(&randn(seed, 0., 1., &[2, ci, n, n])?)?;
            let w = Var::from_tensor(&randn(seed + 1, 0., 1., &[co, ci, k, k])?)?;
            let want = x.conv2d(&w, p, s, 1, 1)?;
            let got = conv2d_im2col(&x, &w, p, s)?;
            assert_eq!(want.dims(), got.dims());
            let close = |a: &Tensor, b: &Tensor| -> Result<f32> {
                let scale = a.abs()?.max_all()?.to_scalar::<f32>()?;
                Ok((a - b)?.abs()?.max_all()?.to_scalar::<f32>()? / scale)
            };
            assert!(close(&want, &got)? < 1e-5);
            // Gradients through both, against a fixed random upstream.
            let up = randn(seed + 2, 0., 1., want.dims())?;
            let gw = (want * &up)?.sum_all()?.backward()?;
            let gg = (got * &up)?.sum_all()?.backward()?;
            for v in [&x, &w] {
                let (a, b) = (gw.get(v).unwrap(), gg.get(v).unwrap());
                assert!(
                    close(a, b)? < 1e-5,
                    "gradient, case {ci} {co} {k} {p} {s} {n}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn standardized_weights_have_zero_mean_unit_variance() -> Result<()> {
        let w = randn(40, 0.3, 2., &[4, 3, 3, 3])?;
        let s = standardize(&w)?.flatten_from(1)?;
        let mean = s.mean(1)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let var = s.sqr()?.mean(1)?.to_vec1::<f32>()?;
        assert!(mean < 1e-5);
        assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-4));
        Ok(())
    }
}
