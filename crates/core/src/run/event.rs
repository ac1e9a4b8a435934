//! What the engine reports while a run goes on, and what each evaluated
//! image becomes.

use crate::method::Method;
use crate::run::{InputSpec, ModelInfo};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Id,
    Ood,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    pub role: Role,
    pub path: PathBuf,
    /// Images to evaluate (after --limit).
    pub count: usize,
    /// The group of an OOD set (`DatasetSpec::group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Where and how the model ran: its weights file, the device, the precision
/// and the input size, and the fit file the fit-based methods read (in
/// [`RunInfo`] and, as written, in `Summary`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    pub checkpoint: Option<PathBuf>,
    pub device: String,
    pub dtype: String,
    pub image_size: usize,
    /// The run's fit file (`RunConfig::fit`); absent in runs stored before
    /// it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<PathBuf>,
}

/// Sent once the model is loaded and the datasets are listed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    pub model: ModelInfo,
    /// Flattened: the stored run info keeps its fields at the top level.
    #[serde(flatten)]
    pub setup: Setup,
    /// The preprocessing in effect (the model's, or `--preprocess`).
    pub input: InputSpec,
    pub batch: usize,
    /// Dataset 0 is the ID set, then the OOD sets in order.
    pub datasets: Vec<DatasetInfo>,
    pub methods: Vec<Method>,
    /// One name per model class (indices when no names are known).
    pub class_names: Arc<Vec<String>>,
}

/// One evaluated image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    pub dataset: usize,
    pub path: PathBuf,
    /// Ground truth in the model's class order, when known (ID sets).
    pub label: Option<usize>,
    /// Top-5 (class, probability), most probable first.
    pub top: Vec<(usize, f32)>,
    /// One score per method, in `RunInfo::methods` order.
    pub scores: Vec<f32>,
    /// GradNorm's two factors: sum_k |C p_k - 1| (p at GradNorm's
    /// temperature, 1 without GradNorm) and ||h||_1; GradNorm = product / T.
    pub softmax_term: f32,
    pub feature_l1: f32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub dataset: usize,
    /// Images of this dataset done (scored or skipped).
    pub done: usize,
    pub total: usize,
    /// Images of the whole run done and in all.
    pub run_done: usize,
    pub run_total: usize,
    pub images_per_sec: f64,
    pub elapsed_secs: f64,
}

impl Progress {
    /// Seconds left for the whole run at the current rate.
    pub fn eta_secs(&self) -> Option<f64> {
        (self.images_per_sec > 0.0)
            .then(|| (self.run_total.saturating_sub(self.run_done)) as f64 / self.images_per_sec)
    }
}

/// What the engine reports, in order: `Started`, then `Records`, `Skipped`
/// and `Progress` as batches complete, then `Finished` or `Failed`.
#[derive(Debug, Clone)]
pub enum Event {
    Started(Arc<RunInfo>),
    Records {
        dataset: usize,
        records: Vec<ImageRecord>,
    },
    Skipped {
        dataset: usize,
        path: PathBuf,
        reason: String,
    },
    Progress(Progress),
    /// Something the user should know that does not stop the run (e.g. the
    /// batch size was reduced to fit device memory).
    Notice(String),
    Finished {
        cancelled: bool,
        elapsed_secs: f64,
    },
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Family;

    /// The store keeps `RunInfo` as JSON: `setup` stays flat, its fields
    /// where they always stood, and reads back.
    #[test]
    fn run_info_json_keeps_its_flat_layout() {
        let info = RunInfo {
            model: ModelInfo {
                name: "BiT-tiny".into(),
                family: Family::Bit,
                num_classes: 10,
                feature_dim: 64,
                tap_dims: vec![8, 64],
                num_params: 12345,
                input: InputSpec::half(64),
            },
            setup: Setup {
                checkpoint: Some(PathBuf::from("tiny.pth.tar")),
                device: "cpu".into(),
                dtype: "f32".into(),
                image_size: 64,
                fit: None,
            },
            input: InputSpec::half(64),
            batch: 8,
            datasets: Vec::new(),
            methods: Vec::new(),
            class_names: Arc::new(Vec::new()),
        };
        let v = serde_json::to_value(&info).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "model",
                "checkpoint",
                "device",
                "dtype",
                "image_size",
                "input",
                "batch",
                "datasets",
                "methods",
                "class_names"
            ]
        );
        assert_eq!(v["device"], "cpu");
        let back: RunInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back.setup, info.setup);
    }
}
