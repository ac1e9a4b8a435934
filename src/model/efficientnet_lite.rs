//! Over 600 lines on purpose: the variant table, TF "same" padding and the
//! candle and channels-last paths of one architecture read best together.
//! It still reads tensors from the checkpoint map, not through VarBuilder
//! (ResNet and ViT do, see params.rs): future work.
//!
//! EfficientNet-Lite0..4 as the `efficientnet_lite_pytorch` wheel builds them
//! (lukemelas' EfficientNet-PyTorch with the Lite settings): MBConv blocks
//! without squeeze-excitation, ReLU6, BatchNorm (eps 1e-3) in inference
//! form, TensorFlow "same" padding, stem 32 and head 1280 fixed, and the
//! first and last stages not repeated more with depth. Tensor names are the
//! wheel's (`_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`, ...).
//!
//! At load every BatchNorm is folded into the convolution before it, and
//! activations run channels-last ([B, H, W, C]): a 1x1 convolution is then
//! one matrix product over all pixels of the batch, and the depthwise
//! convolution reads contiguous channel vectors. On the CPU the stem, the
//! depthwise convolutions and the bias/ReLU6/residual steps are our own
//! differentiable kernels (`super::kernels`); on other devices candle ops
//! compose the same functions. Everything is differentiable with respect to
//! the input (ODIN, Mahalanobis).
//!
//! The five Mahalanobis taps mirror BiT's (stem, then the end of each
//! resolution), each averaged over space: 0 the stem output after
//! BatchNorm + ReLU6 (32 channels, stride 2); 1, 2, 3 the outputs of the last
//! block at overall stride 4, 8 and 16 (lite0: blocks 2, 4 and 10, with 24,
//! 40 and 112 channels; stride 16 holds two stages, the tap ends the second);
//! 4 the head convolution after BatchNorm + ReLU6 (1280), whose average is
//! also the penultimate feature h.

use super::kernels::{self, Geometry};
use super::{params, Backbone, Family, InputSpec, Meta, ModelInfo};
use crate::error::{Error, Result};
use crate::weights::{self, Checkpoint};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// A published variant: width and depth multipliers, default resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variant {
    pub name: &'static str,
    pub width: f64,
    pub depth: f64,
    pub resolution: usize,
}

/// The wheel's `efficientnet_params` for lite0..4.
pub const VARIANTS: [Variant; 5] = [
    Variant {
        name: "efficientnet-lite0",
        width: 1.0,
        depth: 1.0,
        resolution: 224,
    },
    Variant {
        name: "efficientnet-lite1",
        width: 1.0,
        depth: 1.1,
        resolution: 240,
    },
    Variant {
        name: "efficientnet-lite2",
        width: 1.1,
        depth: 1.2,
        resolution: 260,
    },
    Variant {
        name: "efficientnet-lite3",
        width: 1.2,
        depth: 1.4,
        resolution: 280,
    },
    Variant {
        name: "efficientnet-lite4",
        width: 1.4,
        depth: 1.8,
        resolution: 300,
    },
];

/// The variant of that name (case-insensitive).
pub fn variant(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name.eq_ignore_ascii_case(name))
}

/// Whether a checkpoint's names look like EfficientNet(-Lite).
pub fn looks_like(ckpt: &Checkpoint) -> bool {
    ckpt.tensors.contains_key("_conv_stem.weight")
}

const BN_EPS: f64 = 1e-3;
const STEM: usize = 32;
const HEAD: usize = 1280;

/// Stages before scaling: repeats, kernel, stride, expansion, in, out
/// (the Lite block strings `r1_k3_s11_e1_i32_o16`, ...).
const BASE_STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// One MBConv block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockConfig {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand: usize,
}

impl BlockConfig {
    fn mid(&self) -> usize {
        self.cin * self.expand
    }

    fn residual(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }
}

/// The whole architecture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EfficientNetConfig {
    pub name: String,
    pub resolution: usize,
    pub blocks: Vec<BlockConfig>,
    pub num_classes: usize,
}

/// The wheel's `round_filters`: scale, round to a multiple of 8, never
/// more than 10% down.
fn round_filters(filters: usize, width: f64) -> usize {
    let divisor = 8.0;
    let f = filters as f64 * width;
    let mut new = (((f + divisor / 2.0) as usize) / 8 * 8).max(8);
    if (new as f64) < 0.9 * f {
        new += 8;
    }
    new
}

impl EfficientNetConfig {
    pub fn of(v: &Variant) -> Self {
        let mut blocks = Vec::new();
        let last = BASE_STAGES.len() - 1;
        for (i, &(repeats, kernel, stride, expand, cin, cout)) in BASE_STAGES.iter().enumerate() {
            // Lite keeps the stem width and the first and last stages' depth.
            let (repeats, cin) = if i == 0 {
                (repeats, STEM)
            } else if i == last {
                (repeats, round_filters(cin, v.width))
            } else {
                (
                    (v.depth * repeats as f64).ceil() as usize,
                    round_filters(cin, v.width),
                )
            };
            let cout = round_filters(cout, v.width);
            for r in 0..repeats {
                blocks.push(BlockConfig {
                    cin: if r == 0 { cin } else { cout },
                    cout,
                    kernel,
                    stride: if r == 0 { stride } else { 1 },
                    expand,
                });
            }
        }
        EfficientNetConfig {
            name: v.name.to_string(),
            resolution: v.resolution,
            blocks,
            num_classes: 1000,
        }
    }

    /// Blocks after which the Mahalanobis taps 1..=3 are read: the last
    /// block at overall stride 4, 8 and 16.
    pub fn tap_blocks(&self) -> [usize; 3] {
        let mut stride = 2; // the stem's
        let mut last_at = HashMap::new();
        for (i, b) in self.blocks.iter().enumerate() {
            stride *= b.stride;
            last_at.insert(stride, i);
        }
        [last_at[&4], last_at[&8], last_at[&16]]
    }

    /// Tap dimensions: stem, the ends of the stride-4, -8 and -16 stages,
    /// the head convolution.
    pub fn tap_dims(&self) -> Vec<usize> {
        let t = self.tap_blocks();
        vec![
            STEM,
            self.blocks[t[0]].cout,
            self.blocks[t[1]].cout,
            self.blocks[t[2]].cout,
            HEAD,
        ]
    }

    pub fn describe(&self) -> String {
        format!("{}, {} classes", self.name, self.num_classes)
    }

    /// Every floating-point tensor of the wheel's state dict, in its order.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut t = Vec::new();
        let bn = |t: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
            for leaf in ["weight", "bias", "running_mean", "running_var"] {
                t.push((format!("{p}.{leaf}"), vec![c]));
            }
        };
        t.push(("_conv_stem.weight".into(), vec![STEM, 3, 3, 3]));
        bn(&mut t, "_bn0", STEM);
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("_blocks.{i}");
            let mid = b.mid();
            if b.expand != 1 {
                t.push((format!("{p}._expand_conv.weight"), vec![mid, b.cin, 1, 1]));
                bn(&mut t, &format!("{p}._bn0"), mid);
            }
            t.push((
                format!("{p}._depthwise_conv.weight"),
                vec![mid, 1, b.kernel, b.kernel],
            ));
            bn(&mut t, &format!("{p}._bn1"), mid);
            t.push((format!("{p}._project_conv.weight"), vec![b.cout, mid, 1, 1]));
            bn(&mut t, &format!("{p}._bn2"), b.cout);
        }
        let last = self.blocks.last().map_or(STEM, |b| b.cout);
        t.push(("_conv_head.weight".into(), vec![HEAD, last, 1, 1]));
        bn(&mut t, "_bn1", HEAD);
        t.push(("_fc.weight".into(), vec![self.num_classes, HEAD]));
        t.push(("_fc.bias".into(), vec![self.num_classes]));
        t
    }

    /// Learned parameters (PyTorch's `parameters()`: BatchNorm running
    /// statistics are buffers, not parameters).
    pub fn num_params(&self) -> usize {
        self.tensor_shapes()
            .iter()
            .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// What a checkpoint holds: block count, stem-block and last widths,
    /// classes, as far as the names say.
    fn summarize(tensors: &HashMap<String, Tensor>) -> Option<(usize, usize, usize, usize)> {
        let blocks = tensors
            .keys()
            .filter_map(|k| k.strip_prefix("_blocks.")?.split('.').next()?.parse().ok())
            .map(|i: usize| i + 1)
            .max()?;
        let first = tensors.get("_blocks.0._project_conv.weight")?.dim(0).ok()?;
        let last = tensors
            .get(&format!("_blocks.{}._project_conv.weight", blocks - 1))?
            .dim(0)
            .ok()?;
        let classes = tensors.get("_fc.weight")?.dim(0).ok()?;
        Some((blocks, first, last, classes))
    }

    fn matches(&self, summary: (usize, usize, usize, usize)) -> bool {
        let (blocks, first, last, _) = summary;
        self.blocks.len() == blocks
            && self.blocks[0].cout == first
            && self.blocks[blocks - 1].cout == last
    }
}

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

/// A 1x1 convolution with BatchNorm folded in: weight [cin, cout] (so that
/// pixels [N, cin] x weight gives [N, cout]), bias [cout]; as tensors for
/// candle and as f32 for the CPU kernels.
#[derive(Debug, Clone)]
struct Pointwise {
    w: Tensor,
    b: Tensor,
    w_host: Arc<[f32]>,
    b_host: Arc<[f32]>,
}

/// A depthwise convolution with BatchNorm folded in: weight [k, k, C],
/// bias [C].
#[derive(Debug, Clone)]
struct Depthwise {
    w: Tensor,
    b: Tensor,
    w_host: Arc<[f32]>,
    b_host: Arc<[f32]>,
    kernel: usize,
    stride: usize,
}

#[derive(Debug, Clone)]
struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
}

/// EfficientNet-Lite with BatchNorm folded, ready for inference and for
/// gradients with respect to its input.
#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    cfg: EfficientNetConfig,
    /// Stem 3x3 stride-2 convolution: OIHW [32, 3, 3, 3] for candle, and
    /// [3, 3, 3, 32] (dy, dx, in, out) for the CPU kernel; bias.
    stem_w: Tensor,
    stem_w_host: Arc<[f32]>,
    stem_b: Tensor,
    stem_b_host: Arc<[f32]>,
    blocks: Vec<Block>,
    head_conv: Pointwise,
    fc_w: Tensor,
    fc_b: Tensor,
    taps: [usize; 3],
    meta: Meta,
    /// Our CPU kernels (in f32 whatever the dtype) or candle ops.
    cpu: bool,
}

/// Reads a tensor as f32 values.
fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// BatchNorm in inference form as per-channel scale and shift (in f64).
fn bn_affine(tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<(Vec<f64>, Vec<f64>)> {
    let get = |leaf: &str| -> Result<Vec<f32>> {
        let name = format!("{prefix}.{leaf}");
        host(tensors.get(&name).ok_or_else(|| {
            Error::Invalid(format!("internal: `{name}` missing after the tensor check"))
        })?)
    };
    let (gamma, beta, mean, var) = (
        get("weight")?,
        get("bias")?,
        get("running_mean")?,
        get("running_var")?,
    );
    let scale: Vec<f64> = gamma
        .iter()
        .zip(&var)
        .map(|(&g, &v)| g as f64 / (v as f64 + BN_EPS).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(&mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| b as f64 - m as f64 * s)
        .collect();
    Ok((scale, shift))
}

impl EfficientNetLite {
    /// Builds the network from the wheel's tensors (already checked).
    fn build(
        cfg: &EfficientNetConfig,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let get = |name: &str| -> Result<Vec<f32>> {
            host(tensors.get(name).ok_or_else(|| {
                Error::Invalid(format!("internal: `{name}` missing after the tensor check"))
            })?)
        };
        let to_dev = |v: Vec<f32>, shape: &[usize]| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
        };
        // The CPU kernels compute in f32 on values of the model's dtype (as
        // its weights are on other devices).
        let host = |v: Vec<f32>| -> Result<Arc<[f32]>> {
            if dtype == DType::F32 {
                return Ok(v.into());
            }
            let t = Tensor::new(v.as_slice(), &Device::Cpu)?.to_dtype(dtype)?;
            Ok(t.to_dtype(DType::F32)?.to_vec1::<f32>()?.into())
        };
        // [cout, cin, 1, 1] weight and BatchNorm -> [cin, cout] weight, bias.
        let pointwise = |conv: &str, bn: &str, cin: usize, cout: usize| -> Result<Pointwise> {
            let w = get(conv)?;
            let (scale, shift) = bn_affine(tensors, bn)?;
            let mut wt = vec![0f32; cin * cout];
            for o in 0..cout {
                for i in 0..cin {
                    wt[i * cout + o] = (w[o * cin + i] as f64 * scale[o]) as f32;
                }
            }
            let b: Vec<f32> = shift.iter().map(|&v| v as f32).collect();
            Ok(Pointwise {
                w: to_dev(wt.clone(), &[cin, cout])?,
                b: to_dev(b.clone(), &[cout])?,
                w_host: host(wt)?,
                b_host: host(b)?,
            })
        };

        let (scale, shift) = bn_affine(tensors, "_bn0")?;
        let stem: Vec<f32> = get("_conv_stem.weight")?
            .chunks(27)
            .zip(&scale)
            .flat_map(|(w, &s)| w.iter().map(move |&v| (v as f64 * s) as f32))
            .collect();
        // OIHW -> (dy, dx, in, out).
        let mut stem_host = vec![0f32; 27 * STEM];
        for o in 0..STEM {
            for i in 0..3 {
                for j in 0..9 {
                    stem_host[(j * 3 + i) * STEM + o] = stem[(o * 3 + i) * 9 + j];
                }
            }
        }
        let stem_b: Vec<f32> = shift.iter().map(|&v| v as f32).collect();

        let mut blocks = Vec::with_capacity(cfg.blocks.len());
        for (i, b) in cfg.blocks.iter().enumerate() {
            let p = format!("_blocks.{i}");
            let mid = b.mid();
            let expand = if b.expand != 1 {
                Some(pointwise(
                    &format!("{p}._expand_conv.weight"),
                    &format!("{p}._bn0"),
                    b.cin,
                    mid,
                )?)
            } else {
                None
            };
            // [C, 1, k, k] -> [k, k, C], scaled per channel.
            let k = b.kernel;
            let w = get(&format!("{p}._depthwise_conv.weight"))?;
            let (scale, shift) = bn_affine(tensors, &format!("{p}._bn1"))?;
            let mut wt = vec![0f32; k * k * mid];
            for c in 0..mid {
                for j in 0..k * k {
                    wt[j * mid + c] = (w[c * k * k + j] as f64 * scale[c]) as f32;
                }
            }
            let bias: Vec<f32> = shift.iter().map(|&v| v as f32).collect();
            let depthwise = Depthwise {
                w: to_dev(wt.clone(), &[k, k, mid])?,
                b: to_dev(bias.clone(), &[mid])?,
                w_host: host(wt)?,
                b_host: host(bias)?,
                kernel: k,
                stride: b.stride,
            };
            let project = pointwise(
                &format!("{p}._project_conv.weight"),
                &format!("{p}._bn2"),
                mid,
                b.cout,
            )?;
            blocks.push(Block {
                expand,
                depthwise,
                project,
                residual: b.residual(),
            });
        }
        let last = cfg.blocks.last().map_or(STEM, |b| b.cout);
        let head_conv = pointwise("_conv_head.weight", "_bn1", last, HEAD)?;
        // The classifier head stays f32 whatever the body's dtype.
        let fc_w = Tensor::from_vec(get("_fc.weight")?, (cfg.num_classes, HEAD), device)?;
        let fc_b = Tensor::from_vec(get("_fc.bias")?, cfg.num_classes, device)?;
        let info = ModelInfo {
            name: cfg.describe(),
            family: Family::EfficientNetLite,
            num_classes: cfg.num_classes,
            feature_dim: HEAD,
            tap_dims: cfg.tap_dims(),
            num_params: cfg.num_params(),
            input: InputSpec::half(cfg.resolution),
        };
        Ok(EfficientNetLite {
            cfg: cfg.clone(),
            stem_w: to_dev(stem, &[STEM, 3, 3, 3])?,
            stem_w_host: host(stem_host)?,
            stem_b: to_dev(stem_b.clone(), &[STEM])?,
            stem_b_host: host(stem_b)?,
            blocks,
            head_conv,
            fc_w,
            fc_b,
            taps: cfg.tap_blocks(),
            meta: Meta {
                info,
                device: device.clone(),
                dtype,
            },
            cpu: device.is_cpu(),
        })
    }

    /// Loads the wheel's tensors, checking names and shapes against the
    /// variant named by `--model` or, without one, the variant they fit.
    pub fn from_checkpoint(
        ckpt: Checkpoint,
        name: Option<&str>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if !looks_like(&ckpt) {
            let found = if super::bit::looks_like(&ckpt) {
                "BiT ResNetV2 weights (root.conv.weight, body.*)".to_string()
            } else {
                "no EfficientNet-Lite tensors (no _conv_stem.weight)".to_string()
            };
            let requested = name.unwrap_or("EfficientNet-Lite");
            return Err(params::mismatch(&ckpt, requested, found));
        }
        let summary = EfficientNetConfig::summarize(&ckpt.tensors);
        let mut cfg = match name.and_then(variant) {
            Some(v) => {
                let cfg = EfficientNetConfig::of(v);
                if let Some(s) = summary.filter(|s| !cfg.matches(*s)) {
                    return Err(params::mismatch(&ckpt, v.name, describe_summary(s)));
                }
                cfg
            }
            None => {
                let s = summary.ok_or_else(|| Error::NotACheckpoint {
                    path: ckpt.path.clone(),
                    reason: "no EfficientNet-Lite architecture can be read from its tensors \
                             (_blocks.N._project_conv.weight, _fc.weight)"
                        .into(),
                })?;
                VARIANTS
                    .iter()
                    .map(EfficientNetConfig::of)
                    .find(|c| c.matches(s))
                    .ok_or_else(|| Error::NotACheckpoint {
                        path: ckpt.path.clone(),
                        reason: format!(
                            "{} fits no EfficientNet-Lite variant (lite0..lite4)",
                            describe_summary(s)
                        ),
                    })?
            }
        };
        if let Some((_, _, _, classes)) = summary {
            cfg.num_classes = classes;
        }
        weights::check_tensors(&ckpt, &cfg.tensor_shapes(), &cfg.describe())?;
        Self::build(&cfg, &ckpt.tensors, device, dtype)
    }

    /// Random weights of the named variant's shape (benchmarks): He-normal
    /// convolutions, identity BatchNorm, a small random classifier.
    pub fn random(name: &str, device: &Device, dtype: DType) -> Result<Self> {
        let v = variant(name).ok_or_else(|| {
            Error::Invalid(format!(
                "`{name}` is no EfficientNet-Lite variant (efficientnet-lite0..4)"
            ))
        })?;
        let cfg = EfficientNetConfig::of(v);
        let mut tensors = HashMap::new();
        for (n, shape) in cfg.tensor_shapes() {
            let t = if n.ends_with("running_var") || (n.contains("_bn") && n.ends_with("weight")) {
                Tensor::ones(shape.as_slice(), DType::F32, &Device::Cpu)?
            } else if n.ends_with("bias") || n.ends_with("running_mean") {
                Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?
            } else {
                let fan_in: usize = shape[1..].iter().product();
                let std = if n == "_fc.weight" {
                    0.01
                } else {
                    (2.0 / fan_in as f64).sqrt()
                };
                Tensor::randn(0f32, std as f32, shape.as_slice(), &Device::Cpu)?
            };
            tensors.insert(n, t);
        }
        let mut m = Self::build(&cfg, &tensors, device, dtype)?;
        m.meta.mark_random();
        Ok(m)
    }

    pub fn config(&self) -> &EfficientNetConfig {
        &self.cfg
    }

    /// Runs every layer with candle ops, as on devices other than the CPU
    /// (slower; a reference for the CPU kernels). candle's CPU matmul has
    /// no bf16.
    pub fn with_candle_ops(mut self) -> Self {
        self.cpu = false;
        self
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
        if self.cpu {
            return Ok(kernels::stem_relu6(
                &x,
                g,
                &self.stem_w_host,
                &self.stem_b_host,
            )?);
        }
        let (_, pb, _) = same_padding(h, 3, 2);
        let (_, pr, _) = same_padding(w, 3, 2);
        let x = x.pad_with_zeros(2, g.pt, pb)?.pad_with_zeros(3, g.pl, pr)?;
        let y = x.conv2d(&self.stem_w, 0, 2, 1, 1)?.permute((0, 2, 3, 1))?;
        Ok(y.broadcast_add(&self.stem_b)?.clamp(0f32, 6f32)?)
    }

    /// 1x1 convolution + bias, then ReLU6 or the residual.
    fn pointwise(
        &self,
        x: &Tensor,
        p: &Pointwise,
        relu6: bool,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        if self.cpu {
            return Ok(kernels::pointwise(
                x,
                &p.w_host,
                Some(&p.b_host),
                relu6,
                residual,
            )?);
        }
        let (b, h, w, c) = x.dims4()?;
        let y = x
            .reshape((b * h * w, c))?
            .matmul(&p.w)?
            .reshape((b, h, w, p.w.dim(1)?))?;
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
        let g = same_geometry(h, w, d.kernel, d.stride);
        let y = if self.cpu {
            kernels::depthwise_relu6(&y, g, &d.w_host, &d.b_host)?
        } else {
            kernels::depthwise_composed(&y, g, &d.w, &d.b)?
        };
        let residual = blk.residual.then_some(x);
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

fn describe_summary((blocks, first, last, classes): (usize, usize, usize, usize)) -> String {
    format!("an EfficientNet with {blocks} blocks (widths {first}..{last}) and {classes} classes")
}

/// Spatial mean of [B, H, W, C] as f32 [B, C].
fn nhwc_mean(x: &Tensor) -> Result<Tensor> {
    Ok(kernels::mean(x)?)
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

    fn tap(&self, _l: usize, state: &Tensor) -> Result<Tensor> {
        nhwc_mean(state)
    }

    /// The pooled head output is both the penultimate feature and tap 4.
    fn feature(&self, last: &Tensor) -> Result<Tensor> {
        nhwc_mean(last)
    }

    fn head(&self) -> (&Tensor, &Tensor) {
        (&self.fc_w, &self.fc_b)
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
