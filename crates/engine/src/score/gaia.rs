//! GAIA (Chen et al., NeurIPS 2023: gradient-based attribution abnormality),
//! as the authors' code computes it (JGEthanChen/GAIA-OOD, cal_method.py,
//! with the `before_head` hooks of hook.py): gradients at the outputs of
//! normalization layers, averaged over each channel's positions.
//!
//! - GAIA-Z: the gradient of the top logit; per channel the fraction of
//!   positions where it is non-zero; the score is minus the mean of their
//!   squares over every channel of every layer and of the head's input.
//! - GAIA-A: the gradient of the pooled feature's sum, channel-averaged,
//!   divided by the head's term sqrt(mean_d |d sum_c log p_c / d h_d|) (the
//!   head's input as the authors hook it: the pooled feature for BiT,
//!   layer4's map for ResNet, which divides it by its positions); minus the
//!   mean square over every channel.
//!
//! One forward pass with a probe point at every chosen layer and one
//! backward pass serve a whole batch: images are independent in eval mode,
//! so the gradient of a batch sum is every image's own.

use super::{Forward, Method, Prepare, Score};
use crate::error::{Error, Result};
use crate::model::{probe, Classifier, Family};
use candle_core::{DType, Tensor, D};

/// Which of the two scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// cal_grad_value.
    A,
    /// cal_zero.
    Z,
}

/// The layers the authors hook (their ImageNet choice for BiT, their
/// ResNet choice for ResNet), by the model's names: block prefixes whose
/// normalization outputs count, and the map that stands for the head's
/// input when it is not the pooled feature. EfficientNet-Lite, which no
/// paper gives layers for, takes ResNet's counterpart: every BatchNorm of
/// the stride-16 and stride-32 stages and of the head convolution, the
/// pooled feature as the head's input (as BiT). None where GAIA has no
/// layers to read (ViT).
pub fn default_layers(model: &dyn Classifier) -> Option<(Vec<String>, Option<String>)> {
    let last_two = || [model.stage_probe_blocks(3), model.stage_probe_blocks(4)].concat();
    match model.info().family {
        Family::Bit => Some((model.stage_probe_blocks(4), None)),
        Family::ResNet => Some((last_two(), model.stage_probe_output(4))),
        Family::EfficientNetLite => Some((last_two(), None)),
        Family::Vit => None,
    }
}

struct Gaia {
    variant: Variant,
    /// Prefixes of the normalization layers read.
    layers: Vec<String>,
    /// The head's input map (ResNet's `layer4`), when not the pooled feature.
    head_map: Option<String>,
}

/// The mean over every position of each channel: [B, C, ...] -> [B, C].
fn channel_mean(g: &Tensor) -> candle_core::Result<Tensor> {
    let g = g.to_dtype(DType::F32)?;
    if g.rank() <= 2 {
        return Ok(g);
    }
    g.flatten_from(2)?.mean(D::Minus1)
}

impl Score for Gaia {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let select = probe::Selection {
            norms: self.layers.clone(),
            stages: self.head_map.iter().cloned().collect(),
        };
        let (out, points) = probe::points(&select, || f.model.forward(f.x));
        let out = out?;
        let (points, head_points): (Vec<_>, Vec<_>) = points
            .into_iter()
            .partition(|p| p.kind == probe::PointKind::Norm);
        if points.is_empty() {
            return Err(Error::Invalid(format!(
                "gaia: no normalization layer of {} lies under `{}`",
                f.model.info().name,
                self.layers.join("+")
            )));
        }
        let z = out.logits.detach();
        let (w, _) = f.model.head();
        let (_, c) = z.dims2()?;
        let grad_at = |grads: &candle_core::backprop::GradStore, p: &probe::Point| {
            grads.get(p.var.as_tensor()).cloned().ok_or_else(|| {
                Error::Invalid(format!("gaia: the output does not depend on `{}`", p.name))
            })
        };
        let score = match self.variant {
            Variant::Z => {
                // y.max(dim=1).values.sum().backward()
                let top = z.argmax_keepdim(D::Minus1)?;
                let classes = Tensor::arange(0u32, c as u32, z.device())?.unsqueeze(0)?;
                let onehot = classes.broadcast_eq(&top)?.to_dtype(DType::F32)?;
                let grads = (&out.logits * &onehot)?.sum_all()?.backward()?;
                let mut cols = Vec::with_capacity(points.len() + 1);
                for p in &points {
                    let g = grad_at(&grads, p)?;
                    cols.push(channel_mean(&g.ne(0f64)?)?);
                }
                // The head's input: d y_top / d h = W[top], the same at
                // every position of layer4's map.
                let gh = onehot.matmul(w)?;
                cols.push(gh.ne(0f64)?.to_dtype(DType::F32)?);
                Tensor::cat(&cols, 1)?.sqr()?.mean(D::Minus1)?
            }
            Variant::A => {
                // d sum_c log_softmax(z)_c / dz = 1 - C p, through the head.
                let p = candle_nn::ops::softmax(&z, D::Minus1)?;
                let gz = p.affine(-(c as f64), 1.0)?;
                let mut gh = gz.matmul(w)?;
                if let Some(map) = head_points.first() {
                    // layer4's map feeds the head through its mean.
                    let positions: usize = map.var.dims()[2..].iter().product();
                    gh = (gh / positions as f64)?;
                }
                let output = gh.abs()?.mean_keepdim(D::Minus1)?.sqrt()?;
                let grads = out.feature.sum_all()?.backward()?;
                let mut cols = Vec::with_capacity(points.len());
                for p in &points {
                    cols.push(channel_mean(&grad_at(&grads, p)?)?);
                }
                let inner = Tensor::cat(&cols, 1)?.abs()?;
                inner.broadcast_div(&output)?.sqr()?.mean(D::Minus1)?
            }
        };
        Ok(score.neg()?)
    }
}

pub(crate) fn prepare(m: &Method, ctx: &Prepare, variant: Variant) -> Result<Box<dyn Score>> {
    let info = ctx.model.info();
    let Some((defaults, head_map)) = default_layers(ctx.model) else {
        return Err(Error::Invalid(format!(
            "{}: defined for convolutional nets with normalization layers (BiT, ResNet, EfficientNet-Lite), not {}",
            m.key(),
            info.name
        )));
    };
    let layers = match super::text(m, "layers")? {
        "auto" => defaults,
        given => given
            .split('+')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    Ok(Box::new(Gaia {
        variant,
        layers,
        head_map,
    }))
}
