//! EfficientNet-Lite's forward pass, channels-last: TF "same" padding, the
//! stem, MBConv blocks and the head convolution, each on our CPU kernels or
//! on candle ops, and the stages between the Mahalanobis taps.

use super::{Block, EfficientNetLite};
use crate::error::{Error, Result};
use crate::model::probe::{self, LayerOp, PointKind};
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
    /// Our CPU kernels, unless a probe reads the weight layers, which only
    /// candle's path passes through it (probe points both paths pass).
    fn host_kernels(&self) -> bool {
        self.cpu && !probe::reads_layers()
    }

    /// After folded layer `p` (its BatchNorm's output `y`, a probe point):
    /// ReLU6, or the residual added.
    fn after_norm(p: &Folded, y: Tensor, relu6: bool, residual: Option<&Tensor>) -> Result<Tensor> {
        let y = probe::point_channels_last(PointKind::Norm, &p.bn_name, y)?;
        Ok(match (relu6, residual) {
            (true, _) => y.clamp(0f32, 6f32)?,
            (false, Some(r)) => (y + r)?,
            (false, None) => y,
        })
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
        // A point at the stem's BatchNorm takes candle's stem.
        if self.host_kernels() && !probe::takes(PointKind::Norm, &stem.bn_name) {
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
        Self::after_norm(stem, y.broadcast_add(&stem.b)?, true, None)
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
            // A point at the BatchNorm's output: the product and bias alone,
            // then the ReLU6 or add apart.
            if probe::takes(PointKind::Norm, &p.bn_name) {
                let y = kernels::pointwise(x, &p.w_host, Some(&p.b_host), Act::Linear, None)?;
                return Self::after_norm(p, y, relu6, residual);
            }
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
        Self::after_norm(p, y.broadcast_add(&p.b)?, relu6, residual)
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
            let conv = ConvRelu6::new(g, d.w_host.values(), &d.b_host);
            if probe::takes(PointKind::Norm, &d.bn_name) {
                // The BatchNorm's output, then the ReLU6 apart.
                let z = kernels::depthwise(&y, conv, Act::Linear)?;
                Self::after_norm(d, z, true, None)?
            } else {
                kernels::depthwise_relu6(&y, conv)?
            }
        } else if probe::active() {
            let op = LayerOp::Depthwise {
                kernel: g.k,
                stride: g.s,
                pad: (g.pt, g.pl),
            };
            let z = kernels::depthwise_linear(&y, g, &d.w, &d.b)?;
            Self::after_norm(d, probed(d, op, &y, z)?, true, None)?
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
            // Each block's output is a probe point (NAC's states).
            y = probe::point_channels_last(PointKind::Stage, &blk.name, self.block(&y, blk)?)?;
        }
        if l == 4 {
            y = self.pointwise(&y, &self.head_conv, true, None)?;
        }
        Ok(y)
    }

    /// Stage `l`'s blocks and, in the last stage, the head convolution.
    fn stage_probe_blocks(&self, l: usize) -> Vec<String> {
        let mut names: Vec<String> = self.blocks[self.stage_blocks(l)]
            .iter()
            .map(|b| b.name.clone())
            .collect();
        if l == 4 {
            names.push(self.head_conv.bn_name.clone());
        }
        names
    }

    /// The last block of stages 1-3; stage 4's output is the head
    /// convolution's, whose pooled form is the feature.
    fn stage_probe_output(&self, l: usize) -> Option<String> {
        (l < 4).then(|| self.blocks[self.taps[l - 1]].name.clone())
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

    /// Probe points on the CPU kernels (each selected BatchNorm's output
    /// computed apart from its ReLU6 or add, the stem's on candle) give
    /// the values and gradients of candle's path, and keep the logits.
    #[test]
    fn probe_points_on_the_kernels_equal_candles_path() {
        use candle_core::{DType, Device};
        let fast =
            EfficientNetLite::random("efficientnet-lite0", &Device::Cpu, DType::F32).unwrap();
        let slow = fast.clone().with_candle_ops();
        let x = crate::model::fixed_input(&[2, 3, 64, 64], 1);
        let select = probe::Selection {
            norms: vec!["_bn0".into(), "_blocks.5".into(), "_bn1".into()],
            stages: vec!["_blocks.2".into(), "_blocks.10".into()],
        };
        let names = crate::model::assert_same_points([&fast, &slow], &x, &select, 1e-4);
        assert_eq!(
            names,
            [
                "_bn0",
                "_blocks.2",
                "_blocks.5._bn0",
                "_blocks.5._bn1",
                "_blocks.5._bn2",
                "_blocks.10",
                "_bn1"
            ]
        );
        // The stages and layers the detectors read by default.
        assert_eq!(fast.stage_probe_output(1).as_deref(), Some("_blocks.2"));
        assert_eq!(fast.stage_probe_output(3).as_deref(), Some("_blocks.10"));
        let last: Vec<String> = [fast.stage_probe_blocks(3), fast.stage_probe_blocks(4)].concat();
        assert_eq!(last.first().map(String::as_str), Some("_blocks.5"));
        assert_eq!(last.last().map(String::as_str), Some("_bn1"));
    }
}
