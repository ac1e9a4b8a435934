//! Mahalanobis (Lee et al. 2018) as the seed runs it (placeholder interface;
//! implemented in its own change).

use crate::error::{Error, Result};
use crate::model::Classifier;
use candle_core::Tensor;
use std::path::Path;

pub struct Mahalanobis {}

impl Mahalanobis {
    pub fn load(path: &Path, _model: &dyn Classifier) -> Result<Self> {
        Err(Error::Invalid(format!(
            "{}: Mahalanobis is not built yet",
            path.display()
        )))
    }

    pub fn score(&self, _model: &dyn Classifier, _x: &Tensor) -> Result<Tensor> {
        Err(Error::Invalid("Mahalanobis is not built yet".into()))
    }
}
