//! A method's hyperparameters as rows of the form: each row is the index
//! of one of the method's registry parameters (`score::registry`), shown
//! and set through the registry.

use gradnorm_core::method::ParamKind;
use gradnorm_engine::score::Method;

/// A hyperparameter row under a method: its index in the method's
/// registry parameters.
pub type Param = usize;

/// The parameter rows of a method: one per registry parameter.
pub fn params_of(m: &Method) -> std::ops::Range<Param> {
    0..m.def().params.len()
}

pub fn param_text(m: &Method, p: Param) -> String {
    m.values()[p].to_string()
}

pub fn set_param(m: &mut Method, p: Param, text: &str) -> Result<(), String> {
    let name = m.def().params[p].name;
    m.set(name, text).map_err(|e| e.0)
}

/// Whether the parameter is a file path (Tab completes it).
pub fn is_path(m: &Method, p: Param) -> bool {
    matches!(m.def().params[p].kind, ParamKind::Path)
}

/// A layer parameter's default (`head`), when the parameter names one of
/// the model's weights (the form lists the model's layers for it).
pub fn layer_default(m: &Method, p: Param) -> Option<&'static str> {
    match m.def().params[p].kind {
        ParamKind::Text(default) => Some(default),
        _ => None,
    }
}

/// The names a choice parameter takes (the form shows them as a list).
pub fn choices(m: &Method, p: Param) -> Option<&'static [&'static str]> {
    match m.def().params[p].kind {
        ParamKind::Choice(names) => Some(names),
        _ => None,
    }
}
