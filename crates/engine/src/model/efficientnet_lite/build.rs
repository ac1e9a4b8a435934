//! The wheel's tensors read through a VarBuilder, under the wheel's own
//! names (`_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`, ...: the only
//! place that names them), then each BatchNorm folded into the convolution
//! before it and the weights packed once, at load, in the layouts the
//! forward pass wants: channels-last f32 for the CPU kernels, tensors of the
//! model's dtype for candle.

use super::config::{BlockConfig, EfficientNetConfig, HEAD, STEM};
use super::{Block, EfficientNetLite};
use crate::error::Result;
use crate::model::{Family, InputSpec, Meta, ModelInfo};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

const BN_EPS: f64 = 1e-3;

/// A convolution and the BatchNorm after it, as the wheel stores them.
pub(super) struct ConvBn {
    /// The convolution's name in the checkpoint (`_blocks.3._expand_conv`).
    name: String,
    /// Its BatchNorm's (`_blocks.3._bn0`): a probe point at its output.
    bn_name: String,
    weight: Tensor,
    /// weight, bias, running_mean, running_var.
    bn: [Tensor; 4],
}

/// Every tensor of the wheel's state dict, in its order.
pub(crate) struct Wheel {
    stem: ConvBn,
    blocks: Vec<(Option<ConvBn>, ConvBn, ConvBn)>,
    head: ConvBn,
    fc_w: Tensor,
    fc_b: Tensor,
}

impl ConvBn {
    /// `{conv}.weight` (He-normal when random) and the four tensors of
    /// BatchNorm `bn` (identity when random).
    fn read(vb: &VarBuilder, conv: &str, bn: &str, shape: [usize; 4]) -> Result<Self> {
        let name = vb.pp(conv).prefix();
        let weight = vb.pp(conv).get_with_hints(
            shape.as_slice(),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let vbn = vb.pp(bn);
        let get = |leaf: &str, init: f64| vbn.get_with_hints(shape[0], leaf, Init::Const(init));
        let bn = [
            get("weight", 1.0)?,
            get("bias", 0.0)?,
            get("running_mean", 0.0)?,
            get("running_var", 1.0)?,
        ];
        Ok(ConvBn {
            name,
            bn_name: vbn.prefix(),
            weight,
            bn,
        })
    }

    /// The folded weight (OIHW) and bias: per output channel
    /// `scale = gamma / sqrt(var + eps)`, weight * scale and
    /// `beta - mean * scale`, computed in f64; and the scale.
    fn fold(&self) -> Result<(Vec<f32>, Vec<f32>, Vec<f64>)> {
        let bn = self.bn.iter().map(host).collect::<Result<Vec<_>>>()?;
        let (gamma, beta, mean, var) = (&bn[0], &bn[1], &bn[2], &bn[3]);
        let scale: Vec<f64> = gamma
            .iter()
            .zip(var)
            .map(|(&g, &v)| g as f64 / (v as f64 + BN_EPS).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((&b, &m), &s)| (b as f64 - m as f64 * s) as f32)
            .collect();
        let w = host(&self.weight)?;
        let w: Vec<f32> = w
            .chunks(w.len() / scale.len())
            .zip(&scale)
            .flat_map(|(w, &s)| w.iter().map(move |&v| (v as f64 * s) as f32))
            .collect();
        Ok((w, shift, scale))
    }
}

impl Wheel {
    /// Asks `vb` (f32) for every tensor of `cfg`, in the state dict's order.
    pub(crate) fn read(cfg: &EfficientNetConfig, vb: VarBuilder) -> Result<Self> {
        let stem = ConvBn::read(&vb, "_conv_stem", "_bn0", [STEM, 3, 3, 3])?;
        let mut blocks = Vec::with_capacity(cfg.blocks.len());
        for (i, b) in cfg.blocks.iter().enumerate() {
            let vbb = vb.pp(format!("_blocks.{i}"));
            let mid = b.mid();
            let expand = (b.expand != 1)
                .then(|| ConvBn::read(&vbb, "_expand_conv", "_bn0", [mid, b.cin, 1, 1]))
                .transpose()?;
            let k = b.kernel;
            let depthwise = ConvBn::read(&vbb, "_depthwise_conv", "_bn1", [mid, 1, k, k])?;
            let project = ConvBn::read(&vbb, "_project_conv", "_bn2", [b.cout, mid, 1, 1])?;
            blocks.push((expand, depthwise, project));
        }
        let last = cfg.blocks.last().map_or(STEM, |b| b.cout);
        let head = ConvBn::read(&vb, "_conv_head", "_bn1", [HEAD, last, 1, 1])?;
        let fc = vb.pp("_fc");
        let small = Init::Randn {
            mean: 0.0,
            stdev: 0.01,
        };
        let fc_w = fc.get_with_hints((cfg.num_classes, HEAD), "weight", small)?;
        let fc_b = fc.get_with_hints(cfg.num_classes, "bias", Init::Const(0.0))?;
        Ok(Wheel {
            stem,
            blocks,
            head,
            fc_w,
            fc_b,
        })
    }
}

/// Reads a tensor as f32 values.
fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// Where the folded weights go: the model's device and dtype.
struct Target<'a> {
    device: &'a Device,
    dtype: DType,
}

impl Target<'_> {
    fn tensor(&self, v: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_vec(v, shape, self.device)?.to_dtype(self.dtype)?)
    }

    /// The CPU kernels compute in f32 on values of the model's dtype (as
    /// its weights are on other devices).
    fn host(&self, v: Vec<f32>) -> Result<Arc<[f32]>> {
        if self.dtype == DType::F32 {
            return Ok(v.into());
        }
        let t = Tensor::new(v.as_slice(), &Device::Cpu)?.to_dtype(self.dtype)?;
        Ok(t.to_dtype(DType::F32)?.to_vec1::<f32>()?.into())
    }
}

/// A convolution with its BatchNorm folded in. `w_host` is channels-last
/// [kh, kw, cin, cout] (for a 1x1 convolution [cin, cout], so that pixels
/// [N, cin] x weight gives [N, cout]; for a depthwise one [k, k, C]); `w` is
/// the same values as a tensor of the shape candle's path wants.
#[derive(Debug, Clone)]
pub(super) struct Folded {
    pub(super) w: Tensor,
    pub(super) b: Tensor,
    pub(super) w_host: gradnorm_kernels::Weights,
    pub(super) b_host: Arc<[f32]>,
    /// The stored convolution's name and shape (OIHW), and BatchNorm's
    /// scale per output channel (f32 [O]) that the weight was multiplied
    /// by: what a probe needs for the stored weight's gradient.
    pub(super) name: String,
    pub(super) stored: Vec<usize>,
    pub(super) scale: Tensor,
    /// The BatchNorm's name: the probe point at the folded layer's output
    /// (before its ReLU6 or residual add).
    pub(super) bn_name: String,
}

impl Folded {
    /// `conv` folded; candle's weight is the channels-last values as `dims`,
    /// or OIHW when `dims` is None.
    fn new(conv: &ConvBn, dims: Option<&[usize]>, t: &Target) -> Result<Self> {
        let (oihw, bias, scale) = conv.fold()?;
        let (cout, cin, kh, kw) = conv.weight.dims4()?;
        // OIHW -> [kh, kw, cin, cout].
        let mut w_host = vec![0f32; oihw.len()];
        for (o, filter) in oihw.chunks(cin * kh * kw).enumerate() {
            for (i, plane) in filter.chunks(kh * kw).enumerate() {
                for (j, &v) in plane.iter().enumerate() {
                    w_host[(j * cin + i) * cout + o] = v;
                }
            }
        }
        let w = match dims {
            Some(dims) => t.tensor(w_host.clone(), dims)?,
            None => t.tensor(oihw, conv.weight.dims())?,
        };
        Ok(Folded {
            w,
            b: t.tensor(bias.clone(), &[bias.len()])?,
            w_host: t.host(w_host)?.into(),
            b_host: t.host(bias)?,
            name: conv.name.clone(),
            bn_name: conv.bn_name.clone(),
            stored: conv.weight.dims().to_vec(),
            scale: Tensor::from_vec(
                scale.iter().map(|&s| s as f32).collect::<Vec<_>>(),
                scale.len(),
                t.device,
            )?,
        })
    }
}

impl EfficientNetLite {
    /// The network from the wheel's tensors, BatchNorm folded.
    pub(super) fn fold(
        cfg: &EfficientNetConfig,
        wheel: &Wheel,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let t = Target { device, dtype };
        let pointwise = |c: &ConvBn| {
            let (cout, cin, _, _) = c.weight.dims4()?;
            Folded::new(c, Some(&[cin, cout]), &t)
        };
        let mut blocks = Vec::with_capacity(cfg.blocks.len());
        for (i, (b, (expand, depthwise, project))) in
            cfg.blocks.iter().zip(&wheel.blocks).enumerate()
        {
            let BlockConfig { kernel: k, .. } = *b;
            blocks.push(Block {
                name: format!("_blocks.{i}"),
                cfg: *b,
                expand: expand.as_ref().map(pointwise).transpose()?,
                depthwise: Folded::new(depthwise, Some(&[k, k, b.mid()]), &t)?,
                project: pointwise(project)?,
            });
        }
        let info = ModelInfo {
            name: cfg.describe(),
            family: Family::EfficientNetLite,
            num_classes: cfg.num_classes,
            feature_dim: HEAD,
            tap_dims: cfg.tap_dims(),
            num_params: cfg.num_params(),
            input: InputSpec::half(cfg.resolution),
        };
        // The classifier head stays f32 whatever the body's dtype.
        let head = (wheel.fc_w.to_device(device)?, wheel.fc_b.to_device(device)?);
        Ok(EfficientNetLite {
            cfg: cfg.clone(),
            stem: Folded::new(&wheel.stem, None, &t)?,
            blocks,
            head_conv: pointwise(&wheel.head)?,
            taps: cfg.tap_blocks(),
            meta: Meta::new(info, device, dtype, head),
            cpu: device.is_cpu(),
        })
    }
}

/// What the wheel's reader asks for, told from a config (the config knows
/// its shapes; the reader, built on it, knows the names).
impl EfficientNetConfig {
    /// Every floating-point tensor of the wheel's state dict, in its order
    /// (what [`Wheel::read`] asks its VarBuilder for).
    pub fn tensor_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        crate::model::params::tensor_shapes(|vb| Wheel::read(self, vb))
    }

    /// Learned parameters (PyTorch's `parameters()`: BatchNorm running
    /// statistics are buffers, not parameters).
    pub fn num_params(&self) -> usize {
        // The recorder hands out every tensor Wheel::read asks for.
        let shapes = self.tensor_shapes().expect("the recorder cannot fail");
        crate::model::params::count_parameters(&shapes)
    }
}
