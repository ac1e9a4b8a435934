//! Small differentiable building blocks shared by the backbones.

use candle_core::{Result, Tensor};

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

/// `k x k` max-pool with stride `s` and no padding. candle's `max_pool2d` has
/// no backward pass when kernel != stride, and ODIN and Mahalanobis need
/// d score / d input through BiT's stem pool; so when `x` is tracked by
/// autograd the pool is the maximum over the k² strided views of `x`.
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
    let mut out: Option<Tensor> = None;
    for dy in 0..k {
        let rows = x
            .narrow(2, dy, s * ho)?
            .reshape((b, c, ho, s, need_w))?
            .narrow(3, 0, 1)?
            .squeeze(3)?;
        for dx in 0..k {
            let view = rows
                .narrow(3, dx, s * wo)?
                .reshape((b, c, ho, wo, s))?
                .narrow(4, 0, 1)?
                .squeeze(4)?;
            out = Some(match out {
                None => view,
                Some(acc) => acc.maximum(&view)?,
            });
        }
    }
    Ok(out.expect("k >= 1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn differentiable_pool_equals_candle_pool() -> Result<()> {
        let dev = Device::Cpu;
        for (h, w) in [(9, 9), (10, 7), (12, 12)] {
            let x = Tensor::randn(0f32, 1., (2, 3, h, w), &dev)?;
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
    fn standardized_weights_have_zero_mean_unit_variance() -> Result<()> {
        let w = Tensor::randn(0.3f32, 2., (4, 3, 3, 3), &Device::Cpu)?;
        let s = standardize(&w)?.flatten_from(1)?;
        let mean = s.mean(1)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let var = s.sqr()?.mean(1)?.to_vec1::<f32>()?;
        assert!(mean < 1e-5);
        assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-4));
        Ok(())
    }
}
