//! BiT's stem pool: k x k max-pool over zero-padded NHWC.

use super::op::{apply_f32, gradient, Bwd, Grads, In, Kernel};
use super::{par_rows, Geometry};
use candle_core::{Result, Shape, Tensor};
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

impl Kernel<1> for MaxPoolPadded {
    const NAME: &'static str = "nhwc-max-pool-padded";

    fn forward(&self, [In { x, l }]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let g = self.g;
        let &[n, h, w, c] = l.dims() else {
            candle_core::bail!("max-pool: expected [B, H, W, C], got {:?}", l.dims())
        };
        if (h, w) != (g.h, g.w) {
            candle_core::bail!("max-pool: input {:?} does not fit {g:?}", l.dims())
        }
        let plane = h * w * c;
        let out = par_rows((n, g.ho, g.wo * c), |i, oy, o, _| {
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
        Ok((out, Shape::from((n, g.ho, g.wo, c))))
    }

    fn backward(&self, t: Bwd<'_, 1>) -> Grads<1> {
        let op = MaxPoolPaddedGrad(MaxPoolPadded { g: self.g });
        Ok([gradient(op, [t.grad, t.args[0]])?])
    }
}

/// d input of [`MaxPoolPadded`] from (d output, input): each output's
/// gradient goes to its maximum (nowhere when that is a padding zero).
pub(super) struct MaxPoolPaddedGrad(MaxPoolPadded);

impl Kernel<2> for MaxPoolPaddedGrad {
    const NAME: &'static str = "nhwc-max-pool-padded-grad";

    fn forward(
        &self,
        [In { x: grad, l: l1 }, In { x, l: l2 }]: [In<'_>; 2],
    ) -> Result<(Vec<f32>, Shape)> {
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
        Ok((out, l2.shape().clone()))
    }
}

/// k x k max-pool of stride s of NHWC `x` zero-padded by `pad` on every
/// side, on the CPU, differentiable with respect to `x`. Other float dtypes
/// run in f32.
pub fn max_pool_padded(x: &Tensor, k: usize, s: usize, pad: usize) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let op = MaxPoolPadded {
        g: Geometry::symmetric(h, w, k, s, pad)?,
    };
    apply_f32(x, op)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use candle_core::Var;

    /// Pad with zeros, then max-pool, by its definition: each window's
    /// first maximum in scan order takes the window's upstream gradient
    /// (PyTorch's rule for ties). Returns the output and the input gradient.
    fn direct(
        x: &[f32],
        (n, h, w, c): (usize, usize, usize, usize),
        (k, s, pad): (usize, usize, usize),
        upstream: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let (ho, wo) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
        let (mut out, mut grad) = (Vec::new(), vec![0f32; x.len()]);
        for b in 0..n {
            for oy in 0..ho {
                for ox in 0..wo {
                    for ch in 0..c {
                        // (value, input index or None for a padding zero)
                        let mut best: Option<(f32, Option<usize>)> = None;
                        for dy in 0..k {
                            for dx in 0..k {
                                let (y, xx) = (
                                    (oy * s + dy) as isize - pad as isize,
                                    (ox * s + dx) as isize - pad as isize,
                                );
                                let inside =
                                    y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w;
                                let at = inside
                                    .then(|| ((b * h + y as usize) * w + xx as usize) * c + ch);
                                let v = at.map_or(0.0, |i| x[i]);
                                if best.is_none_or(|(m, _)| v > m) {
                                    best = Some((v, at));
                                }
                            }
                        }
                        let (v, at) = best.expect("a window");
                        if let Some(i) = at {
                            grad[i] += upstream[out.len()];
                        }
                        out.push(v);
                    }
                }
            }
        }
        (out, grad)
    }

    #[test]
    fn padded_max_pool_matches_its_definition_with_gradients() {
        for (h, w) in [(9, 9), (10, 7), (4, 5)] {
            // Negative values too, so that padding zeros win some windows.
            let x = Var::from_tensor(&rand(&[2, h, w, 3], 61)).unwrap();
            let ours = input_grad(&x, |x| max_pool_padded(x, 3, 2, 1).unwrap());
            let upstream = host(&rand(&[2, h.div_ceil(2), w.div_ceil(2), 3], 77));
            let want = direct(&host(x.as_tensor()), (2, h, w, 3), (3, 2, 1), &upstream);
            assert_eq!(max_diff(&ours.0, &want.0), 0.0);
            assert!(max_diff(&ours.1, &want.1) < 1e-6);
        }
    }

    #[test]
    fn a_tie_goes_to_the_first_maximum_as_in_pytorch() {
        // Every value equal: each window's first (top-left) entry takes the
        // whole gradient; padding zeros tie with zero inputs and lose.
        for v in [1f32, 0.0] {
            let x = Var::from_tensor(
                &(Tensor::ones(
                    (1, 5, 5, 2),
                    candle_core::DType::F32,
                    &candle_core::Device::Cpu,
                )
                .unwrap()
                    * v as f64)
                    .unwrap(),
            )
            .unwrap();
            let ours = input_grad(&x, |x| max_pool_padded(x, 3, 2, 1).unwrap());
            let upstream = host(&rand(&[1, 3, 3, 2], 77));
            let want = direct(&host(x.as_tensor()), (1, 5, 5, 2), (3, 2, 1), &upstream);
            assert_eq!(ours.0, want.0);
            assert_eq!(ours.1, want.1, "value {v}");
        }
    }
}
