//! BiT: ResNetV2 with pre-activation bottlenecks, GroupNorm and Weight
//! Standardization, as the seed's `resnetv2.py`. Tensor names follow the
//! seed's state dict (`root.conv`, `body.block1.unit01.gn1`, ...).
//!
//! - here: the variants, the architecture read from a checkpoint, loading,
//!   and the backbone's stages on either path;
//! - `layers`: the network built through VarBuilder, and its candle path
//!   (NCHW; other devices, and training);
//! - `host`: the same weights for our CPU kernels, channels-last ([B, H, W,
//!   C]), standardized once at load, and a per-layer profile of that path.

mod host;
mod layers;

use super::{params, spatial_mean, Backbone, FromCheckpoint, Meta, Output};
use crate::error::{Error, Result};
use crate::weights::{self, Checkpoint};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{GroupNorm, VarBuilder};
use gradnorm_kernels as kernels;
use host::{gn_relu, HostWeights};
use layers::{StdConv, Unit};
use std::collections::HashMap;

/// The six published shapes, each pretrained twice (BiT-M on ImageNet-21k,
/// BiT-S on ImageNet-1k): name, units per stage, width factor.
const SHAPES: [(&str, [usize; 4], usize); 6] = [
    ("R50x1", [3, 4, 6, 3], 1),
    ("R50x3", [3, 4, 6, 3], 3),
    ("R101x1", [3, 4, 23, 3], 1),
    ("R101x3", [3, 4, 23, 3], 3),
    ("R152x2", [3, 8, 36, 3], 2),
    ("R152x4", [3, 8, 36, 3], 4),
];

/// The twelve published variants, BiT-M-R50x1 .. BiT-S-R152x4, with their
/// shapes.
fn variants() -> impl Iterator<Item = (String, [usize; 4], usize)> {
    ["BiT-M", "BiT-S"].into_iter().flat_map(|upstream| {
        SHAPES
            .iter()
            .map(move |&(n, units, wf)| (format!("{upstream}-{n}"), units, wf))
    })
}

/// The names of the twelve published variants.
pub fn variant_names() -> impl Iterator<Item = String> {
    variants().map(|(n, _, _)| n)
}

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
    variants()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, units, wf)| BitConfig {
            units,
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

    /// The published shape this is, if any, as "BiT-R101x1" (BiT-S-R101x1
    /// and BiT-M-R101x1 share it).
    pub fn variant_name(&self) -> Option<String> {
        SHAPES
            .iter()
            .find(|(_, units, wf)| *units == self.units && 64 * wf == self.width)
            .map(|(n, _, _)| format!("BiT-{n}"))
    }

    pub fn describe(&self) -> String {
        let base = match self.variant_name() {
            Some(n) => n,
            None => format!("BiT ResNetV2 units {:?} width {}", self.units, self.width),
        };
        format!("{base}, {} classes", self.num_classes)
    }

    /// Every tensor of the seed's state dict (without "module."), in its
    /// order: what [`Bit::build`] asks its VarBuilder for.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        // Training mode only reads the weights (nothing is standardized or
        // laid out), and the recorder hands out every tensor asked for.
        params::tensor_shapes(|vb| Bit::build(self, vb, Mode::Training, DType::F32))
            .expect("the recorder gives every tensor")
    }

    pub fn num_params(&self) -> usize {
        params::count_parameters(&self.tensor_shapes())
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
    /// The same weights for the CPU kernels (inference on the CPU only).
    host: Option<HostWeights>,
    meta: Meta,
}

impl Bit {
    /// Builds the network from a VarBuilder holding the seed's names. In
    /// `Mode::Training` the VarBuilder should be backed by a VarMap.
    pub fn new(cfg: &BitConfig, vb: VarBuilder, mode: Mode, dtype: DType) -> Result<Self> {
        let mut model = Bit::build(cfg, vb, mode, dtype)?;
        model.meta.info.num_params = cfg.num_params();
        Ok(model)
    }

    /// Runs every layer with candle ops in NCHW, as on devices other than the
    /// CPU (a reference for the CPU kernels).
    pub fn with_candle_ops(mut self) -> Self {
        self.host = None;
        self
    }

    /// Random weights of the given shape drawn from `seed` (benchmarks,
    /// tests).
    pub fn random(cfg: &BitConfig, seed: u64, device: &Device, dtype: DType) -> Result<Self> {
        let mut m = super::params::random(seed, device, DType::F32, |vb| {
            Bit::new(cfg, vb, Mode::Inference, dtype)
        })?;
        m.meta.mark_random();
        Ok(m)
    }

    pub fn config(&self) -> &BitConfig {
        &self.cfg
    }

    /// The CPU kernels' weights, unless a probe wants the layers (which
    /// only the candle path passes through it).
    fn host(&self) -> Option<&HostWeights> {
        self.host.as_ref().filter(|_| !super::probe::active())
    }

    /// Training needs head weight and features in the Vars' dtype (f32).
    pub fn forward_train(&self, x: &Tensor) -> Result<Output> {
        self.forward(x)
    }
}

/// "bit-s-r101x1" -> "BiT-S-R101x1".
fn canonical_variant(name: &str) -> String {
    variant_names()
        .find(|n| n.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| "BiT".into())
}

impl Backbone for Bit {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    /// NCHW with candle ops; NHWC on the CPU kernels.
    fn stem(&self, x: &Tensor) -> Result<Tensor> {
        match self.host() {
            Some(host) => host.root(&x.to_dtype(self.meta.dtype)?),
            None => Ok(self.root(x)?),
        }
    }

    fn stage_probe_blocks(&self, l: usize) -> Vec<String> {
        vec![format!("body.block{l}")]
    }

    fn stage_probe_output(&self, l: usize) -> Option<String> {
        Some(format!("body.block{l}"))
    }

    fn stage(&self, l: usize, mut x: Tensor) -> Result<Tensor> {
        match self.host() {
            Some(host) => {
                for unit in &host.stages[l - 1] {
                    x = HostWeights::unit(unit, &x)?;
                }
                Ok(x)
            }
            // The block's output is a probe point (NAC's states).
            None => Ok(super::probe::point(
                super::probe::PointKind::Stage,
                || format!("body.block{l}"),
                self.candle_stage(l - 1, x)?,
            )?),
        }
    }

    fn tap(&self, _l: usize, state: &Tensor) -> Result<Tensor> {
        match self.host() {
            Some(_) => Ok(kernels::mean(state)?),
            None => spatial_mean(state),
        }
    }

    fn feature(&self, last: &Tensor) -> Result<Tensor> {
        match self.host() {
            Some(host) => Ok(kernels::mean(&gn_relu(last, &host.gn_head)?)?),
            None => spatial_mean(&self.gn_head.forward(last)?.relu()?),
        }
    }
}

/// Canonical tensors, checked against the architecture inferred from them
/// (or named by `--model`).
impl FromCheckpoint for Bit {
    type Config = BitConfig;

    fn config_of(ckpt: &Checkpoint, name: Option<&str>) -> Result<BitConfig> {
        let inferred = BitConfig::infer(&ckpt.tensors).ok_or_else(|| Error::NotACheckpoint {
            path: ckpt.path.clone(),
            reason: "no BiT architecture can be read from its tensors (root.conv.weight, \
                     body.blockN.unitMM.conv1.weight, head.conv.weight)"
                .into(),
        })?;
        Ok(match name.and_then(variant) {
            Some(mut named) => {
                named.num_classes = inferred.num_classes;
                if named.units != inferred.units || named.width != inferred.width {
                    let requested = name.unwrap_or_default();
                    return Err(params::mismatch(ckpt, requested, inferred.describe()));
                }
                named
            }
            None => inferred,
        })
    }

    fn load(cfg: &BitConfig, ckpt: Checkpoint, device: &Device, dtype: DType) -> Result<Bit> {
        weights::check_tensors(&ckpt, &cfg.tensor_shapes(), &cfg.describe())?;
        let vb = VarBuilder::from_tensors(ckpt.tensors, DType::F32, device);
        Bit::new(cfg, vb, Mode::Inference, dtype)
    }

    /// A variant named on the command line names the model.
    fn named(mut self, name: Option<&str>) -> Bit {
        if let Some(n) = name.filter(|n| variant(n).is_some()) {
            let classes = self.cfg.num_classes;
            self.meta.info.name = format!("{}, {classes} classes", canonical_variant(n));
        }
        self
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
}
