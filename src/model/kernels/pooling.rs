//! BiT's stem pool: k x k max-pool over zero-padded NHWC.

use super::{f32_slice, Geometry};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
/// k x k max-pool of stride s over NHWC f32 padded with `pad` zeros on
/// every side, the zeros taking part (BiT pads explicitly, then pools).
pub(super) struct MaxPoolPadded {
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
pub(super) struct MaxPoolPaddedGrad(MaxPoolPadded);

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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::testing::*;
    use candle_core::Var;

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
