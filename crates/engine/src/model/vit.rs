//! Over 600 lines with its tests: the check of the kernels' path against
//! candle's (values and input gradients) and the per-layer profile read
//! the encoder layer's private parts, so they stay beside it.
//!
//! torchvision's VisionTransformer with torchvision's state-dict names:
//! `conv_proj`, `class_token`, `encoder.pos_embedding`,
//! `encoder.layers.encoder_layer_N.{ln_1, self_attention.{in_proj_*,
//! out_proj}, ln_2, mlp.{0,3}}`, `encoder.ln`, `heads.head`. Image and patch
//! size, depth, width, MLP width and classes are read from the checkpoint;
//! the number of heads is not in a state dict, so it is the model name's
//! (`vit:heads=4`, `vit-h-14`) or that of torchvision's published variant of
//! the width (B 768/12, L 1024/16, H 1280/16); any other width is refused.
//!
//! Built on candle-nn rather than candle-transformers' vit (other names,
//! and a crate that compiles every model it has): attention's softmax and
//! the LayerNorms are the composed, differentiable forms whenever a
//! gradient is asked for (ODIN, Mahalanobis), candle's fused kernels
//! otherwise.
//!
//! On the CPU in f32, the linear maps, attention's core and the GELU run on
//! our kernels (candle's ops elsewhere, and for the linear maps whenever a
//! probe reads the weight layers); mlp.0 and its GELU are one op where no
//! gradient flows.
//!
//! Mahalanobis taps: the mean over all tokens (class token included) of the
//! embedded input and of the output of each quarter of the encoder layers
//! (fewer stages when there are fewer than four layers). The feature h is
//! the class token after the final LayerNorm, the input of `heads.head`.

use super::params::{self, LayerNorm, TorchvisionArch};
use super::probe::{self, LayerOp};
use super::{Backbone, Family, Meta, ModelInfo, Preprocess};
use crate::error::{Error, Result};
use crate::weights::Checkpoint;
use candle_core::{DType, Tensor};
use candle_nn::{Init, Linear, Module, VarBuilder};
use gradnorm_kernels::{self as kernels, Act};
use std::collections::HashMap;
use std::sync::Arc;

const LN_EPS: f64 = 1e-6;
const LAYER: &str = "encoder.layers.encoder_layer_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VitConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub hidden_dim: usize,
    pub mlp_dim: usize,
    pub num_classes: usize,
}

/// torchvision's variants: (name, patch, layers, heads, hidden, mlp), as
/// its builders publish them (torchvision/models/vision_transformer.py).
pub const VARIANTS: [(&str, usize, usize, usize, usize, usize); 5] = [
    ("vit-b-16", 16, 12, 12, 768, 3072),
    ("vit-b-32", 32, 12, 12, 768, 3072),
    ("vit-l-16", 16, 24, 16, 1024, 4096),
    ("vit-l-32", 32, 24, 16, 1024, 4096),
    ("vit-h-14", 14, 32, 16, 1280, 5120),
];

/// The heads of torchvision's published variants of this width: the state
/// dict does not hold them, and width / 64 is wrong for ViT-H (16 heads of
/// 80), so no other width is guessed.
pub fn published_heads(hidden_dim: usize) -> Option<usize> {
    VARIANTS.iter().find(|v| v.4 == hidden_dim).map(|v| v.3)
}

fn key(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '/'], "-")
}

pub fn variant(name: &str) -> Option<VitConfig> {
    let k = key(name);
    VARIANTS.iter().find(|v| v.0 == k).map(
        |&(_, patch_size, num_layers, num_heads, hidden_dim, mlp_dim)| VitConfig {
            image_size: 224,
            patch_size,
            num_layers,
            num_heads,
            hidden_dim,
            mlp_dim,
            num_classes: 1000,
        },
    )
}

/// "vit" (everything from the checkpoint) or "vit:heads=N".
pub fn is_family_name(name: &str) -> bool {
    family_heads(name).is_some()
}

/// For a family name, the heads it sets (Some(None) when it sets none).
fn family_heads(name: &str) -> Option<Option<usize>> {
    let k = key(name);
    if k == "vit" {
        return Some(None);
    }
    let n = k.strip_prefix("vit:heads=")?.parse().ok()?;
    Some(Some(n))
}

pub fn looks_like(ckpt: &Checkpoint) -> bool {
    ckpt.tensors.contains_key("conv_proj.weight")
        && ckpt.tensors.contains_key("encoder.pos_embedding")
}

impl VitConfig {
    pub fn num_stages(&self) -> usize {
        self.num_layers.clamp(1, 4)
    }

    /// Encoder layers of stage `l` (1-based).
    fn stage_layers(&self, l: usize) -> std::ops::Range<usize> {
        let n = self.num_stages();
        self.num_layers * (l - 1) / n..self.num_layers * l / n
    }

    /// The architecture of a torchvision state dict; `heads` when the name
    /// gave them, else the published variants' for the width. Err(None):
    /// no ViT tensors; Err(Some(why)): the heads must be named.
    pub fn infer(
        tensors: &HashMap<String, Tensor>,
        heads: Option<usize>,
    ) -> std::result::Result<VitConfig, Option<String>> {
        let cfg = Self::read(tensors).ok_or(None)?;
        let num_heads = match heads.or_else(|| published_heads(cfg.hidden_dim)) {
            Some(h) => h,
            None => {
                return Err(Some(format!(
                    "a ViT of width {} is none of torchvision's published variants, and a \
                     state dict does not hold the number of attention heads: name it with \
                     --model vit:heads=N (N divides {})",
                    cfg.hidden_dim, cfg.hidden_dim
                )))
            }
        };
        if num_heads == 0 || cfg.hidden_dim % num_heads != 0 {
            return Err(Some(format!(
                "width {} is not divisible into {num_heads} attention heads",
                cfg.hidden_dim
            )));
        }
        Ok(VitConfig { num_heads, ..cfg })
    }

    /// Everything a state dict holds (the heads left 0).
    fn read(tensors: &HashMap<String, Tensor>) -> Option<VitConfig> {
        let (hidden_dim, _, patch_size, _) = tensors.get("conv_proj.weight")?.dims4().ok()?;
        let (_, tokens, _) = tensors.get("encoder.pos_embedding")?.dims3().ok()?;
        let side = (((tokens - 1) as f64).sqrt()).round() as usize;
        if side * side + 1 != tokens {
            return None;
        }
        let mut num_layers = 0;
        while tensors.contains_key(&format!("{LAYER}{num_layers}.ln_1.weight")) {
            num_layers += 1;
        }
        let mlp_dim = tensors
            .get(&format!("{LAYER}0.mlp.0.weight"))?
            .dim(0)
            .ok()?;
        let num_classes = tensors.get("heads.head.weight")?.dim(0).ok()?;
        Some(VitConfig {
            image_size: side * patch_size,
            patch_size,
            num_layers,
            num_heads: 0,
            hidden_dim,
            mlp_dim,
            num_classes,
        })
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    /// The checkpoint's prefix (`encoder.layers.encoder_layer_N`).
    prefix: String,
    ln_1: LayerNorm,
    in_proj: Linear,
    out_proj: Linear,
    ln_2: LayerNorm,
    mlp_0: Linear,
    mlp_3: Linear,
    heads: usize,
    /// in_proj, out_proj, mlp.0, mlp.3 for the CPU kernels (f32 models on
    /// the CPU): weights transposed to [in, out] and packed once.
    host: Option<[HostLinear; 4]>,
}

/// A linear layer as the CPU kernels take it.
#[derive(Debug, Clone)]
struct HostLinear {
    w: kernels::Weights,
    b: Arc<[f32]>,
}

impl HostLinear {
    fn new(layer: &Linear) -> candle_core::Result<Self> {
        let w = layer
            .weight()
            .t()?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let b = layer.bias().expect("every ViT linear has a bias");
        Ok(HostLinear {
            w: kernels::Weights::new(w.into()),
            b: b.to_vec1::<f32>()?.into(),
        })
    }
}

/// An encoder layer's linear maps, in [`EncoderLayer::host`]'s order.
#[derive(Debug, Clone, Copy)]
enum Part {
    InProj,
    OutProj,
    Mlp0,
    Mlp3,
}

impl Part {
    /// The layer's name under the encoder layer's prefix, as GradNorm's
    /// layer list (torch's named modules with a `.weight`) has it; none for
    /// in_proj, whose `in_proj_weight` is a parameter of the attention
    /// module, not a layer of its own.
    fn layer_name(self) -> Option<&'static str> {
        match self {
            Part::InProj => None,
            Part::OutProj => Some("self_attention.out_proj"),
            Part::Mlp0 => Some("mlp.0"),
            Part::Mlp3 => Some("mlp.3"),
        }
    }
}

impl EncoderLayer {
    fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_dim;
        // In torchvision's state-dict order (the recorder lists them so).
        let ln_1 = LayerNorm::new(vb.pp("ln_1"), d, LN_EPS)?;
        let att = vb.pp("self_attention");
        let in_w = att.get_with_hints(
            (3 * d, d),
            "in_proj_weight",
            candle_nn::init::DEFAULT_KAIMING_UNIFORM,
        )?;
        let in_b = att.get_with_hints(3 * d, "in_proj_bias", Init::Const(0.0))?;
        let mut layer = EncoderLayer {
            prefix: vb.prefix(),
            ln_1,
            in_proj: Linear::new(in_w, Some(in_b)),
            out_proj: params::linear(att.pp("out_proj"), d, d)?,
            ln_2: LayerNorm::new(vb.pp("ln_2"), d, LN_EPS)?,
            mlp_0: params::linear(vb.pp("mlp").pp("0"), d, cfg.mlp_dim)?,
            mlp_3: params::linear(vb.pp("mlp").pp("3"), cfg.mlp_dim, d)?,
            heads: cfg.num_heads,
            host: None,
        };
        if vb.device().is_cpu() && vb.dtype() == DType::F32 {
            layer.host = Some([
                HostLinear::new(&layer.in_proj)?,
                HostLinear::new(&layer.out_proj)?,
                HostLinear::new(&layer.mlp_0)?,
                HostLinear::new(&layer.mlp_3)?,
            ]);
        }
        Ok(layer)
    }

    /// nn.MultiheadAttention (batch first, self-attention, no mask) up to
    /// its out_proj: the heads' weighted sums, concatenated.
    fn attention(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let hd = d / self.heads;
        let qkv = self.linear(Part::InProj, x, None)?;
        if self.host.is_some() && kernels::attention_fits(hd) {
            let y = kernels::attention(&qkv, self.heads)?; // [b, heads, n, hd]
            return y.transpose(1, 2)?.reshape((b, n, d));
        }
        let qkv = qkv
            .reshape((b, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?; // [3, b, heads, n, hd]
        let q = (qkv.get(0)?.contiguous()? * (1.0 / (hd as f64).sqrt()))?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let att = params::softmax_last(&q.matmul(&k.t()?)?)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        Ok(y)
    }

    /// `part` on `x`, plus `residual`: on the CPU kernels (the bias and the
    /// add in the product's pass) unless a probe reads the weight layers,
    /// which only candle's path shows it.
    fn linear(
        &self,
        part: Part,
        x: &Tensor,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        if let Some(host) = self.host.as_ref().filter(|_| !probe::reads_layers()) {
            let h = &host[part as usize];
            return kernels::pointwise(x, &h.w, Some(&h.b), Act::Linear, residual);
        }
        let layer = match part {
            Part::InProj => &self.in_proj,
            Part::OutProj => &self.out_proj,
            Part::Mlp0 => &self.mlp_0,
            Part::Mlp3 => &self.mlp_3,
        };
        let mut y = layer.forward(x)?;
        if let Some(part) = part.layer_name() {
            let name = || format!("{}.{part}", self.prefix);
            y = probe::at(name, LayerOp::Linear, layer.weight(), x, y)?;
        }
        match residual {
            Some(r) => y + r,
            None => Ok(y),
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.attention(&self.ln_1.forward(x)?)?;
        let x = self.linear(Part::OutProj, &y, Some(x))?;
        let y = self.mlp_0_gelu(&self.ln_2.forward(&x)?)?;
        self.linear(Part::Mlp3, &y, Some(&x))
    }

    /// mlp.0 then the GELU: one op on the kernels where nothing needs
    /// mlp.0's output (no probe reads the layer, no gradient flows), the
    /// same bits as the two apart.
    fn mlp_0_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(host) = self.host.as_ref().filter(|_| !probe::reads_layers()) {
            let h = &host[Part::Mlp0 as usize];
            if let Some(y) = kernels::pointwise_gelu(x, &h.w, Some(&h.b))? {
                return Ok(y);
            }
        }
        self.gelu(&self.linear(Part::Mlp0, x, None)?)
    }

    /// The exact GELU: the CPU kernel where the linear maps have theirs
    /// (f32 on the CPU), candle's op elsewhere.
    fn gelu(&self, y: &Tensor) -> candle_core::Result<Tensor> {
        match self.host {
            Some(_) => kernels::gelu_erf(y),
            None => y.gelu_erf(),
        }
    }

    fn without_kernels(mut self) -> Self {
        self.host = None;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Vit {
    cfg: VitConfig,
    conv_w: Tensor,
    conv_b: Tensor,
    class_token: Tensor,
    pos_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    ln: LayerNorm,
    meta: Meta,
}

impl Vit {
    /// The model over `vb`, whose names are torchvision's.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_dim;
        let p = cfg.patch_size;
        if !cfg.image_size.is_multiple_of(p) || !d.is_multiple_of(cfg.num_heads) {
            return Err(Error::Invalid(format!(
                "ViT: image {} not a multiple of patch {p}, or width {d} of {} heads",
                cfg.image_size, cfg.num_heads
            )));
        }
        let tokens = (cfg.image_size / p).pow(2) + 1;
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let class_token = vb.get_with_hints((1, 1, d), "class_token", Init::Const(0.0))?;
        let conv_w = params::conv_weight(&vb.pp("conv_proj"), d, 3, p, "weight")?;
        let conv_b = vb
            .pp("conv_proj")
            .get_with_hints(d, "bias", Init::Const(0.0))?;
        let enc = vb.pp("encoder");
        let pos_embedding = enc.get_with_hints((1, tokens, d), "pos_embedding", init)?;
        let layers = (0..cfg.num_layers)
            .map(|i| EncoderLayer::new(cfg, enc.pp("layers").pp(format!("encoder_layer_{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let ln = LayerNorm::new(enc.pp("ln"), d, LN_EPS)?;
        let head = params::head(vb.pp("heads").pp("head"), d, cfg.num_classes)?;
        let info = ModelInfo {
            name: cfg.describe(),
            family: Family::Vit,
            num_classes: cfg.num_classes,
            feature_dim: d,
            tap_dims: vec![d; cfg.num_stages() + 1],
            num_params: 0,
            input: Preprocess::Torchvision.spec(cfg.image_size),
        };
        Ok(Vit {
            cfg: cfg.clone(),
            conv_w,
            conv_b: conv_b.reshape((1, d, 1, 1))?,
            class_token,
            pos_embedding,
            layers,
            ln,
            meta: Meta::new(info, vb.device(), vb.dtype(), head),
        })
    }

    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// Every layer on candle's ops, as on devices other than the CPU (a
    /// reference for the kernels).
    pub fn with_candle_ops(mut self) -> Self {
        self.layers = self
            .layers
            .into_iter()
            .map(EncoderLayer::without_kernels)
            .collect();
        self
    }
}

impl params::TorchvisionArch for VitConfig {
    type Model = Vit;
    const NOT_FOUND: &'static str =
        "no torchvision ViT tensors (conv_proj, encoder.pos_embedding, heads.head)";

    /// The heads are not in a state dict: the name's (a family name with
    /// heads, or a variant), else the published variants' of that width.
    fn infer(
        tensors: &HashMap<String, Tensor>,
        name: Option<&str>,
    ) -> std::result::Result<Self, Option<String>> {
        let heads = name.and_then(family_heads).flatten();
        let heads = heads.or(name.and_then(variant).map(|c| c.num_heads));
        VitConfig::infer(tensors, heads)
    }

    fn variant(name: &str) -> Option<Self> {
        variant(name)
    }

    /// Everything but the classes, which are the checkpoint's.
    fn is_variant(&self, want: &Self) -> bool {
        *want
            == VitConfig {
                num_classes: want.num_classes,
                ..self.clone()
            }
    }

    fn describe(&self) -> String {
        let standard = VARIANTS.iter().find(|v| {
            variant(v.0).is_some_and(|c| {
                VitConfig {
                    num_classes: self.num_classes,
                    ..c
                } == *self
            })
        });
        match standard {
            Some(v) if self.num_classes == 1000 => v.0.to_string(),
            Some(v) => format!("{}, {} classes", v.0, self.num_classes),
            None => format!(
                "ViT (image {}, patch {}, {} layers, {} heads, width {}, MLP {}, {} classes)",
                self.image_size,
                self.patch_size,
                self.num_layers,
                self.num_heads,
                self.hidden_dim,
                self.mlp_dim,
                self.num_classes
            ),
        }
    }

    fn build(&self, vb: VarBuilder) -> Result<Vit> {
        Vit::new(self, vb)
    }

    fn meta_mut(model: &mut Vit) -> &mut Meta {
        &mut model.meta
    }
}

impl Backbone for Vit {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Patches, class token and position embedding: tokens [B, 1 + n, D].
    fn stem(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let s = self.cfg.image_size;
        if c != 3 || h != s || w != s {
            return Err(Error::Invalid(format!(
                "{} takes 3 x {s} x {s} input (its position embeddings are fixed), not {c} x {h} x {w}",
                self.meta.info.name
            )));
        }
        let p = self.cfg.patch_size;
        let x = x.to_dtype(self.meta.dtype)?;
        let y = params::conv2d(&x, &self.conv_w, 0, p)?;
        let op = LayerOp::Conv2d {
            kernel: (p, p),
            stride: p,
            padding: 0,
        };
        let y = probe::at(|| "conv_proj".into(), op, &self.conv_w, &x, y)?
            .broadcast_add(&self.conv_b)?;
        let d = self.cfg.hidden_dim;
        let y = y.flatten_from(2)?.transpose(1, 2)?; // [b, n, d]
        let cls = self.class_token.broadcast_as((b, 1, d))?;
        let y = Tensor::cat(&[&cls, &y], 1)?;
        Ok(y.broadcast_add(&self.pos_embedding)?)
    }

    fn stage(&self, l: usize, mut x: Tensor) -> Result<Tensor> {
        for layer in &self.layers[self.cfg.stage_layers(l)] {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    fn tap(&self, _l: usize, state: &Tensor) -> Result<Tensor> {
        Ok(state.to_dtype(DType::F32)?.mean(1)?)
    }

    fn feature(&self, last: &Tensor) -> Result<Tensor> {
        let y = self
            .ln
            .forward(&last.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?)?;
        params::f32(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_split_the_layers_in_quarters() {
        let cfg = variant("vit-b-16").unwrap();
        let stages: Vec<_> = (1..=4).map(|l| cfg.stage_layers(l)).collect();
        assert_eq!(stages, vec![0..3, 3..6, 6..9, 9..12]);
        let two = VitConfig {
            num_layers: 2,
            ..cfg
        };
        assert_eq!(two.num_stages(), 2);
        assert_eq!(two.stage_layers(2), 1..2);
    }

    #[test]
    fn family_names_may_give_the_heads() {
        assert_eq!(family_heads("vit"), Some(None));
        assert_eq!(family_heads("ViT:heads=4"), Some(Some(4)));
        assert_eq!(family_heads("vit-b-16"), None);
    }

    /// The linear maps on the CPU kernels give candle's logits and input
    /// gradients (ODIN's and Mahalanobis's way through the model).
    #[test]
    fn kernels_path_equals_candles() {
        use candle_core::{Device, Var};
        let cfg = VitConfig {
            image_size: 32,
            patch_size: 8,
            num_layers: 2,
            num_heads: 4,
            hidden_dim: 64,
            mlp_dim: 128,
            num_classes: 10,
        };
        let fast = params::random_torchvision(&cfg, &Device::Cpu, DType::F32).unwrap();
        assert!(fast.layers.iter().all(|l| l.host.is_some()));
        let slow = fast.clone().with_candle_ops();
        let x = crate::model::fixed_input(&[2, 3, 32, 32], 1);
        let run = |m: &Vit| {
            let x = Var::from_tensor(&x).unwrap();
            let logits = m.forward(x.as_tensor()).unwrap().logits;
            let grads = logits.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            (logits, grads.get(x.as_tensor()).unwrap().clone())
        };
        let close =
            |what: &str, u: &Tensor, v: &Tensor| crate::model::assert_close(what, u, v, 1e-5);
        let ((za, ga), (zb, gb)) = (run(&fast), run(&slow));
        close("logits", &za, &zb);
        close("input gradient", &ga, &gb);
    }

    /// A profiling tool, not a check of speed: ViT-B/16 @224 on the CPU
    /// layer by layer (CPU ms per image, GMAC per CPU second), each encoder
    /// layer checked against `EncoderLayer::forward`. Run by hand:
    /// `cargo test --release -p gradnorm-engine --lib profile_vit_b16 -- --ignored --nocapture`
    /// (PROFILE_BATCH, default 8).
    #[test]
    #[ignore]
    fn profile_vit_b16_forward_by_layer() {
        use candle_core::Device;
        let b: usize = std::env::var("PROFILE_BATCH").map_or(8, |v| v.parse().unwrap());
        let cfg = variant("vit-b-16").unwrap();
        let m = params::random_torchvision(&cfg, &Device::Cpu, DType::F32).unwrap();
        let x = Tensor::rand(-1f32, 1., (b, 3, 224, 224), &Device::Cpu).unwrap();
        let mut p = crate::model::Profile::default();
        let mut x = p.time("patches + embedding", 0, || m.stem(&x).unwrap());
        let (n, d, f) = (x.dim(1).unwrap(), cfg.hidden_dim, cfg.mlp_dim);
        let (heads, hd) = (cfg.num_heads, d / cfg.num_heads);
        let rows = b * n;
        for layer in &m.layers {
            let want = layer.forward(&x).unwrap();
            let y = p.time("ln_1", 0, || layer.ln_1.forward(&x).unwrap());
            let qkv = p.time("in_proj", rows * d * 3 * d, || {
                layer.linear(Part::InProj, &y, None).unwrap()
            });
            let y = p.time("attention (fused)", 2 * b * heads * n * n * hd, || {
                kernels::attention(&qkv, heads).unwrap()
            });
            let y = p.time("merge heads", 0, || {
                y.transpose(1, 2).unwrap().reshape((b, n, d)).unwrap()
            });
            let x1 = p.time("out_proj + add", rows * d * d, || {
                layer.linear(Part::OutProj, &y, Some(&x)).unwrap()
            });
            let y = p.time("ln_2", 0, || layer.ln_2.forward(&x1).unwrap());
            let y = p.time("mlp.0", rows * d * f, || {
                layer.linear(Part::Mlp0, &y, None).unwrap()
            });
            let y = p.time("gelu", 0, || layer.gelu(&y).unwrap());
            let out = p.time("mlp.3 + add", rows * d * f, || {
                layer.linear(Part::Mlp3, &y, Some(&x1)).unwrap()
            });
            let diff = (&out - &want).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
            x = out;
        }
        let _ = p.time("ln + head", b * d * cfg.num_classes, || {
            let h = m.feature(&x).unwrap();
            m.logits(&h).unwrap()
        });
        p.print("ViT-B/16 @224", b);
    }
}
