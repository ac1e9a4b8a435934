//! BiT's network through candle-nn's VarBuilder under the seed's names
//! (the only place that names them), and its candle path in NCHW:
//! standardized convolutions and pre-activation bottleneck units, for
//! devices other than the CPU and for training. `Bit::new` also lays the
//! inference weights out for the CPU kernels (`host.rs`).

use super::host::{host_conv, host_norm, HostUnit, HostWeights};
use super::{Bit, BitConfig, Mode, GN_EPS, GROUPS};
use crate::error::Result;
use crate::model::probe::{self, LayerOp, PointKind, Standardized};
use crate::model::{ops, Family, InputSpec, Meta, ModelInfo};
use candle_core::{DType, Module, Tensor};
use candle_nn::{GroupNorm, VarBuilder};

/// A convolution whose weight is standardized: once at load for inference,
/// or at every forward pass when training (so gradients reach the raw weight).
#[derive(Debug, Clone)]
pub(super) struct StdConv {
    /// The checkpoint's name (GradNorm's `layer=`).
    name: String,
    pub(super) weight: Tensor,
    /// sqrt(var + eps) of each output channel of the stored weight, [O] f32,
    /// when `weight` holds it standardized: the gradient with respect to
    /// the stored weight goes through the standardization.
    scale: Option<Tensor>,
    standardize_each_pass: bool,
    stride: usize,
    padding: usize,
}

impl StdConv {
    fn new(
        vb: &VarBuilder,
        shape: (usize, usize, usize, usize),
        stride: usize,
        padding: usize,
        mode: Mode,
        dtype: DType,
    ) -> Result<Self> {
        let raw = vb.get_with_hints(shape, "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let (weight, scale) = match mode {
            Mode::Inference => {
                let raw = raw.to_dtype(DType::F64)?;
                let scale = ops::standardize_scale(&raw)?.to_dtype(DType::F32)?;
                (ops::standardize(&raw)?.to_dtype(dtype)?, Some(scale))
            }
            Mode::Training => (raw, None),
        };
        Ok(StdConv {
            name: vb.prefix(),
            weight,
            scale,
            standardize_each_pass: mode == Mode::Training,
            stride,
            padding,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = if self.standardize_each_pass {
            let w = ops::standardize(&self.weight)?;
            ops::conv2d_im2col(x, &w, self.padding, self.stride)?
        } else if probe::active() {
            // A probe differentiates what follows: im2col's backward is the fast one.
            ops::conv2d_im2col(x, &self.weight, self.padding, self.stride)?
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?
        };
        let (_, _, kh, kw) = self.weight.dims4()?;
        let op = LayerOp::Conv2d {
            kernel: (kh, kw),
            stride: self.stride,
            padding: self.padding,
        };
        let standardized = || {
            Ok(Some(match &self.scale {
                Some(scale) => Standardized {
                    weight: self.weight.clone(),
                    scale: scale.clone(),
                },
                None => Standardized {
                    weight: ops::standardize(&self.weight.detach())?,
                    scale: ops::standardize_scale(&self.weight.detach())?,
                },
            }))
        };
        probe::at_standardized(|| self.name.clone(), op, &self.weight, standardized, x, y)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Unit {
    /// The checkpoint's name of the unit (`body.block4.unit01`).
    name: String,
    gn1: GroupNorm,
    conv1: StdConv,
    gn2: GroupNorm,
    conv2: StdConv,
    gn3: GroupNorm,
    conv3: StdConv,
    downsample: Option<StdConv>,
}

impl Unit {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Each GroupNorm's output is a probe point (GAIA's gradients).
        let gn = |n: &str, gn: &GroupNorm, x: &Tensor| {
            probe::point(
                PointKind::Norm,
                || format!("{}.{n}", self.name),
                gn.forward(x)?,
            )
        };
        let a = gn("gn1", &self.gn1, x)?.relu()?;
        let residual = match &self.downsample {
            Some(d) => d.forward(&a)?,
            None => x.clone(),
        };
        let y = self.conv1.forward(&a)?;
        let y = self.conv2.forward(&gn("gn2", &self.gn2, &y)?.relu()?)?;
        let y = self.conv3.forward(&gn("gn3", &self.gn3, &y)?.relu()?)?;
        y + residual
    }
}

/// A GroupNorm and its (weight, bias) in the model's dtype.
fn group_norm(
    vb: VarBuilder,
    channels: usize,
    dtype: DType,
) -> Result<(GroupNorm, (Tensor, Tensor))> {
    let w = vb
        .get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?
        .to_dtype(dtype)?;
    let b = vb
        .get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?
        .to_dtype(dtype)?;
    let gn = GroupNorm::new(w.clone(), b.clone(), channels, GROUPS, GN_EPS)?;
    Ok((gn, (w, b)))
}

impl Bit {
    /// [`Bit::new`] but for the parameter count (which is read by running
    /// this on the tensor recorder).
    pub(super) fn build(cfg: &BitConfig, vb: VarBuilder, mode: Mode, dtype: DType) -> Result<Self> {
        let device = vb.device().clone();
        // A standardized convolution `name` under `vb`.
        let conv = |vb: &VarBuilder, name: &str, shape, stride, padding| {
            StdConv::new(&vb.pp(name), shape, stride, padding, mode, dtype)
        };
        let root = conv(&vb.pp("root"), "conv", (cfg.width, 3, 7, 7), 2, 3)?;
        let mut stages = Vec::with_capacity(4);
        let mut host_stages = Vec::with_capacity(4);
        // Our kernels serve CPU inference; training differentiates the weights.
        let host = device.is_cpu() && mode == Mode::Inference;
        let mut cin = cfg.width;
        for s in 0..4 {
            let (cout, cmid) = (cfg.stage_out(s), cfg.stage_mid(s));
            let stride = if s == 0 { 1 } else { 2 };
            let vb_block = vb.pp("body").pp(format!("block{}", s + 1));
            let mut units = Vec::with_capacity(cfg.units[s]);
            let mut host_units = Vec::with_capacity(cfg.units[s]);
            for u in 0..cfg.units[s] {
                let vbu = vb_block.pp(format!("unit{:02}", u + 1));
                let (unit_in, unit_stride) = if u == 0 { (cin, stride) } else { (cout, 1) };
                // In the seed's state-dict order (the recorder lists them so).
                let (gn1, gn1_wb) = group_norm(vbu.pp("gn1"), unit_in, dtype)?;
                let conv1 = conv(&vbu, "conv1", (cmid, unit_in, 1, 1), 1, 0)?;
                let (gn2, gn2_wb) = group_norm(vbu.pp("gn2"), cmid, dtype)?;
                let conv2 = conv(&vbu, "conv2", (cmid, cmid, 3, 3), unit_stride, 1)?;
                let (gn3, gn3_wb) = group_norm(vbu.pp("gn3"), cmid, dtype)?;
                let conv3 = conv(&vbu, "conv3", (cout, cmid, 1, 1), 1, 0)?;
                let downsample = (unit_stride != 1 || unit_in != cout)
                    .then(|| conv(&vbu, "downsample", (cout, unit_in, 1, 1), unit_stride, 0))
                    .transpose()?;
                let unit = Unit {
                    name: vbu.prefix(),
                    gn1,
                    conv1,
                    gn2,
                    conv2,
                    gn3,
                    conv3,
                    downsample,
                };
                if host {
                    host_units.push(HostUnit {
                        gn1: host_norm(&gn1_wb)?,
                        conv1: host_conv(&unit.conv1.weight)?,
                        gn2: host_norm(&gn2_wb)?,
                        conv2: host_conv(&unit.conv2.weight)?,
                        gn3: host_norm(&gn3_wb)?,
                        conv3: host_conv(&unit.conv3.weight)?,
                        downsample: unit
                            .downsample
                            .as_ref()
                            .map(|c| host_conv(&c.weight))
                            .transpose()?,
                        stride: unit_stride,
                    });
                }
                units.push(unit);
            }
            stages.push(units);
            host_stages.push(host_units);
            cin = cout;
        }
        let d = cfg.feature_dim();
        let (gn_head, gn_head_wb) = group_norm(vb.pp("before_head").pp("gn"), d, dtype)?;
        let vbh = vb.pp("head").pp("conv");
        let head_w = vbh
            .get_with_hints(
                (cfg.num_classes, d, 1, 1),
                "weight",
                candle_nn::Init::Const(0.),
            )?
            .reshape((cfg.num_classes, d))?;
        let head_b = vbh.get_with_hints(cfg.num_classes, "bias", candle_nn::Init::Const(0.))?;
        let (head_w, head_b) = match mode {
            // Training keeps the Vars themselves so their gradients exist.
            Mode::Training => (head_w, head_b),
            Mode::Inference => (head_w.to_dtype(DType::F32)?, head_b.to_dtype(DType::F32)?),
        };
        let host = match host {
            true => Some(HostWeights {
                root: host_conv(&root.weight)?,
                stages: host_stages,
                gn_head: host_norm(&gn_head_wb)?,
            }),
            false => None,
        };
        let info = ModelInfo {
            name: cfg.describe(),
            family: Family::Bit,
            num_classes: cfg.num_classes,
            feature_dim: d,
            tap_dims: cfg.tap_dims(),
            num_params: 0,
            input: InputSpec::half(480),
        };
        Ok(Bit {
            cfg: cfg.clone(),
            root,
            stages,
            gn_head,
            host,
            meta: Meta::new(info, &device, dtype, (head_w, head_b)),
        })
    }

    pub(super) fn root(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.to_dtype(self.meta.dtype)?;
        let y = self.root.forward(&x)?;
        // Zero-pad 1, then 3x3 stride-2 pool without padding (not the same as
        // a pool with padding 1, as the seed notes).
        let y = y.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        ops::max_pool2d(&y, 3, 2)
    }

    pub(super) fn candle_stage(&self, s: usize, mut x: Tensor) -> candle_core::Result<Tensor> {
        for unit in &self.stages[s] {
            x = unit.forward(&x)?;
        }
        Ok(x)
    }
}
