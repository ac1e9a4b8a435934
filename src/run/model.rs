//! What a model is, as the rest of the program sees it (no tensors).

use std::path::PathBuf;

/// How a model wants its input: square size and per-channel normalization
/// (applied to RGB values scaled to [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InputSpec {
    pub size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl InputSpec {
    /// The seed's preprocessing: mean 0.5, std 0.5, so inputs lie in [-1, 1].
    pub const fn half(size: usize) -> Self {
        InputSpec {
            size,
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Bit,
    EfficientNetLite,
}

/// What a loaded model is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// A variant name ("BiT-S-R101x1", "efficientnet-lite0") or a description.
    pub name: String,
    pub family: Family,
    pub num_classes: usize,
    /// Dimension of the penultimate feature h.
    pub feature_dim: usize,
    /// Dimensions of the spatially averaged taps (Mahalanobis layers).
    pub tap_dims: Vec<usize>,
    pub num_params: usize,
    /// Default input; `--image-size` overrides the size.
    pub input: InputSpec,
}

/// Which model to build: a name (a known variant, or a family to infer),
/// a checkpoint, or both.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    pub name: Option<String>,
    pub checkpoint: Option<PathBuf>,
}

