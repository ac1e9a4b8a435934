//! A method's hyperparameters as rows of the form: which a method has, how
//! each is shown and how typed text sets it.

use crate::score::Method;
use std::path::PathBuf;

/// A hyperparameter row under a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Temperature,
    Epsilon,
    ParamsFile,
}

pub fn params_of(m: &Method) -> &'static [Param] {
    match m {
        Method::Odin { .. } => &[Param::Temperature, Param::Epsilon],
        Method::Energy { .. } | Method::GradNorm { .. } => &[Param::Temperature],
        Method::Mahalanobis { .. } => &[Param::ParamsFile],
        Method::Msp | Method::MaxLogit => &[],
    }
}

pub fn param_text(m: &Method, p: Param) -> String {
    match (m, p) {
        (Method::Odin { temperature, .. }, Param::Temperature)
        | (Method::Energy { temperature }, Param::Temperature)
        | (Method::GradNorm { temperature }, Param::Temperature) => temperature.to_string(),
        (Method::Odin { epsilon, .. }, Param::Epsilon) => epsilon.to_string(),
        (Method::Mahalanobis { params }, Param::ParamsFile) => params.display().to_string(),
        _ => String::new(),
    }
}

pub fn set_param(m: &mut Method, p: Param, text: &str) -> Result<(), String> {
    let number = |what: &str, positive: bool| -> Result<f64, String> {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && (v > 0.0 || (!positive && v >= 0.0)) => Ok(v),
            _ if positive => Err(format!("{what}: a positive number")),
            _ => Err(format!("{what}: a number >= 0")),
        }
    };
    match (m, p) {
        (Method::Odin { temperature, .. }, Param::Temperature)
        | (Method::Energy { temperature }, Param::Temperature)
        | (Method::GradNorm { temperature }, Param::Temperature) => {
            *temperature = number("temperature", true)?
        }
        (Method::Odin { epsilon, .. }, Param::Epsilon) => *epsilon = number("epsilon", false)?,
        (Method::Mahalanobis { params }, Param::ParamsFile) => *params = PathBuf::from(text),
        _ => {}
    }
    Ok(())
}
