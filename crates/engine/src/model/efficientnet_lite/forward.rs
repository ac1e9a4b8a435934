//! EfficientNet-Lite's forward pass, channels-last: TF "same" padding, the
//! stem, MBConv blocks and the head convolution, each on our CPU kernels or
//! on candle ops, and the stages between the Mahalanobis taps.

use super::{Block, EfficientNetLite};
use crate::error::{Error, Result};
use crate::model::probe::{self, LayerOp};
use crate::model::{Backbone, Meta};
use candle_core::Tensor;
use gradnorm_kernels::{self as kernels, Act, ConvRelu6, Geometry};

use super::build::Folded;

/// TensorFlow "same" padding as the wheel's Conv2dStaticSamePadding: output
/// ceil(i / s), total padding max((o - 1) s + k - i, 0), the smaller half
/// before (so stride 2 on an even size pads one more after than before).
/// The wheel fixes the padding for its default resolution; computing it from
/// the actual input size gives the same there and stays right at others.
fn same_padding(i: usize, k: usize, s: usize) -> (usize, usize, usize) {
    let o = i.div_ceil(s);
    let pad = ((o - 1) * s + k).saturating_sub(i);
    (pad / 2, pad - pad / 2, o)
}

/// The "same"-padded geometry of a k x k stride-s convolution of h x w.
fn same_geometry(h: usize, w: usize, k: usize, s: usize) -> Geometry {
    let (pt, _, ho) = same_padding(h, k, s);
    let (pl, _, wo) = same_padding(w, k, s);
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

/// `y` = the folded layer `p`'s output for `x`, through the probe (a
/// layer's gradient, GradNorm's `layer=`); untouched while none is set.
fn probed(p: &Folded, op: LayerOp, x: &Tensor, y: Tensor) -> Result<Tensor> {
    if !probe::active() {
        return Ok(y);
    }
    Ok(probe::at_folded(
        || p.name.clone(),
        op,
        &p.stored,
        &p.scale,
        x,
        y,
    )?)
}

impl EfficientNetLite {
    /// Our CPU kernels, unless a probe is set: they pass no layer through
    /// it, so the candle ops run then.
    fn host_kernels(&self) -> bool {
        self.cpu && !probe::active()
    }

    /// Stem: "same"-padded 3x3 stride-2 convolution, BatchNorm, ReLU6;
    /// NCHW in, NHWC out.
    fn stem_nhwc(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 {
            return Err(Error::Invalid(format!(
                "EfficientNet-Lite takes 3-channel input, not {c}"
            )));
        }
        let g = same_geometry(h, w, 3, 2);
        let x = x.to_dtype(self.meta.dtype)?;
        let stem = &self.stem;
        if self.host_kernels() {
            return Ok(kernels::stem_relu6(
                &x,
                ConvRelu6::new(g, stem.w_host.values(), &stem.b_host),
            )?);
        }
        let (_, pb, _) = same_padding(h, 3, 2);
        let (_, pr, _) = same_padding(w, 3, 2);
        let x = x.pad_with_zeros(2, g.pt, pb)?.pad_with_zeros(3, g.pl, pr)?;
        let y = x.conv2d(&stem.w, 0, 2, 1, 1)?;
        let op = LayerOp::Conv2d {
            kernel: (3, 3),
            stride: 2,
            padding: 0,
        };
        let y = probed(stem, op, &x, y)?.permute((0, 2, 3, 1))?;
        Ok(y.broadcast_add(&stem.b)?.clamp(0f32, 6f32)?)
    }

    /// 1x1 convolution + bias, then ReLU6 or the residual.
    fn pointwise(
        &self,
        x: &Tensor,
        p: &Folded,
        relu6: bool,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        if self.host_kernels() {
            return Ok(kernels::pointwise(
                x,
                &p.w_host,
                Some(&p.b_host),
                if relu6 { Act::Relu6 } else { Act::Linear },
                residual,
            )?);
        }
        let (b, h, w, c) = x.dims4()?;
        let y = x
            .reshape((b * h * w, c))?
            .matmul(&p.w)?
            .reshape((b, h, w, p.w.dim(1)?))?;
        // Over the channels of each pixel: a linear layer to the probe.
        let y = probed(p, LayerOp::Linear, x, y)?;
        let y = y.broadcast_add(&p.b)?;
        Ok(match (relu6, residual) {
            (true, _) => y.clamp(0f32, 6f32)?,
            (false, Some(r)) => (y + r)?,
            (false, None) => y,
        })
    }

    fn block(&self, x: &Tensor, blk: &Block) -> Result<Tensor> {
        let y = match &blk.expand {
            Some(e) => self.pointwise(x, e, true, None)?,
            None => x.clone(),
        };
        let d = &blk.depthwise;
        let (_, h, w, _) = y.dims4()?;
        let g = same_geometry(h, w, blk.cfg.kernel, blk.cfg.stride);
        let y = if self.host_kernels() {
            kernels::depthwise_relu6(&y, ConvRelu6::new(g, d.w_host.values(), &d.b_host))?
        } else if probe::active() {
            let op = LayerOp::Depthwise {
                kernel: g.k,
                stride: g.s,
                pad: (g.pt, g.pl),
            };
            let z = kernels::depthwise_linear(&y, g, &d.w, &d.b)?;
            probed(d, op, &y, z)?.clamp(0f32, 6f32)?
        } else {
            kernels::depthwise_composed(&y, g, &d.w, &d.b)?
        };
        let residual = blk.cfg.residual().then_some(x);
        self.pointwise(&y, &blk.project, false, residual)
    }

    /// The blocks between taps `l - 1` and `l` (1 <= l <= 4); stage 4 also
    /// runs the head convolution.
    fn stage_blocks(&self, l: usize) -> std::ops::Range<usize> {
        let start = if l == 1 { 0 } else { self.taps[l - 2] + 1 };
        let end = if l == 4 {
            self.blocks.len()
        } else {
            self.taps[l - 1] + 1
        };
        start..end
    }
}

impl Backbone for EfficientNetLite {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn stem(&self, x: &Tensor) -> Result<Tensor> {
        self.stem_nhwc(x)
    }

    fn stage(&self, l: usize, mut y: Tensor) -> Result<Tensor> {
        for blk in &self.blocks[self.stage_blocks(l)] {
            y = self.block(&y, blk)?;
        }
        if l == 4 {
            y = self.pointwise(&y, &self.head_conv, true, None)?;
        }
        Ok(y)
    }

    /// Spatial mean of [B, H, W, C] as f32 [B, C]; the pooled head output
    /// (tap 4) is also the penultimate feature.
    fn tap(&self, _l: usize, state: &Tensor) -> Result<Tensor> {
        Ok(kernels::mean(state)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_is_tensorflows() {
        // 224 -> 112 with stride 2 and kernel 3 pads 0 before, 1 after.
        assert_eq!(same_padding(224, 3, 2), (0, 1, 112));
        assert_eq!(same_padding(56, 5, 2), (1, 2, 28));
        assert_eq!(same_padding(14, 5, 1), (2, 2, 14));
        assert_eq!(same_padding(7, 3, 2), (1, 1, 4));
    }
}
