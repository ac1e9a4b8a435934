//! What a run opens and checks before its first image: the config, the
//! sets, the device and the model, the input size, the class names, the
//! scores (fit and parameter files against the model, each method's
//! needs). `execute` goes through [`prepare`]; [`check`] runs the same
//! steps and lists every one that fails, reading no image, so that a form
//! can say whether a run would start before it is started.

use super::{class_names, prepare_scorer};
use crate::classes::Classes;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::model::{self, Backbone, InputSpec};
use crate::score::mahalanobis::ModelStamp;
use crate::score::Scorer;
use candle_core::{DType, Device};
use gradnorm_core::run::{self, ImageSize, RunConfig};

/// A run's sets, model, input and scores, opened and checked.
pub(super) struct Prepared {
    pub id: Dataset,
    pub oods: Vec<Dataset>,
    pub device: Device,
    pub dtype: DType,
    pub model: Box<dyn Backbone>,
    pub input: InputSpec,
    pub classes: Classes,
    pub scorer: Scorer,
}

/// Opens and checks everything `config` needs, stopping at the first
/// problem. Files come first (cheap), so that a wrong path is found before
/// a large model loads.
pub(super) fn prepare(
    config: &RunConfig,
    mahalanobis: Option<&crate::score::mahalanobis::MahalanobisParams>,
) -> Result<Prepared> {
    validate(config)?;
    let id = crate::data::openood::open(&config.id)?;
    let oods = config
        .ood
        .iter()
        .map(crate::data::openood::open)
        .collect::<Result<Vec<_>>>()?;
    let (device, dtype, model) = load_model(config)?;
    let input = input_of(config, model.as_ref())?;
    let classes = class_names(config, model.info(), &id)?;
    let scorer = prepare_scorer(config, model.as_ref(), mahalanobis)?;
    Ok(Prepared {
        id,
        oods,
        device,
        dtype,
        model,
        input,
        classes,
        scorer,
    })
}

/// Every check `prepare` makes (the run's own, in the same order), each
/// problem said once: empty when the run would start. Reads the sets'
/// listings and the checkpoint, no image; a model that does not load
/// leaves the checks that need it out.
pub fn check(config: &RunConfig) -> Vec<String> {
    inspect(config).problems
}

/// What [`check`] found and, the model being loaded for it anyway, its
/// stamp (a form tells by it which fit files were made for this model) and
/// the weights a method's `layer=` accepts (`model::probe::weight_layers`;
/// empty when the model does not load).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checks {
    pub problems: Vec<String>,
    pub model: Option<ModelStamp>,
    pub layers: Vec<String>,
}

/// [`check`], keeping the loaded model's stamp and weight layers.
pub fn inspect(config: &RunConfig) -> Checks {
    let mut stamp = None;
    let mut problems = Vec::new();
    let mut layers = Vec::new();
    let mut note = |e: Error| problems.push(e.to_string());
    if let Err(e) = validate(config) {
        note(e);
    }
    let id = crate::data::openood::open(&config.id)
        .map_err(&mut note)
        .ok();
    for spec in &config.ood {
        if let Err(e) = crate::data::openood::open(spec) {
            note(e);
        }
    }
    if let Ok((_, _, model)) = load_model(config).map_err(&mut note) {
        stamp = ModelStamp::of(model.as_ref(), model.info().input.size).ok();
        if let Err(e) = input_of(config, model.as_ref()) {
            note(e);
        }
        if let Some(id) = &id {
            if let Err(e) = class_names(config, model.info(), id) {
                note(e);
            }
        }
        if let Err(e) = prepare_scorer(config, model.as_ref(), None) {
            note(e);
        }
        match model::probe::weight_layers(model.as_ref()) {
            Ok(found) => layers = found.into_iter().map(|l| l.name).collect(),
            Err(e) => note(e),
        }
    }
    Checks {
        problems,
        model: stamp,
        layers,
    }
}

fn validate(config: &RunConfig) -> Result<()> {
    config.validate().map_err(|e| Error::Invalid(e.to_string()))
}

fn load_model(config: &RunConfig) -> Result<(Device, DType, Box<dyn Backbone>)> {
    let device = crate::device::open(config.device)?;
    let dtype = crate::device::dtype(config.dtype);
    let model = model::load(&config.model, &device, dtype)?;
    Ok((device, dtype, model))
}

/// The model's input with the config's size (the model's own when none)
/// and preprocessing, once a batch of that size is known to fit in memory.
fn input_of(config: &RunConfig, model: &dyn Backbone) -> Result<InputSpec> {
    let info = model.info();
    let size = match config.image_size {
        Some(s) => s,
        None => ImageSize::new(info.input.size)
            .map_err(|e| Error::Invalid(format!("{}: default input size: {e}", info.name)))?,
    };
    run::check_batch_bytes(config.batch, size).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(model
        .preprocess()
        .with_overrides(Some(size.get()), config.preprocess))
}
