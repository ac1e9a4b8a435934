//! Over 600 lines on purpose: the variant table, reading the architecture
//! from a checkpoint and both forward paths of ResNetV2 belong together
//! (and the per-layer profile of the CPU path with them).
//!
//! BiT: ResNetV2 with pre-activation bottlenecks, GroupNorm and Weight
//! Standardization, as the seed's `resnetv2.py`. Tensor names follow the
//! seed's state dict (`root.conv`, `body.block1.unit01.gn1`, ...).
//!
//! Inference on the CPU runs channels-last ([B, H, W, C]) on our own
//! differentiable kernels (`super::kernels`): GroupNorm fused with its ReLU,
//! 1x1 convolutions as one matrix product over every pixel of the batch (the
//! residual added inside it), 3x3 and strided convolutions as im2col blocks
//! on gemm, weights standardized once at load. Other devices, and training,
//! run the same network on candle ops in NCHW.

use super::kernels::{self, Geometry};
use super::{ops, params, spatial_mean, Backbone, Family, InputSpec, Meta, ModelInfo, Output};
use crate::error::{Error, Result};
use crate::weights::{self, Checkpoint};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{GroupNorm, VarBuilder};
use std::collections::HashMap;
use std::sync::Arc;

/// The twelve published variants: name, units per stage, width factor.
pub const VARIANTS: [(&str, [usize; 4], usize); 12] = [
    ("BiT-M-R50x1", [3, 4, 6, 3], 1),
    ("BiT-M-R50x3", [3, 4, 6, 3], 3),
    ("BiT-M-R101x1", [3, 4, 23, 3], 1),
    ("BiT-M-R101x3", [3, 4, 23, 3], 3),
    ("BiT-M-R152x2", [3, 8, 36, 3], 2),
    ("BiT-M-R152x4", [3, 8, 36, 3], 4),
    ("BiT-S-R50x1", [3, 4, 6, 3], 1),
    ("BiT-S-R50x3", [3, 4, 6, 3], 3),
    ("BiT-S-R101x1", [3, 4, 23, 3], 1),
    ("BiT-S-R101x3", [3, 4, 23, 3], 3),
    ("BiT-S-R152x2", [3, 8, 36, 3], 2),
    ("BiT-S-R152x4", [3, 8, 36, 3], 4),
];

const GROUPS: usize = 32;
const GN_EPS: f64 = 1e-5;

/// The architecture: units per stage, root width (64 x width factor),
/// classes. Stage s (0-based) has cout = 4 * width * 2^s, cmid = width * 2^s.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BitConfig {
    pub units: [usize; 4],
    pub width: usize,
    pub num_classes: usize,
}

/// The variant of that name (case-insensitive), with 1,000 classes.
pub fn variant(name: &str) -> Option<BitConfig> {
    VARIANTS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, units, wf)| BitConfig {
            units: *units,
            width: 64 * wf,
            num_classes: 1000,
        })
}

impl BitConfig {
    pub fn stage_out(&self, s: usize) -> usize {
        (4 * self.width) << s
    }

    pub fn stage_mid(&self, s: usize) -> usize {
        self.width << s
    }

    pub fn feature_dim(&self) -> usize {
        self.stage_out(3)
    }

    pub fn tap_dims(&self) -> Vec<usize> {
        let mut dims = vec![self.width];
        dims.extend((0..4).map(|s| self.stage_out(s)));
        dims
    }

    /// The published variant this is, if any ("BiT-S-R101x1" and
    /// "BiT-M-R101x1" share a shape; the S name is given).
    pub fn variant_name(&self) -> Option<String> {
        VARIANTS
            .iter()
            .rev()
            .find(|(_, units, wf)| *units == self.units && 64 * wf == self.width)
            .map(|(n, _, _)| n.replace("BiT-S-", "BiT-"))
    }

    pub fn describe(&self) -> String {
        let base = match self.variant_name() {
            Some(n) => n,
            None => format!("BiT ResNetV2 units {:?} width {}", self.units, self.width),
        };
        format!("{base}, {} classes", self.num_classes)
    }

    /// Every tensor of the seed's state dict (without "module."), in order.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut t = vec![("root.conv.weight".to_string(), vec![self.width, 3, 7, 7])];
        let mut cin = self.width;
        for s in 0..4 {
            let (cout, cmid) = (self.stage_out(s), self.stage_mid(s));
            for u in 0..self.units[s] {
                let p = format!("body.block{}.unit{:02}", s + 1, u + 1);
                let unit_in = if u == 0 { cin } else { cout };
                t.push((format!("{p}.gn1.weight"), vec![unit_in]));
                t.push((format!("{p}.gn1.bias"), vec![unit_in]));
                t.push((format!("{p}.conv1.weight"), vec![cmid, unit_in, 1, 1]));
                t.push((format!("{p}.gn2.weight"), vec![cmid]));
                t.push((format!("{p}.gn2.bias"), vec![cmid]));
                t.push((format!("{p}.conv2.weight"), vec![cmid, cmid, 3, 3]));
                t.push((format!("{p}.gn3.weight"), vec![cmid]));
                t.push((format!("{p}.gn3.bias"), vec![cmid]));
                t.push((format!("{p}.conv3.weight"), vec![cout, cmid, 1, 1]));
                if u == 0 && (s > 0 || unit_in != cout) {
                    t.push((format!("{p}.downsample.weight"), vec![cout, unit_in, 1, 1]));
                }
            }
            cin = cout;
        }
        let d = self.feature_dim();
        t.push(("before_head.gn.weight".into(), vec![d]));
        t.push(("before_head.gn.bias".into(), vec![d]));
        t.push(("head.conv.weight".into(), vec![self.num_classes, d, 1, 1]));
        t.push(("head.conv.bias".into(), vec![self.num_classes]));
        t
    }

    pub fn num_params(&self) -> usize {
        self.tensor_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Infers the architecture from canonical (seed) tensor names and shapes.
    pub fn infer(tensors: &HashMap<String, Tensor>) -> Option<BitConfig> {
        let width = tensors.get("root.conv.weight")?.dim(0).ok()?;
        let num_classes = tensors.get("head.conv.weight")?.dim(0).ok()?;
        let mut units = [0usize; 4];
        for name in tensors.keys() {
            if let Some(rest) = name.strip_prefix("body.block") {
                if !rest.ends_with(".conv1.weight") {
                    continue;
                }
                let stage = rest.get(..1)?.parse::<usize>().ok()?;
                if (1..=4).contains(&stage) {
                    units[stage - 1] += 1;
                }
            }
        }
        if units.contains(&0) || width == 0 || width % GROUPS != 0 {
            return None;
        }
        Some(BitConfig {
            units,
            width,
            num_classes,
        })
    }
}

/// Whether a checkpoint's names look like BiT in any naming we read.
pub fn looks_like(ckpt: &Checkpoint) -> bool {
    ckpt.tensors.contains_key("root.conv.weight")
}

/// A convolution whose weight is standardized: once at load for inference,
/// or at every forward pass when training (so gradients reach the raw weight).
#[derive(Debug, Clone)]
struct StdConv {
    weight: Tensor,
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
        let weight = match mode {
            Mode::Inference => ops::standardize(&raw.to_dtype(DType::F64)?)?.to_dtype(dtype)?,
            Mode::Training => raw,
        };
        Ok(StdConv {
            weight,
            standardize_each_pass: mode == Mode::Training,
            stride,
            padding,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.standardize_each_pass {
            let w = ops::standardize(&self.weight)?;
            ops::conv2d_im2col(x, &w, self.padding, self.stride)
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, 1, 1)
        }
    }
}

#[derive(Debug, Clone)]
struct Unit {
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
        let a = self.gn1.forward(x)?.relu()?;
        let residual = match &self.downsample {
            Some(d) => d.forward(&a)?,
            None => x.clone(),
        };
        let y = self.conv1.forward(&a)?;
        let y = self.conv2.forward(&self.gn2.forward(&y)?.relu()?)?;
        let y = self.conv3.forward(&self.gn3.forward(&y)?.relu()?)?;
        y + residual
    }
}

/// Inference keeps standardized weights; training standardizes every pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Inference,
    Training,
}

#[derive(Debug, Clone)]
pub struct Bit {
    cfg: BitConfig,
    root: StdConv,
    stages: Vec<Vec<Unit>>,
    gn_head: GroupNorm,
    head_w: Tensor,
    head_b: Tensor,
    /// The same weights for the CPU kernels (inference on the CPU only).
    host: Option<HostWeights>,
    meta: Meta,
}

/// A GroupNorm's affine parameters as f32 (values of the model's dtype).
#[derive(Clone)]
struct HostNorm {
    gamma: Arc<[f32]>,
    beta: Arc<[f32]>,
}

#[derive(Clone)]
struct HostUnit {
    gn1: HostNorm,
    /// Standardized convolution weights [kh, kw, cin, cout] as f32.
    conv1: Arc<[f32]>,
    gn2: HostNorm,
    conv2: Arc<[f32]>,
    gn3: HostNorm,
    conv3: Arc<[f32]>,
    downsample: Option<Arc<[f32]>>,
    stride: usize,
}

/// The inference weights laid out for the CPU kernels (`kernels`).
#[derive(Clone)]
struct HostWeights {
    root: Arc<[f32]>,
    stages: Vec<Vec<HostUnit>>,
    gn_head: HostNorm,
}

impl std::fmt::Debug for HostWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostWeights { .. }")
    }
}

/// OIHW weight (standardized, in the model's dtype) -> [kh, kw, cin, cout]
/// f32 values.
fn host_conv(c: &StdConv) -> Result<Arc<[f32]>> {
    let w = c.weight.permute((2, 3, 1, 0))?.to_dtype(DType::F32)?;
    Ok(w.flatten_all()?.to_vec1::<f32>()?.into())
}

fn host_norm(gn: &(Tensor, Tensor)) -> Result<HostNorm> {
    let v =
        |t: &Tensor| -> Result<Arc<[f32]>> { Ok(t.to_dtype(DType::F32)?.to_vec1::<f32>()?.into()) };
    Ok(HostNorm {
        gamma: v(&gn.0)?,
        beta: v(&gn.1)?,
    })
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

fn gn_relu(x: &Tensor, n: &HostNorm) -> candle_core::Result<Tensor> {
    kernels::group_norm_relu(x, GROUPS, GN_EPS, &n.gamma, &n.beta)
}

impl HostWeights {
    /// Root convolution and padded pool: NCHW input (already in the model's
    /// dtype), NHWC output.
    fn root(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 {
            return Err(Error::Invalid(format!(
                "BiT takes 3-channel input, not {c}"
            )));
        }
        let x = x.permute((0, 2, 3, 1))?;
        let y = kernels::conv(&x, Geometry::symmetric(h, w, 7, 2, 3)?, &self.root)?;
        Ok(kernels::max_pool_padded(&y, 3, 2, 1)?)
    }

    fn unit(u: &HostUnit, x: &Tensor) -> Result<Tensor> {
        let a = gn_relu(x, &u.gn1)?;
        let residual = match &u.downsample {
            Some(w) if u.stride == 1 => kernels::pointwise(&a, w, None, false, None)?,
            Some(w) => {
                let (_, h, wd, _) = a.dims4()?;
                kernels::conv(&a, Geometry::symmetric(h, wd, 1, u.stride, 0)?, w)?
            }
            None => x.clone(),
        };
        let y = kernels::pointwise(&a, &u.conv1, None, false, None)?;
        let y = gn_relu(&y, &u.gn2)?;
        let (_, h, w, _) = y.dims4()?;
        let y = kernels::conv(&y, Geometry::symmetric(h, w, 3, u.stride, 1)?, &u.conv2)?;
        let y = gn_relu(&y, &u.gn3)?;
        Ok(kernels::pointwise(
            &y,
            &u.conv3,
            None,
            false,
            Some(&residual),
        )?)
    }
}

impl Bit {
    /// Builds the network from a VarBuilder holding the seed's names. In
    /// `Mode::Training` the VarBuilder should be backed by a VarMap.
    pub fn new(cfg: &BitConfig, vb: VarBuilder, mode: Mode, dtype: DType) -> Result<Self> {
        let device = vb.device().clone();
        let root = StdConv::new(
            &vb.pp("root").pp("conv"),
            (cfg.width, 3, 7, 7),
            2,
            3,
            mode,
            dtype,
        )?;
        let mut stages = Vec::with_capacity(4);
        let mut host_stages = Vec::with_capacity(4);
        // Our kernels serve CPU inference; training differentiates the weights.
        let host = device.is_cpu() && mode == Mode::Inference;
        if host {
            kernels::keep_freed_memory();
        }
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
                let downsample = if unit_stride != 1 || unit_in != cout {
                    Some(StdConv::new(
                        &vbu.pp("downsample"),
                        (cout, unit_in, 1, 1),
                        unit_stride,
                        0,
                        mode,
                        dtype,
                    )?)
                } else {
                    None
                };
                let (gn1, gn1_wb) = group_norm(vbu.pp("gn1"), unit_in, dtype)?;
                let (gn2, gn2_wb) = group_norm(vbu.pp("gn2"), cmid, dtype)?;
                let (gn3, gn3_wb) = group_norm(vbu.pp("gn3"), cmid, dtype)?;
                let unit = Unit {
                    gn1,
                    conv1: StdConv::new(
                        &vbu.pp("conv1"),
                        (cmid, unit_in, 1, 1),
                        1,
                        0,
                        mode,
                        dtype,
                    )?,
                    gn2,
                    conv2: StdConv::new(
                        &vbu.pp("conv2"),
                        (cmid, cmid, 3, 3),
                        unit_stride,
                        1,
                        mode,
                        dtype,
                    )?,
                    gn3,
                    conv3: StdConv::new(&vbu.pp("conv3"), (cout, cmid, 1, 1), 1, 0, mode, dtype)?,
                    downsample,
                };
                if host {
                    host_units.push(HostUnit {
                        gn1: host_norm(&gn1_wb)?,
                        conv1: host_conv(&unit.conv1)?,
                        gn2: host_norm(&gn2_wb)?,
                        conv2: host_conv(&unit.conv2)?,
                        gn3: host_norm(&gn3_wb)?,
                        conv3: host_conv(&unit.conv3)?,
                        downsample: unit.downsample.as_ref().map(host_conv).transpose()?,
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
                root: host_conv(&root)?,
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
            num_params: cfg.num_params(),
            input: InputSpec::half(480),
        };
        Ok(Bit {
            cfg: cfg.clone(),
            root,
            stages,
            gn_head,
            head_w,
            head_b,
            host,
            meta: Meta {
                info,
                device,
                dtype,
            },
        })
    }

    /// Runs every layer with candle ops in NCHW, as on devices other than the
    /// CPU (a reference for the CPU kernels).
    pub fn with_candle_ops(mut self) -> Self {
        self.host = None;
        self
    }

    /// Loads canonical tensors, checking names and shapes against the
    /// architecture inferred from them (or named by `--model`).
    pub fn from_checkpoint(
        ckpt: Checkpoint,
        name: Option<&str>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let inferred = BitConfig::infer(&ckpt.tensors).ok_or_else(|| Error::NotACheckpoint {
            path: ckpt.path.clone(),
            reason: "no BiT architecture can be read from its tensors (root.conv.weight, \
                     body.blockN.unitMM.conv1.weight, head.conv.weight)"
                .into(),
        })?;
        let cfg = match name.and_then(variant) {
            Some(mut named) => {
                named.num_classes = inferred.num_classes;
                if named.units != inferred.units || named.width != inferred.width {
                    let requested = name.unwrap_or_default();
                    return Err(params::mismatch(&ckpt, requested, inferred.describe()));
                }
                named
            }
            None => inferred,
        };
        weights::check_tensors(&ckpt, &cfg.tensor_shapes(), &cfg.describe())?;
        let vb = VarBuilder::from_tensors(ckpt.tensors, DType::F32, device);
        let mut model = Bit::new(&cfg, vb, Mode::Inference, dtype)?;
        if let Some(n) = name.filter(|n| variant(n).is_some()) {
            model.meta.info.name = format!("{}, {} classes", canonical_variant(n), cfg.num_classes);
        }
        Ok(model)
    }

    /// Random weights of the given shape (benchmarks).
    pub fn random(cfg: &BitConfig, device: &Device, dtype: DType) -> Result<Self> {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let mut m = Bit::new(cfg, vb, Mode::Inference, dtype)?;
        m.meta.mark_random();
        Ok(m)
    }

    pub fn config(&self) -> &BitConfig {
        &self.cfg
    }

    fn root(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.to_dtype(self.meta.dtype)?;
        let y = self.root.forward(&x)?;
        // Zero-pad 1, then 3x3 stride-2 pool without padding (not the same as
        // a pool with padding 1, as the seed notes).
        let y = y.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        ops::max_pool2d(&y, 3, 2)
    }

    fn candle_stage(&self, s: usize, mut x: Tensor) -> candle_core::Result<Tensor> {
        for unit in &self.stages[s] {
            x = unit.forward(&x)?;
        }
        Ok(x)
    }

    /// Training needs head weight and features in the Vars' dtype (f32).
    pub fn forward_train(&self, x: &Tensor) -> Result<Output> {
        self.forward(x)
    }
}

/// "bit-s-r101x1" -> "BiT-S-R101x1".
fn canonical_variant(name: &str) -> &'static str {
    VARIANTS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, _, _)| *n)
        .unwrap_or("BiT")
}

impl Backbone for Bit {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    /// NCHW with candle ops; NHWC on the CPU kernels.
    fn stem(&self, x: &Tensor) -> Result<Tensor> {
        match &self.host {
            Some(host) => host.root(&x.to_dtype(self.meta.dtype)?),
            None => Ok(self.root(x)?),
        }
    }

    fn stage(&self, l: usize, mut x: Tensor) -> Result<Tensor> {
        match &self.host {
            Some(host) => {
                for unit in &host.stages[l - 1] {
                    x = HostWeights::unit(unit, &x)?;
                }
                Ok(x)
            }
            None => Ok(self.candle_stage(l - 1, x)?),
        }
    }

    fn tap(&self, _l: usize, state: &Tensor) -> Result<Tensor> {
        match &self.host {
            Some(_) => Ok(kernels::mean(state)?),
            None => spatial_mean(state),
        }
    }

    fn feature(&self, last: &Tensor) -> Result<Tensor> {
        match &self.host {
            Some(host) => Ok(kernels::mean(&gn_relu(last, &host.gn_head)?)?),
            None => spatial_mean(&self.gn_head.forward(last)?.relu()?),
        }
    }

    fn head(&self) -> (&Tensor, &Tensor) {
        (&self.head_w, &self.head_b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r101x1_has_the_papers_parameter_count() {
        let cfg = variant("BiT-S-R101x1").unwrap();
        assert_eq!(cfg.num_params(), 44_541_480);
        assert_eq!(cfg.tap_dims(), vec![64, 256, 512, 1024, 2048]);
        assert_eq!(cfg.variant_name().as_deref(), Some("BiT-R101x1"));
    }

    /// A profiling tool, not a check of speed: the CPU forward pass of a
    /// random R101x1 @480 layer by layer (CPU time and GMAC per CPU second
    /// per kind of layer
    /// and stage), checked against `HostWeights::unit`. Run by hand:
    /// `cargo test --release --lib profile_r101x1 -- --ignored --nocapture`
    /// (PROFILE_BATCH, default 2; GRADNORM_CPU_GEMM=1 for the gemm crate).
    #[test]
    #[ignore]
    fn profile_r101x1_forward_by_layer() {
        // Process CPU seconds (all threads): steady on a shared machine.
        struct Instant(f64);
        impl Instant {
            fn now() -> Self {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: writes the one timespec passed.
                unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
                Instant(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
            }
            fn elapsed(&self) -> Self {
                Instant(Self::now().0 - self.0)
            }
            fn as_secs_f64(&self) -> f64 {
                self.0
            }
        }
        let b: usize = std::env::var("PROFILE_BATCH").map_or(2, |v| v.parse().unwrap());
        let cfg = variant("BiT-S-R101x1").unwrap();
        let m = Bit::random(&cfg, &Device::Cpu, DType::F32).unwrap();
        let host = m.host.as_ref().unwrap();
        let x = Tensor::rand(-1f32, 1., (b, 3, 480, 480), &Device::Cpu).unwrap();
        // (layer kind, stage) -> (seconds, multiply-adds).
        let mut table: Vec<(String, f64, f64)> = Vec::new();
        let mut add = |name: String, t: Instant, macs: usize| {
            let dt = t.elapsed().as_secs_f64();
            match table.iter_mut().find(|r| r.0 == name) {
                Some(r) => {
                    r.1 += dt;
                    r.2 += macs as f64;
                }
                None => table.push((name, dt, macs as f64)),
            }
        };
        let t = Instant::now();
        let xs = x.permute((0, 2, 3, 1)).unwrap();
        let g = Geometry::symmetric(480, 480, 7, 2, 3).unwrap();
        let y = kernels::conv(&xs, g, &host.root).unwrap();
        add("stem 7x7/2".into(), t, b * 240 * 240 * 147 * cfg.width);
        let t = Instant::now();
        let mut x = kernels::max_pool_padded(&y, 3, 2, 1).unwrap();
        add("stem pool".into(), t, 0);
        for (s, units) in host.stages.iter().enumerate() {
            for u in units {
                let want = HostWeights::unit(u, &x).unwrap();
                let (_, h, w, cin) = x.dims4().unwrap();
                let t = Instant::now();
                let a = gn_relu(&x, &u.gn1).unwrap();
                add(format!("s{} GroupNorm+ReLU", s + 1), t, 0);
                let (ho, wo) = (h.div_ceil(u.stride), w.div_ceil(u.stride));
                let cmid = u.conv1.len() / cin;
                let cout = u.conv3.len() / cmid;
                let t = Instant::now();
                let residual = match &u.downsample {
                    Some(wt) if u.stride == 1 => {
                        kernels::pointwise(&a, wt, None, false, None).unwrap()
                    }
                    Some(wt) => {
                        let g = Geometry::symmetric(h, w, 1, u.stride, 0).unwrap();
                        kernels::conv(&a, g, wt).unwrap()
                    }
                    None => x.clone(),
                };
                if u.downsample.is_some() {
                    add(
                        format!("s{} 1x1 downsample", s + 1),
                        t,
                        b * ho * wo * cin * cout,
                    );
                }
                let t = Instant::now();
                let y = kernels::pointwise(&a, &u.conv1, None, false, None).unwrap();
                add(format!("s{} 1x1 conv1", s + 1), t, b * h * w * cin * cmid);
                let t = Instant::now();
                let y = gn_relu(&y, &u.gn2).unwrap();
                add(format!("s{} GroupNorm+ReLU", s + 1), t, 0);
                let t = Instant::now();
                let g = Geometry::symmetric(h, w, 3, u.stride, 1).unwrap();
                let y = kernels::conv(&y, g, &u.conv2).unwrap();
                let kind = if u.stride == 1 { "3x3" } else { "3x3/2" };
                add(
                    format!("s{} {kind} conv2", s + 1),
                    t,
                    b * ho * wo * 9 * cmid * cmid,
                );
                let t = Instant::now();
                let y = gn_relu(&y, &u.gn3).unwrap();
                add(format!("s{} GroupNorm+ReLU", s + 1), t, 0);
                let t = Instant::now();
                let y = kernels::pointwise(&y, &u.conv3, None, false, Some(&residual)).unwrap();
                add(
                    format!("s{} 1x1 conv3 + add", s + 1),
                    t,
                    b * ho * wo * cmid * cout,
                );
                let diff = (&y - &want).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
                x = y;
            }
        }
        let t = Instant::now();
        let _ = kernels::mean(&gn_relu(&x, &host.gn_head).unwrap()).unwrap();
        add("head GroupNorm+ReLU+mean".into(), t, 0);
        let all: f64 = table.iter().map(|r| r.1).sum();
        println!(
            "R101x1 @480, batch {b}, {} threads",
            rayon::current_num_threads()
        );
        println!(
            "{:<28} {:>9} {:>6} {:>8}",
            "layer", "CPU ms/img", "%", "GMAC/CPU s"
        );
        for (name, dt, macs) in &table {
            let rate = if *macs > 0.0 { macs / dt / 1e9 } else { 0.0 };
            println!(
                "{name:<28} {:>9.1} {:>6.1} {rate:>8.1}",
                dt * 1e3 / b as f64,
                100.0 * dt / all
            );
        }
        println!("{:<28} {:>9.1}", "total", all * 1e3 / b as f64);
    }
}
