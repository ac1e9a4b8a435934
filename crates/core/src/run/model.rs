//! What a model is, as the rest of the program sees it (no tensors).

use std::path::PathBuf;

/// How an image becomes a square `size` x `size` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resize {
    /// The seed's `Resize((N, N))`: both sides to N, the aspect ratio not kept.
    #[default]
    Squash,
    /// torchvision's eval transform: the shorter side to floor(N / 0.875)
    /// (256 for 224), then the centre N x N.
    ShorterCrop,
}

/// How a model wants its input: square size, resize rule and per-channel
/// normalization (applied to RGB values scaled to [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InputSpec {
    pub size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    #[serde(default)]
    pub resize: Resize,
}

/// ImageNet's channel statistics, as torchvision normalizes.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl InputSpec {
    /// The seed's preprocessing: squash resize, mean 0.5, std 0.5, so inputs
    /// lie in [-1, 1].
    pub const fn half(size: usize) -> Self {
        Preprocess::Seed.spec(size)
    }

    /// The preset this spec is, if any.
    pub fn preset(&self) -> Option<Preprocess> {
        Preprocess::ALL
            .into_iter()
            .find(|p| p.spec(self.size) == *self)
    }

    /// This spec with `--image-size` and `--preprocess` applied: a preset
    /// replaces the resize rule and normalization, a size the size.
    pub fn with_overrides(self, size: Option<usize>, preset: Option<Preprocess>) -> InputSpec {
        let base = preset.map_or(self, |p| p.spec(self.size));
        InputSpec {
            size: size.unwrap_or(base.size),
            ..base
        }
    }

    /// One line for the run panel and summary.json.
    pub fn describe(&self) -> String {
        let resize = match self.resize {
            Resize::Squash => format!("resize {0}x{0}", self.size),
            Resize::ShorterCrop => format!(
                "shorter side {}, centre crop {}",
                crop_resize(self.size),
                self.size
            ),
        };
        let norm = if self.mean == IMAGENET_MEAN && self.std == IMAGENET_STD {
            "ImageNet mean/std".to_string()
        } else {
            format!("mean {:?} std {:?}", self.mean, self.std)
        };
        format!("{resize}, {norm}")
    }
}

/// The shorter side before a centre crop of `size`: floor(size / 0.875).
pub fn crop_resize(size: usize) -> usize {
    // Exact in integers: size / 0.875 = size * 8 / 7.
    size * 8 / 7
}

/// The named preprocessings `--preprocess` chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preprocess {
    /// BiT's and EfficientNet-Lite's here: squash resize, mean/std 0.5.
    Seed,
    /// torchvision's ImageNet eval transform.
    Torchvision,
}

impl Preprocess {
    pub const ALL: [Preprocess; 2] = [Preprocess::Seed, Preprocess::Torchvision];

    pub const fn spec(self, size: usize) -> InputSpec {
        match self {
            Preprocess::Seed => InputSpec {
                size,
                mean: [0.5; 3],
                std: [0.5; 3],
                resize: Resize::Squash,
            },
            Preprocess::Torchvision => InputSpec {
                size,
                mean: IMAGENET_MEAN,
                std: IMAGENET_STD,
                resize: Resize::ShorterCrop,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preprocess::Seed => "seed",
            Preprocess::Torchvision => "torchvision",
        }
    }
}

impl std::str::FromStr for Preprocess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Preprocess::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown preprocessing `{s}` (choose seed or torchvision)"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Bit,
    EfficientNetLite,
    /// torchvision's ResNet (BasicBlock and Bottleneck).
    ResNet,
    /// torchvision's VisionTransformer.
    Vit,
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
