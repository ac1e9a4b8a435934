//! The Mahalanobis parameters file and the stamp of the model it was made for.

use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::score::logistic::Logistic;
use crate::score::params_file;
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// What the parameters file says to identify `format`.
const KIND: params_file::Kind = params_file::Kind {
    format: "gradnorm-tui/mahalanobis",
    version: "1",
    header: "params",
    what: "Mahalanobis parameters file",
    short: "Mahalanobis parameters",
    make: "gradnorm-tui tune-mahalanobis",
};
/// Which model a parameters file belongs to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelStamp {
    pub name: String,
    pub num_classes: usize,
    pub tap_dims: Vec<usize>,
    /// The input size the parameters were fitted at.
    pub image_size: usize,
    /// FNV-1a (64 bit) of the head weight and bias as little-endian f32.
    pub head_fingerprint: String,
}

impl ModelStamp {
    pub fn of(model: &dyn Classifier, image_size: usize) -> Result<Self> {
        let info = model.info();
        Ok(ModelStamp {
            name: info.name.clone(),
            num_classes: info.num_classes,
            tap_dims: info.tap_dims.clone(),
            image_size,
            head_fingerprint: head_fingerprint(model)?,
        })
    }

    /// Same network (the input size may differ).
    pub fn same_model(&self, other: &ModelStamp) -> bool {
        self.name == other.name
            && self.num_classes == other.num_classes
            && self.tap_dims == other.tap_dims
            && self.head_fingerprint == other.head_fingerprint
    }
}

impl std::fmt::Display for ModelStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} classes, taps {:?}, head {})",
            self.name, self.num_classes, self.tap_dims, self.head_fingerprint
        )
    }
}

/// A short digest of the head, which tells checkpoints apart cheaply.
pub fn head_fingerprint(model: &dyn Classifier) -> Result<String> {
    let (w, b) = model.head();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in [w, b] {
        let v: Vec<f32> = t
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        for x in v {
            for byte in x.to_le_bytes() {
                h ^= byte as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    Ok(format!("fnv1a64:{h:016x}"))
}

/// Everything a parameters file holds, on the CPU.
#[derive(Debug, Clone)]
pub struct MahalanobisParams {
    pub model: ModelStamp,
    /// The classes that had training images (rows of every `means`).
    pub classes: Vec<usize>,
    /// [K, d_l] f32 per tap.
    pub means: Vec<Tensor>,
    /// [d_l, d_l] f32 per tap.
    pub precisions: Vec<Tensor>,
    pub magnitude: f64,
    pub regression: Logistic,
    /// How the parameters were made (images, options, the tuning's trials).
    pub provenance: serde_json::Value,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    model: ModelStamp,
    classes: Vec<usize>,
    magnitude: f64,
    regression: Logistic,
    #[serde(default)]
    provenance: serde_json::Value,
}

impl MahalanobisParams {
    /// Writes safetensors: `mean.L` and `precision.L` (f32) for each tap L,
    /// and in the header's metadata `format`, `version` and `params` (JSON:
    /// model stamp, classes, magnitude, regression, provenance).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (l, (m, p)) in self.means.iter().zip(&self.precisions).enumerate() {
            tensors.push((format!("mean.{l}"), m.to_dtype(DType::F32)?));
            tensors.push((format!("precision.{l}"), p.to_dtype(DType::F32)?));
        }
        let header = Header {
            model: self.model.clone(),
            classes: self.classes.clone(),
            magnitude: self.magnitude,
            regression: self.regression.clone(),
            provenance: self.provenance.clone(),
        };
        params_file::write(path, &KIND, tensors, &header)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let (header, mut tensors): (Header, _) = params_file::read(path, &KIND)?;
        let layers = header.model.tap_dims.len();
        let mut means = Vec::with_capacity(layers);
        let mut precisions = Vec::with_capacity(layers);
        for (l, &d) in header.model.tap_dims.iter().enumerate() {
            let k = header.classes.len();
            for (name, shape, out) in [
                (format!("mean.{l}"), vec![k, d], &mut means),
                (format!("precision.{l}"), vec![d, d], &mut precisions),
            ] {
                out.push(params_file::take(&mut tensors, path, &name, shape)?);
            }
        }
        if header.regression.weights.len() != layers {
            return Err(Error::data(
                path,
                format!(
                    "{} regression weights for {layers} layers",
                    header.regression.weights.len()
                ),
            ));
        }
        Ok(MahalanobisParams {
            model: header.model,
            classes: header.classes,
            means,
            precisions,
            magnitude: header.magnitude,
            regression: header.regression,
            provenance: header.provenance,
        })
    }
}
