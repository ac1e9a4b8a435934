//! torchvision's ResNet (v1.5: the stride on the 3x3 convolution), with
//! torchvision's state-dict names: `conv1`, `bn1`, `layer1..4.N.{conv,bn}K`,
//! `downsample.{0,1}`, `fc`. BasicBlock (ResNet-18/34) and Bottleneck
//! (ResNet-50/101/152, and wide variants through `width_per_group`); depth,
//! width and classes are read from the checkpoint.
//!
//! Built on candle-nn rather than candle-transformers' resnet: that crate
//! compiles every model it has (minutes on two cores), and the input
//! gradients of ODIN and Mahalanobis need the stem max-pool in its
//! differentiable form (`ops::max_pool2d`), which its resnet does not use.
//!
//! Mahalanobis taps: the spatial mean after the stem (conv, BN, ReLU,
//! max-pool) and after each of layer1..layer4, as BiT's. The feature h is
//! the average-pooled layer4 output, the input of `fc`.
//!
//! One forward pass, two ways to run each layer: on the CPU in f32 the
//! state is channels-last and every convolution is one of our kernels
//! (`gradnorm_kernels`) with its BatchNorm folded into the weights at load
//! and its ReLU and residual add in the same pass (apart where a probe
//! point reads the BatchNorm's output: GAIA, NAC); elsewhere, or while a
//! probe records weight layers (GradNorm's `layer=`), candle's ops in NCHW
//! with the BatchNorm as its own step.
//!
//! Over 600 lines with its tests: the per-layer profile and the check that
//! probe points on the kernels equal candle's path read the private layers.

use super::params::{self, BatchNorm, FoldedConv, TorchvisionArch};
use super::probe::{self, LayerOp, PointKind};
use super::{ops, spatial_mean, Backbone, Family, Meta, ModelInfo, Preprocess};
use crate::error::{Error, Result};
use crate::weights::Checkpoint;
use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use gradnorm_kernels::{self as kernels, Act, Geometry};
use std::collections::HashMap;

/// Output channels of the four stages' blocks before expansion.
const PLANES: [usize; 4] = [64, 128, 256, 512];
const STEM: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Bottleneck blocks (expansion 4) or BasicBlocks.
    pub bottleneck: bool,
    pub layers: [usize; 4],
    /// Bottleneck width per group (64; 128 for the wide ResNets).
    pub width_per_group: usize,
    pub num_classes: usize,
}

/// The torchvision variants by name.
pub const VARIANTS: [(&str, bool, [usize; 4]); 5] = [
    ("resnet18", false, [2, 2, 2, 2]),
    ("resnet34", false, [3, 4, 6, 3]),
    ("resnet50", true, [3, 4, 6, 3]),
    ("resnet101", true, [3, 4, 23, 3]),
    ("resnet152", true, [3, 8, 36, 3]),
];

pub fn variant(name: &str) -> Option<ResNetConfig> {
    let key = name.to_ascii_lowercase().replace(['-', '_'], "");
    VARIANTS
        .iter()
        .find(|(n, _, _)| *n == key)
        .map(|&(_, bottleneck, layers)| ResNetConfig {
            bottleneck,
            layers,
            width_per_group: 64,
            num_classes: 1000,
        })
}

/// The name of the family (an architecture read from the checkpoint).
pub fn is_family_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("resnet")
}

pub fn looks_like(ckpt: &Checkpoint) -> bool {
    ckpt.tensors.contains_key("conv1.weight")
        && ckpt.tensors.contains_key("bn1.running_var")
        && ckpt.tensors.contains_key("layer1.0.conv1.weight")
}

impl ResNetConfig {
    fn expansion(&self) -> usize {
        if self.bottleneck {
            4
        } else {
            1
        }
    }

    pub fn feature_dim(&self) -> usize {
        PLANES[3] * self.expansion()
    }

    pub fn tap_dims(&self) -> Vec<usize> {
        let mut dims = vec![STEM];
        dims.extend(PLANES.iter().map(|p| p * self.expansion()));
        dims
    }

    /// Every state-dict entry torchvision saves: the tensors the model reads
    /// plus BatchNorm's integer `num_batches_tracked` (which carries no
    /// weight, so the checkpoint reader leaves it out).
    pub fn state_dict_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let mut out = Vec::new();
        for (name, shape) in self.tensor_shapes()? {
            let counter = name
                .strip_suffix(".running_var")
                .map(|p| format!("{p}.num_batches_tracked"));
            out.push((name, shape));
            if let Some(c) = counter {
                out.push((c, vec![]));
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
struct ConvBn {
    /// The checkpoint's name of the convolution (GradNorm's `layer=`).
    name: String,
    weight: Tensor,
    bn: BatchNorm,
    /// The checkpoint's name of the BatchNorm (a probe point).
    bn_name: String,
    stride: usize,
    padding: usize,
    /// The same layer for the CPU kernels (f32 models on the CPU).
    folded: Option<FoldedConv>,
}

impl ConvBn {
    /// `conv{i}` and `bn{i}` under `vb` (or `downsample.0` and `.1`).
    fn new(
        vb: &VarBuilder,
        conv: &str,
        bn: &str,
        (cin, cout, k): (usize, usize, usize),
        stride: usize,
    ) -> Result<Self> {
        let weight = params::conv_weight(&vb.pp(conv), cout, cin, k, "weight")?;
        let norm = BatchNorm::new(vb.pp(bn), cout)?;
        let folded = (vb.device().is_cpu() && vb.dtype() == DType::F32)
            .then(|| norm.fold_into(&weight))
            .transpose()?;
        Ok(ConvBn {
            name: vb.pp(conv).prefix(),
            weight,
            bn: norm,
            bn_name: vb.pp(bn).prefix(),
            stride,
            padding: k / 2,
            folded,
        })
    }

    /// The convolution and its BatchNorm, then `residual` added, then a
    /// ReLU when `relu`: on the CPU kernels (channels-last, one pass) when
    /// `fast`, else on candle's ops (NCHW, probes see the layer).
    fn forward(
        &self,
        x: &Tensor,
        relu: bool,
        residual: Option<&Tensor>,
        fast: bool,
    ) -> candle_core::Result<Tensor> {
        let y = match self.folded.as_ref().filter(|_| fast) {
            // A probe point at the BatchNorm's output: the convolution
            // alone (BatchNorm folded in), then the add and ReLU apart.
            Some(f) if probe::takes(PointKind::Norm, &self.bn_name) => {
                let y = self.kernel(f, x, false, None)?;
                probe::point_channels_last(PointKind::Norm, &self.bn_name, y)?
            }
            Some(f) => return self.kernel(f, x, relu, residual),
            None => self.bn_forward(x)?,
        };
        let y = match residual {
            Some(r) => (y + r)?,
            None => y,
        };
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// [`ConvBn::forward`] on the kernels: 1x1 stride 1 as the packed
    /// product, the rest (3x3 by Winograd or im2col, strided 1x1) as
    /// convolutions, each with its bias and ReLU in the same pass.
    fn kernel(
        &self,
        f: &FoldedConv,
        x: &Tensor,
        relu: bool,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let act = if relu { Act::Relu } else { Act::Linear };
        let (_, h, w, _) = x.dims4()?;
        let (_, _, k, _) = self.weight.dims4()?;
        if k == 1 && self.stride == 1 {
            return kernels::pointwise(x, &f.w, Some(&f.b), act, residual);
        }
        let g = Geometry::symmetric(h, w, k, self.stride, self.padding)?;
        match residual {
            None => kernels::conv(x, g, &f.w, Some(&f.b), act),
            // BasicBlock's last 3x3: the add and ReLU as candle ops.
            Some(r) => {
                let y = (kernels::conv(x, g, &f.w, Some(&f.b), Act::Linear)? + r)?;
                if relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
        }
    }

    /// Convolution, then BatchNorm, on candle's ops, with the probes.
    fn bn_forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = params::conv2d(x, &self.weight, self.padding, self.stride)?;
        let (_, _, kh, kw) = self.weight.dims4()?;
        let op = LayerOp::Conv2d {
            kernel: (kh, kw),
            stride: self.stride,
            padding: self.padding,
        };
        let y = probe::at(|| self.name.clone(), op, &self.weight, x, y)?;
        probe::point(
            PointKind::Norm,
            || self.bn_name.clone(),
            self.bn.forward(&y)?,
        )
    }
}

#[derive(Debug, Clone)]
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn new(
        cfg: &ResNetConfig,
        vb: VarBuilder,
        cin: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let cout = planes * cfg.expansion();
        let convs = if cfg.bottleneck {
            let width = planes * cfg.width_per_group / 64;
            vec![
                ConvBn::new(&vb, "conv1", "bn1", (cin, width, 1), 1)?,
                ConvBn::new(&vb, "conv2", "bn2", (width, width, 3), stride)?,
                ConvBn::new(&vb, "conv3", "bn3", (width, cout, 1), 1)?,
            ]
        } else {
            vec![
                ConvBn::new(&vb, "conv1", "bn1", (cin, cout, 3), stride)?,
                ConvBn::new(&vb, "conv2", "bn2", (cout, cout, 3), 1)?,
            ]
        };
        let downsample = (stride != 1 || cin != cout)
            .then(|| ConvBn::new(&vb.pp("downsample"), "0", "1", (cin, cout, 1), stride))
            .transpose()?;
        Ok(Block { convs, downsample })
    }

    /// Every convolution with its ReLU; the last adds the identity (or the
    /// downsampled input) before its ReLU.
    fn forward(&self, x: &Tensor, fast: bool) -> candle_core::Result<Tensor> {
        let identity = match &self.downsample {
            Some(d) => d.forward(x, false, None, fast)?,
            None => x.clone(),
        };
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, c) in self.convs.iter().enumerate() {
            y = c.forward(&y, true, (i == last).then_some(&identity), fast)?;
        }
        Ok(y)
    }
}

#[derive(Debug, Clone)]
pub struct ResNet {
    cfg: ResNetConfig,
    stem: ConvBn,
    stages: Vec<Vec<Block>>,
    meta: Meta,
}

impl ResNet {
    /// The model over `vb`, whose names are torchvision's.
    pub fn new(cfg: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        let stem = ConvBn::new(&vb, "conv1", "bn1", (3, STEM, 7), 2)?;
        let mut cin = STEM;
        let mut stages = Vec::with_capacity(4);
        for (s, (&n, &planes)) in cfg.layers.iter().zip(&PLANES).enumerate() {
            let vbs = vb.pp(format!("layer{}", s + 1));
            let mut blocks = Vec::with_capacity(n);
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(Block::new(cfg, vbs.pp(b.to_string()), cin, planes, stride)?);
                cin = planes * cfg.expansion();
            }
            stages.push(blocks);
        }
        let head = params::head(vb.pp("fc"), cfg.feature_dim(), cfg.num_classes)?;
        let info = ModelInfo {
            name: cfg.describe(),
            family: Family::ResNet,
            num_classes: cfg.num_classes,
            feature_dim: cfg.feature_dim(),
            tap_dims: cfg.tap_dims(),
            num_params: 0,
            input: Preprocess::Torchvision.spec(224),
        };
        Ok(ResNet {
            cfg: cfg.clone(),
            stem,
            stages,
            meta: Meta::new(info, vb.device(), vb.dtype(), head),
        })
    }

    pub fn config(&self) -> &ResNetConfig {
        &self.cfg
    }

    /// Whether this pass runs on the CPU kernels (channels-last state):
    /// an f32 model on the CPU, unless a probe wants the weight layers,
    /// which only the candle path shows it (probe points it shows on both).
    fn fast(&self) -> bool {
        self.stem.folded.is_some() && !probe::reads_layers()
    }

    /// Every layer on candle's ops in NCHW, as on devices other than the
    /// CPU (a reference for the kernels).
    pub fn with_candle_ops(mut self) -> Self {
        for c in self.convs_mut() {
            c.folded = None;
        }
        self
    }

    fn convs_mut(&mut self) -> impl Iterator<Item = &mut ConvBn> {
        let blocks = self.stages.iter_mut().flatten();
        std::iter::once(&mut self.stem)
            .chain(blocks.flat_map(|b| b.convs.iter_mut().chain(b.downsample.as_mut())))
    }
}

impl params::TorchvisionArch for ResNetConfig {
    type Model = ResNet;
    const NOT_FOUND: &'static str = "no torchvision ResNet tensors (conv1, layer1.0.conv1, fc)";

    /// The architecture of a torchvision state dict.
    fn infer(
        tensors: &HashMap<String, Tensor>,
        _name: Option<&str>,
    ) -> std::result::Result<Self, Option<String>> {
        let read = || -> Option<Self> {
            let mut layers = [0usize; 4];
            for (s, n) in layers.iter_mut().enumerate() {
                while tensors.contains_key(&format!("layer{}.{}.conv1.weight", s + 1, *n)) {
                    *n += 1;
                }
            }
            let bottleneck = tensors.contains_key("layer1.0.conv3.weight");
            let width_per_group = if bottleneck {
                // conv1 of a Bottleneck has planes * width_per_group / 64 outputs.
                tensors.get("layer1.0.conv1.weight")?.dim(0).ok()? * 64 / PLANES[0]
            } else {
                64
            };
            let num_classes = tensors.get("fc.weight")?.dim(0).ok()?;
            Some(ResNetConfig {
                bottleneck,
                layers,
                width_per_group,
                num_classes,
            })
        };
        read().ok_or(None)
    }

    fn variant(name: &str) -> Option<Self> {
        variant(name)
    }

    /// Depth and block kind; width and classes are the checkpoint's.
    fn is_variant(&self, want: &Self) -> bool {
        want.bottleneck == self.bottleneck && want.layers == self.layers
    }

    /// "resnet50" when it is one, else a description.
    fn describe(&self) -> String {
        let standard = VARIANTS
            .iter()
            .find(|(_, b, l)| *b == self.bottleneck && *l == self.layers)
            .filter(|_| self.width_per_group == 64);
        let block = if self.bottleneck {
            "Bottleneck"
        } else {
            "BasicBlock"
        };
        match standard {
            Some((n, _, _)) if self.num_classes == 1000 => n.to_string(),
            Some((n, _, _)) => format!("{n}, {} classes", self.num_classes),
            None => format!(
                "ResNet ({block} {:?}, width {}, {} classes)",
                self.layers, self.width_per_group, self.num_classes
            ),
        }
    }

    fn build(&self, vb: VarBuilder) -> Result<ResNet> {
        ResNet::new(self, vb)
    }

    fn meta_mut(model: &mut ResNet) -> &mut Meta {
        &mut model.meta
    }
}

impl Backbone for ResNet {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    /// conv1, bn1, ReLU, then the 3x3 stride-2 max-pool with padding 1. The
    /// pool follows a ReLU, so zero padding selects what -inf padding would
    /// (and a tie it gives to the padding carries no gradient either way:
    /// the ReLU's output there is 0). NCHW in; NHWC out on the kernels.
    fn stem(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, _, _) = x.dims4()?;
        if c != 3 {
            return Err(Error::Invalid(format!(
                "ResNet takes 3-channel input, not {c}"
            )));
        }
        let x = x.to_dtype(self.meta.dtype)?;
        if self.fast() {
            let y = self
                .stem
                .forward(&x.permute((0, 2, 3, 1))?, true, None, true)?;
            return Ok(kernels::max_pool_padded(&y, 3, 2, 1)?);
        }
        let y = self.stem.forward(&x, true, None, false)?;
        let y = y.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        Ok(ops::max_pool2d(&y, 3, 2)?)
    }

    fn stage(&self, l: usize, mut x: Tensor) -> Result<Tensor> {
        let fast = self.fast();
        for block in &self.stages[l - 1] {
            x = block.forward(&x, fast)?;
        }
        // The stage's output is a probe point too (GAIA reads layer4's).
        let name = || format!("layer{l}");
        Ok(if fast {
            probe::point_channels_last(PointKind::Stage, &name(), x)?
        } else {
            probe::point(PointKind::Stage, name, x)?
        })
    }

    fn stage_probe_blocks(&self, l: usize) -> Vec<String> {
        vec![format!("layer{l}")]
    }

    fn stage_probe_output(&self, l: usize) -> Option<String> {
        Some(format!("layer{l}"))
    }

    /// The spatial mean; that of layer4 is also the feature h.
    fn tap(&self, _l: usize, state: &Tensor) -> Result<Tensor> {
        if self.fast() {
            return Ok(kernels::mean(state)?);
        }
        spatial_mean(state)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Probe points on the CPU kernels (channels-last, each selected
    /// BatchNorm's output computed apart from its ReLU and add) give the
    /// values and gradients of candle's NCHW path, and keep the logits.
    #[test]
    fn probe_points_on_the_kernels_equal_candles_path() {
        let cfg = ResNetConfig {
            bottleneck: true,
            layers: [1, 2, 1, 1],
            width_per_group: 64,
            num_classes: 10,
        };
        let fast = params::random_torchvision(&cfg, &Device::Cpu, DType::F32).unwrap();
        let slow = fast.clone().with_candle_ops();
        let x = crate::model::fixed_input(&[2, 3, 64, 64], 1);
        let select = probe::Selection {
            norms: vec!["layer2.1".into(), "layer4".into()],
            stages: vec!["layer1".into(), "layer4".into()],
        };
        let names = crate::model::assert_same_points([&fast, &slow], &x, &select, 1e-4);
        assert_eq!(
            names,
            [
                "layer1",
                "layer2.1.bn1",
                "layer2.1.bn2",
                "layer2.1.bn3",
                "layer4.0.downsample.1",
                "layer4.0.bn1",
                "layer4.0.bn2",
                "layer4.0.bn3",
                "layer4"
            ]
        );
    }

    /// A profiling tool, not a check of speed: ResNet-50 @224 on the CPU
    /// kernels layer by layer (CPU ms per image and GMAC per CPU second per
    /// kind of layer and stage), each block checked against
    /// `Block::forward`. Run by hand:
    /// `cargo test --release -p gradnorm-engine --lib profile_resnet50 -- --ignored --nocapture`
    /// (PROFILE_BATCH, default 8).
    #[test]
    #[ignore]
    fn profile_resnet50_forward_by_layer() {
        let b: usize = std::env::var("PROFILE_BATCH").map_or(8, |v| v.parse().unwrap());
        let cfg = variant("resnet50").unwrap();
        let m = params::random_torchvision(&cfg, &Device::Cpu, DType::F32).unwrap();
        let x = Tensor::rand(-1f32, 1., (b, 3, 224, 224), &Device::Cpu).unwrap();
        let mut profile = crate::model::Profile::default();
        let macs = |c: &ConvBn, y: &Tensor| {
            let (n, h, w, cout) = y.dims4().unwrap();
            let (_, cin, k, _) = c.weight.dims4().unwrap();
            n * h * w * cout * cin * k * k
        };
        let xs = profile.time("stem NHWC copy", 0, || {
            x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
        });
        let n = macs(&m.stem, &m.stem.forward(&xs, true, None, true).unwrap());
        let y = profile.time("stem 7x7/2", n, || {
            m.stem.forward(&xs, true, None, true).unwrap()
        });
        let mut x = profile.time("stem pool", 0, || {
            kernels::max_pool_padded(&y, 3, 2, 1).unwrap()
        });
        for (s, blocks) in m.stages.iter().enumerate() {
            for block in blocks {
                let want = block.forward(&x, true).unwrap();
                let identity = match &block.downsample {
                    Some(d) => {
                        let n = macs(d, &d.forward(&x, false, None, true).unwrap());
                        let kind = format!("s{} downsample 1x1/{}", s + 1, d.stride);
                        profile.time(&kind, n, || d.forward(&x, false, None, true).unwrap())
                    }
                    None => x.clone(),
                };
                let mut y = x.clone();
                let last = block.convs.len() - 1;
                for (i, c) in block.convs.iter().enumerate() {
                    let (_, _, k, _) = c.weight.dims4().unwrap();
                    let residual = (i == last).then_some(&identity);
                    let n = macs(c, &c.forward(&y, true, residual, true).unwrap());
                    let mut kind = format!("s{} {k}x{k}", s + 1);
                    if c.stride > 1 {
                        kind += &format!("/{}", c.stride);
                    }
                    if residual.is_some() {
                        kind += " + add";
                    }
                    y = profile.time(&kind, n, || c.forward(&y, true, residual, true).unwrap());
                }
                let diff = (&y - &want).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
                x = y;
            }
        }
        let _ = profile.time("mean", 0, || kernels::mean(&x).unwrap());
        profile.print("ResNet-50 @224", b);
    }
}
