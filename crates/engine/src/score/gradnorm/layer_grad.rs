//! Per-image gradients of one layer's weight, batched: given the layer's
//! input x and the gradient dy of the loss at its output (one backward pass
//! of the batch; images are independent in eval mode), image b's weight
//! gradient is dy_b against x_b: a product for linear layers (summed over
//! tokens), over unfolded patches for convolutions. Written as
//! G_b = A_b P_b^T with A [B, O, L] (output gradient) and P [B, F, L]
//! (input patches, F the weight's fan-in), one layer's worth at a time; a
//! depthwise layer's per channel. A BatchNorm folded into the weight at load
//! scales each output channel's gradient (`Captured::out_scale`).

use super::Norm;
use crate::model::probe::{Captured, LayerOp, Standardized};
use candle_core::{DType, Result, Tensor, D};

/// A [B, O, L] and P [B, F, L] of a captured layer, f32 (not for
/// depthwise layers); a folded scale is carried in A.
fn factors(c: &Captured, dy: &Tensor) -> Result<(Tensor, Tensor)> {
    let (a, p) = unscaled_factors(c, dy)?;
    Ok((scaled(c, a)?, p))
}

/// `a` [B, O, ...] times the layer's folded scale per output channel.
fn scaled(c: &Captured, a: Tensor) -> Result<Tensor> {
    match &c.out_scale {
        Some(s) => {
            let mut shape = vec![1; a.rank()];
            shape[1] = s.elem_count();
            a.broadcast_mul(&s.to_dtype(DType::F32)?.reshape(shape)?)
        }
        None => Ok(a),
    }
}

fn unscaled_factors(c: &Captured, dy: &Tensor) -> Result<(Tensor, Tensor)> {
    let x = c.input.to_dtype(DType::F32)?;
    let dy = dy.to_dtype(DType::F32)?;
    match c.op {
        LayerOp::Linear => {
            let b = x.dim(0)?;
            let (i, o) = (x.dim(D::Minus1)?, dy.dim(D::Minus1)?);
            let x = x.reshape((b, (), i))?;
            let dy = dy.reshape((b, (), o))?;
            Ok((dy.transpose(1, 2)?, x.transpose(1, 2)?))
        }
        LayerOp::Conv2d {
            kernel,
            stride,
            padding,
        } => {
            let (b, o, ho, wo) = dy.dims4()?;
            let p = unfold(&x, kernel, stride, padding, (ho, wo))?;
            Ok((dy.reshape((b, o, ho * wo))?, p))
        }
        LayerOp::Depthwise { .. } => candle_core::bail!("a depthwise layer has no A P^T form"),
    }
}

/// Every image's gradient of a depthwise layer's weight, [B, C, k k]:
/// channel c's filter sees only channel c's patches, so the product of
/// output gradient and patches is taken per channel, not across them.
fn depthwise(c: &Captured, dy: &Tensor) -> Result<Tensor> {
    let LayerOp::Depthwise {
        kernel,
        stride,
        pad: (top, left),
    } = c.op
    else {
        candle_core::bail!("not a depthwise layer");
    };
    // Channels-last to NCHW, padded as the layer was.
    let dy = dy.to_dtype(DType::F32)?.permute((0, 3, 1, 2))?;
    let (b, ch, ho, wo) = dy.dims4()?;
    let x = c.input.to_dtype(DType::F32)?.permute((0, 3, 1, 2))?;
    let (_, _, h, w) = x.dims4()?;
    let after =
        |n: usize, before: usize, o: usize| ((o - 1) * stride + kernel).saturating_sub(n + before);
    let x = x
        .pad_with_zeros(2, top, after(h, top, ho))?
        .pad_with_zeros(3, left, after(w, left, wo))?;
    let p = unfold(&x, (kernel, kernel), stride, 0, (ho, wo))?;
    let p = p.reshape((b, ch, kernel * kernel, ho * wo))?;
    let a = scaled(c, dy.reshape((b, ch, 1, ho * wo))?)?;
    p.broadcast_mul(&a)?.sum(3)
}

/// The patches of an NCHW `x` as a convolution reads them: [B, C kh kw,
/// ho wo], rows ordered (c, ky, kx) as the weight's fan-in.
fn unfold(
    x: &Tensor,
    (kh, kw): (usize, usize),
    stride: usize,
    padding: usize,
    (ho, wo): (usize, usize),
) -> Result<Tensor> {
    let (b, c, _, _) = x.dims4()?;
    let x = if padding > 0 {
        x.pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?
    } else {
        x.clone()
    };
    if (kh, kw, stride) == (1, 1, 1) {
        return x.reshape((b, c, ho * wo));
    }
    let mut cols = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        let rows = strided(&x, 2, i, ho, stride)?;
        for j in 0..kw {
            cols.push(strided(&rows, 3, j, wo, stride)?);
        }
    }
    Tensor::stack(&cols, 2)?.reshape((b, c * kh * kw, ho * wo))
}

/// Entries start, start + s, ..., start + s (count - 1) of dimension `dim`.
fn strided(x: &Tensor, dim: usize, start: usize, count: usize, s: usize) -> Result<Tensor> {
    if s == 1 {
        return x.narrow(dim, start, count);
    }
    let avail = (x.dim(dim)? - start).min(s * count);
    let mut t = x.narrow(dim, start, avail)?;
    if avail < s * count {
        t = t.pad_with_zeros(dim, 0, s * count - avail)?;
    }
    let mut shape = t.dims().to_vec();
    shape[dim] = count;
    shape.insert(dim + 1, s);
    t.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

/// d loss / d w from d loss / d w_hat for w_hat = (w - mean) / scale per
/// output channel: (G - mean(G) - w_hat mean(G w_hat)) / scale, means over
/// the fan-in. `g` is [B, O, F].
fn through_standardization(g: &Tensor, s: &Standardized) -> Result<Tensor> {
    let o = g.dim(1)?;
    let z = s.weight.to_dtype(DType::F32)?.reshape((1, o, ()))?;
    let scale = s.scale.to_dtype(DType::F32)?.reshape((1, o, 1))?;
    let mean_g = g.mean_keepdim(2)?;
    let mean_gz = g.broadcast_mul(&z)?.mean_keepdim(2)?;
    g.broadcast_sub(&mean_g)?
        .sub(&z.broadcast_mul(&mean_gz)?)?
        .broadcast_div(&scale)
}

/// The norm of every image's gradient of the layer's stored weight: [B]. The L2 norm of a plain
/// (not standardized) layer is never materialised when the gradients are
/// larger than the Gram matrices: ||A P^T||_F^2 = sum (A^T A) * (P^T P).
pub fn norm(c: &Captured, dy: &Tensor, norm: Norm) -> Result<Tensor> {
    if matches!(c.op, LayerOp::Depthwise { .. }) {
        return norm.of_rows(&depthwise(c, dy)?.flatten_from(1)?);
    }
    let (a, p) = factors(c, dy)?;
    let (o, l, f) = (a.dim(1)?, a.dim(2)?, p.dim(1)?);
    if norm == Norm::L2 && c.standardized.is_none() && l * l < o * f {
        let at = a.t()?.contiguous()?;
        let pt = p.t()?.contiguous()?;
        let ga = at.matmul(&at.t()?)?;
        let gp = pt.matmul(&pt.t()?)?;
        let sq = (ga * gp)?.flatten_from(1)?.sum(1)?;
        // Rounding may leave a tiny negative where the gradient is ~0.
        return sq.relu()?.sqrt();
    }
    let g = a.matmul(&p.t()?)?;
    let g = match &c.standardized {
        Some(s) => through_standardization(&g, s)?,
        None => g,
    };
    norm.of_rows(&g.flatten_from(1)?)
}
