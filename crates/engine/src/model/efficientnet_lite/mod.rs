//! EfficientNet-Lite0..4 as the `efficientnet_lite_pytorch` wheel builds them
//! (lukemelas' EfficientNet-PyTorch with the Lite settings): MBConv blocks
//! without squeeze-excitation, ReLU6, BatchNorm (eps 1e-3) in inference
//! form, TensorFlow "same" padding, stem 32 and head 1280 fixed, and the
//! first and last stages not repeated more with depth.
//!
//! - `config`: the variants, the block table, the taps, and reading the
//!   architecture from a checkpoint;
//! - `build`: the wheel's tensors through candle-nn's VarBuilder under the
//!   wheel's names, BatchNorm folded and weights packed at load;
//! - `forward`: the channels-last forward pass, on our CPU kernels or on
//!   candle ops.
//!
//! At load every BatchNorm is folded into the convolution before it, and
//! activations run channels-last ([B, H, W, C]): a 1x1 convolution is then
//! one matrix product over all pixels of the batch, and the depthwise
//! convolution reads contiguous channel vectors. On the CPU the stem, the
//! depthwise convolutions and the bias/ReLU6/residual steps are our own
//! differentiable kernels (`gradnorm_kernels`); on other devices candle ops
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

mod build;
mod config;
mod forward;

pub use config::{looks_like, variant, BlockConfig, EfficientNetConfig, Variant, VARIANTS};

use super::{params, FromCheckpoint, Meta};
use crate::error::{Error, Result};
use crate::weights::Checkpoint;
use build::{Folded, Wheel};
use candle_core::{DType, Device};

#[derive(Debug, Clone)]
struct Block {
    /// The checkpoint's prefix (`_blocks.N`): the probe point at its output.
    name: String,
    cfg: BlockConfig,
    expand: Option<Folded>,
    depthwise: Folded,
    project: Folded,
}

/// EfficientNet-Lite with BatchNorm folded, ready for inference and for
/// gradients with respect to its input.
#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    cfg: EfficientNetConfig,
    /// Stem 3x3 stride-2 convolution: OIHW [32, 3, 3, 3] for candle, and
    /// [3, 3, 3, 32] (dy, dx, in, out) for the CPU kernel.
    stem: Folded,
    blocks: Vec<Block>,
    head_conv: Folded,
    taps: [usize; 3],
    meta: Meta,
    /// Our CPU kernels (in f32 whatever the dtype) or candle ops.
    cpu: bool,
}

impl EfficientNetLite {
    /// Random weights of the named variant's shape (benchmarks): He-normal
    /// convolutions, identity BatchNorm, a small random classifier.
    pub fn random(name: &str, device: &Device, dtype: DType) -> Result<Self> {
        let v = variant(name).ok_or_else(|| {
            Error::Invalid(format!(
                "`{name}` is no EfficientNet-Lite variant (efficientnet-lite0..4)"
            ))
        })?;
        let cfg = EfficientNetConfig::of(v);
        let wheel = params::random(params::RANDOM_SEED, &Device::Cpu, DType::F32, |vb| {
            Wheel::read(&cfg, vb)
        })?;
        let mut m = Self::fold(&cfg, &wheel, device, dtype)?;
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
}

/// The wheel's tensors, checked against the variant named by `--model` or,
/// without one, the variant they fit.
impl FromCheckpoint for EfficientNetLite {
    type Config = EfficientNetConfig;

    fn config_of(ckpt: &Checkpoint, name: Option<&str>) -> Result<EfficientNetConfig> {
        EfficientNetConfig::infer(ckpt, name)
    }

    fn load(cfg: &Self::Config, ckpt: Checkpoint, device: &Device, dtype: DType) -> Result<Self> {
        // Read as f32 on the CPU, where the folding happens.
        let wheel =
            params::from_checkpoint(ckpt, &cfg.describe(), &Device::Cpu, DType::F32, |vb| {
                Wheel::read(cfg, vb)
            })?;
        Self::fold(cfg, &wheel, device, dtype)
    }
}
