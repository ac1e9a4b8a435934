//! The backbones and what every one of them offers the scores: logits, the
//! penultimate feature `h`, the head, and spatially averaged taps for
//! Mahalanobis, all differentiable with respect to the input.

pub mod bit;
pub mod efficientnet_lite;
mod nhwc;
pub mod ops;

use crate::error::{Error, Result};
use crate::weights::{self, Checkpoint};
use candle_core::{DType, Device, Tensor};
use std::path::Path;

pub use crate::run::{Family, InputSpec, ModelInfo, ModelSpec};

/// Logits [B, C] and penultimate feature [B, D], both f32.
#[derive(Debug, Clone)]
pub struct Output {
    pub logits: Tensor,
    pub feature: Tensor,
}

/// A classifier usable by every score. Inputs are f32 [B, 3, H, W] tensors
/// already normalized; outputs are f32 whatever the model's dtype.
pub trait Classifier: Send + Sync {
    fn info(&self) -> &ModelInfo;
    fn device(&self) -> &Device;
    /// The dtype the body computes in (the head always runs in f32).
    fn dtype(&self) -> DType;
    fn forward(&self, x: &Tensor) -> Result<Output>;
    /// The forward pass plus every tap, each [B, tap_dims[l]] in f32.
    fn forward_taps(&self, x: &Tensor) -> Result<(Output, Vec<Tensor>)>;
    /// Tap `layer` alone, running the network only as far as it needs.
    fn forward_tap(&self, x: &Tensor, layer: usize) -> Result<Tensor>;
    /// Head weight [C, D] and bias [C], f32.
    fn head(&self) -> (&Tensor, &Tensor);
}

/// Every model name `--model` accepts.
pub fn known_models() -> Vec<String> {
    let mut names: Vec<String> = bit::VARIANTS
        .iter()
        .map(|(n, _, _)| n.to_string())
        .collect();
    names.push("bit".to_string());
    names.extend(
        efficientnet_lite::VARIANTS
            .iter()
            .map(|v| v.name.to_string()),
    );
    names
}

fn family_of_name(name: &str) -> Result<Family> {
    let lower = name.to_ascii_lowercase();
    if lower == "bit" || bit::variant(name).is_some() {
        Ok(Family::Bit)
    } else if efficientnet_lite::variant(name).is_some() {
        Ok(Family::EfficientNetLite)
    } else {
        Err(Error::UnknownModel(
            name.to_string(),
            known_models().join(", "),
        ))
    }
}

/// Loads a model from a checkpoint, checking it against `--model` when given.
pub fn load(spec: &ModelSpec, device: &Device, dtype: DType) -> Result<Box<dyn Classifier>> {
    match &spec.checkpoint {
        Some(path) => load_checkpoint(path, spec.name.as_deref(), device, dtype),
        None => {
            let name = spec.name.as_deref().ok_or_else(|| {
                Error::Invalid("give a checkpoint (--checkpoint FILE) or a model name".into())
            })?;
            random(name, device, dtype)
        }
    }
}

/// Loads `path`, inferring the architecture from its tensors.
pub fn load_checkpoint(
    path: &Path,
    name: Option<&str>,
    device: &Device,
    dtype: DType,
) -> Result<Box<dyn Classifier>> {
    let ckpt = weights::read(path)?;
    let family = match name {
        Some(n) => family_of_name(n)?,
        None => detect_family(&ckpt)?,
    };
    match family {
        Family::Bit => Ok(Box::new(bit::Bit::from_checkpoint(
            ckpt, name, device, dtype,
        )?)),
        Family::EfficientNetLite => Ok(Box::new(
            efficientnet_lite::EfficientNetLite::from_checkpoint(ckpt, name, device, dtype)?,
        )),
    }
}

/// A model with random weights (for `bench` without a checkpoint).
pub fn random(name: &str, device: &Device, dtype: DType) -> Result<Box<dyn Classifier>> {
    match family_of_name(name)? {
        Family::Bit => {
            let cfg = bit::variant(name).ok_or_else(|| {
                Error::Invalid(format!(
                    "`{name}` names no fixed BiT variant: give a checkpoint or e.g. BiT-S-R101x1"
                ))
            })?;
            Ok(Box::new(bit::Bit::random(&cfg, device, dtype)?))
        }
        Family::EfficientNetLite => Ok(Box::new(efficientnet_lite::EfficientNetLite::random(
            name, device, dtype,
        )?)),
    }
}

fn detect_family(ckpt: &Checkpoint) -> Result<Family> {
    if bit::looks_like(ckpt) {
        Ok(Family::Bit)
    } else if efficientnet_lite::looks_like(ckpt) {
        Ok(Family::EfficientNetLite)
    } else {
        let mut names: Vec<&String> = ckpt.tensors.keys().collect();
        names.sort();
        let sample: Vec<&str> = names.iter().take(3).map(|s| s.as_str()).collect();
        Err(Error::NotACheckpoint {
            path: ckpt.path.clone(),
            reason: format!(
                "its {} tensors ({}, ...) match neither BiT nor EfficientNet-Lite names; pass --model",
                ckpt.tensors.len(),
                sample.join(", ")
            ),
        })
    }
}

/// Spatial mean of a [B, C, H, W] tensor as f32 [B, C].
pub(crate) fn spatial_mean(x: &Tensor) -> Result<Tensor> {
    Ok(x.to_dtype(DType::F32)?.flatten_from(2)?.mean(2)?)
}
