//! Mahalanobis against the paper's code (tiny BiT fixture), a direct
//! computation of the fit on real images, and scikit-learn's logistic
//! regression.
//! Here: the imports and the fixture model the modules share.

mod command_line;
mod fit;
mod regression;
mod seed;

use crate::common::{self, flat};

use candle_core::{DType, Device, Tensor};
use gradnorm_engine::data::image::{load_rgb, to_input};
use gradnorm_engine::model::{self, Classifier, InputSpec};
use gradnorm_engine::score::gaussian::{pinvh, GaussianFit};
use gradnorm_engine::score::logistic::{self, Logistic};
use gradnorm_engine::score::mahalanobis::{
    self, FgsmClamp, GaussianLayers, Mahalanobis, MahalanobisParams, ModelStamp,
};
use gradnorm_engine::score::{Method, Scorer};
use std::collections::HashMap;
use std::path::Path;

/// The tiny BiT fixture, on the CPU in f32.
fn tiny(shared: &Path) -> Box<dyn Classifier> {
    model::load_checkpoint(
        &shared.join("fixtures/bit/tiny.pth.tar"),
        None,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap()
}
