//! EfficientNet-Lite (placeholder interface; implemented in its own change).

use super::{Classifier, ModelInfo, Output};
use crate::error::{Error, Result};
use crate::weights::Checkpoint;
use candle_core::{DType, Device, Tensor};

pub struct Variant {
    pub name: &'static str,
}

pub const VARIANTS: [Variant; 1] = [Variant {
    name: "efficientnet-lite0",
}];

pub fn variant(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name.eq_ignore_ascii_case(name))
}

pub fn looks_like(ckpt: &Checkpoint) -> bool {
    ckpt.tensors.contains_key("_conv_stem.weight")
}

pub struct EfficientNetLite {
    info: ModelInfo,
    device: Device,
    head_w: Tensor,
    head_b: Tensor,
}

impl EfficientNetLite {
    pub fn from_checkpoint(
        _ckpt: Checkpoint,
        _name: Option<&str>,
        _device: &Device,
        _dtype: DType,
    ) -> Result<Self> {
        Err(Error::Invalid("EfficientNet-Lite is not built yet".into()))
    }

    pub fn random(_name: &str, _device: &Device, _dtype: DType) -> Result<Self> {
        Err(Error::Invalid("EfficientNet-Lite is not built yet".into()))
    }
}

impl Classifier for EfficientNetLite {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn dtype(&self) -> DType {
        DType::F32
    }
    fn forward(&self, _x: &Tensor) -> Result<Output> {
        Err(Error::Invalid("not built".into()))
    }
    fn forward_taps(&self, _x: &Tensor) -> Result<(Output, Vec<Tensor>)> {
        Err(Error::Invalid("not built".into()))
    }
    fn forward_tap(&self, _x: &Tensor, _layer: usize) -> Result<Tensor> {
        Err(Error::Invalid("not built".into()))
    }
    fn head(&self) -> (&Tensor, &Tensor) {
        (&self.head_w, &self.head_b)
    }
}
