//! What a run is asked to do: the model, the datasets, the methods and how
//! to run them. Shared by `eval`, the TUI and the config file.

use crate::run::{ModelSpec, Preprocess};
use crate::score::Method;
use std::path::PathBuf;

/// A dataset as the user names it: a list file (with a root), an
/// ImageFolder root, or a plain folder of images.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetSpec {
    pub name: String,
    pub path: PathBuf,
    /// Root that a list file's relative paths are resolved against
    /// (default: the list file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

/// Everything an evaluation needs; `eval`, the TUI and the config file share it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunConfig {
    pub model: ModelSpec,
    /// Class names, one per line (default: ImageNet's when C = 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<PathBuf>,
    /// The model's class order as wnids, when it is not the sorted-wnid order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_order: Option<PathBuf>,
    pub id: DatasetSpec,
    pub ood: Vec<DatasetSpec>,
    pub methods: Vec<Method>,
    /// Input size; the model's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// Preprocessing preset; the model's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preprocess>,
    pub batch: usize,
    pub device: String,
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Evaluate at most this many images per dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Decoding threads (default: every core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

fn default_dtype() -> String {
    "f32".into()
}
