//! The headless commands and the TUI entry point. Each takes its parsed
//! arguments and returns an exit code; errors go up to `main`.

pub mod bench;
pub mod eval;
pub mod fit;
pub mod layers;
pub mod logging;
pub mod metrics;
pub mod predict;
pub mod runs;
pub mod selftest;
pub mod train_demo;
pub mod tui;
pub mod tune_mahalanobis;

use crate::cli::{ModelArgs, UsageError};
use candle_core::{DType, Device};
use gradnorm_core::method::registry;
use gradnorm_engine::score::Method;
use std::path::Path;

/// The model of the shared model flags, loaded, and what it was loaded from.
pub(crate) struct Loaded {
    pub model: Box<dyn gradnorm_engine::model::Classifier>,
    /// Its input with --image-size (else `size`, else the model's own) and
    /// --preprocess applied.
    pub input: gradnorm_engine::model::InputSpec,
    pub spec: gradnorm_engine::model::ModelSpec,
    pub device: Device,
    pub dtype: DType,
}

/// Loads the model the shared model flags name (see [`Loaded`]).
pub(crate) fn load_model(args: &ModelArgs, size: Option<usize>) -> anyhow::Result<Loaded> {
    let device = gradnorm_engine::device::open(args.on.device)?;
    let dtype = gradnorm_engine::device::dtype(args.on.dtype);
    let spec = gradnorm_engine::model::ModelSpec {
        name: args.model.clone(),
        checkpoint: args.checkpoint.clone(),
    };
    let model = gradnorm_engine::model::load(&spec, &device, dtype)?;
    let size = args.image_size.map(|s| s.get()).or(size);
    let input = model.preprocess().with_overrides(size, args.preprocess);
    Ok(Loaded {
        model,
        input,
        spec,
        device,
        dtype,
    })
}

pub use logging::init as init_logging;

/// The method flags shared by `eval` and `bench`: the specs and the legacy
/// per-method flags, which set defaults that a spec's parameters override.
pub(crate) struct MethodFlags<'a> {
    pub specs: &'a [String],
    pub odin: crate::cli::OdinArgs,
    pub temperature_energy: Option<f64>,
    pub temperature_gradnorm: Option<f64>,
    pub mahalanobis_params: Option<&'a Path>,
    /// Mahalanobis's parameters come in memory: no file is needed.
    pub mahalanobis_in_memory: bool,
}

/// `--methods` specs (`key[:param=value|value...]`, see the registry) with
/// the legacy flags as defaults; unknown methods or parameters, values out
/// of range and repeated columns are usage errors.
pub(crate) fn parse_methods(args: &MethodFlags) -> Result<Vec<Method>, UsageError> {
    // Only the flags given: the registry holds every default.
    let mut defaults: Vec<(&str, &str, String)> = [
        ("odin", "temperature", args.odin.temperature_odin),
        ("odin", "epsilon", args.odin.epsilon_odin),
        ("energy", "temperature", args.temperature_energy),
        ("gradnorm", "temperature", args.temperature_gradnorm),
    ]
    .into_iter()
    .filter_map(|(k, p, v)| Some((k, p, v?.to_string())))
    .collect();
    if let Some(p) = args.mahalanobis_params {
        defaults.push(("mahalanobis", "params", p.display().to_string()));
    }
    let default_specs = registry::DEFAULT_METHODS.map(String::from);
    let specs = if args.specs.is_empty() {
        &default_specs[..]
    } else {
        args.specs
    };
    let mut methods: Vec<Method> = Vec::new();
    for spec in specs.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
        for method in Method::parse_spec(spec, &defaults).map_err(|e| UsageError(e.0))? {
            if !args.mahalanobis_in_memory {
                method.require_paths().map_err(|e| UsageError(e.0))?;
            }
            if methods.iter().any(|m| m.name() == method.name()) {
                return Err(UsageError(format!(
                    "method `{}` given twice",
                    method.name()
                )));
            }
            methods.push(method);
        }
    }
    if methods.is_empty() {
        return Err(UsageError("no methods given".into()));
    }
    Ok(methods)
}
