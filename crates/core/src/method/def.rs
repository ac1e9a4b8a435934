//! What a method is made of: its parameters (name, default, range, help),
//! what it reads besides the logits, and its entry in the registry.

use super::{Method, SpecError, Value};
use std::path::PathBuf;

/// What a parameter holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    /// A number, its default and the values it may take.
    Number(NumberRange),
    /// A file path.
    Path,
    /// One of a fixed list of names (the first is the default).
    Choice(&'static [&'static str]),
    /// A name the model checks when the method is prepared (a layer), and
    /// its default.
    Text(&'static str),
}

/// A number in `[min, max]` (`(min, max]` when `open_min`), an integer when
/// `integer`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberRange {
    pub default: f64,
    pub min: f64,
    pub max: f64,
    pub open_min: bool,
    pub integer: bool,
}

impl NumberRange {
    /// E.g. `> 0`, `0..=100`, an integer `>= 1`.
    fn text(&self) -> String {
        let what = if self.integer {
            "an integer"
        } else {
            "a number"
        };
        let (min, max) = (self.min, self.max);
        if max.is_finite() {
            let open = if self.open_min { "(open) " } else { "" };
            format!("{what} in {open}{min}..={max}")
        } else {
            let lo = if self.open_min { "> " } else { ">= " };
            format!("{what} {lo}{min}")
        }
    }

    fn accepts(&self, v: f64) -> bool {
        let low_ok = if self.open_min {
            v > self.min
        } else {
            v >= self.min
        };
        v.is_finite() && low_ok && v <= self.max && !(self.integer && v.fract() != 0.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamDef {
    pub name: &'static str,
    /// Shown in the TUI form.
    pub label: &'static str,
    /// How the progress line names it (`T` for a temperature).
    pub short: &'static str,
    pub kind: ParamKind,
    pub help: &'static str,
}

impl ParamDef {
    /// The range as text, e.g. `> 0`, `0..=100`, an integer `>= 1`.
    pub fn range_text(&self) -> String {
        match self.kind {
            ParamKind::Path => "a file path".into(),
            ParamKind::Number(range) => range.text(),
            ParamKind::Choice(names) => format!("one of {}", names.join(", ")),
            ParamKind::Text(_) => "a name".into(),
        }
    }

    /// `text` as a value of this parameter of method `key`.
    pub fn parse(&self, key: &str, text: &str) -> std::result::Result<Value, SpecError> {
        match self.kind {
            ParamKind::Path => Ok(Value::Path(PathBuf::from(text.trim()))),
            ParamKind::Text(_) => {
                let t = text.trim();
                if t.is_empty() || t.contains([':', '|', '=']) {
                    return Err(SpecError(format!(
                        "{key}: {} must be a name, got `{text}`",
                        self.name
                    )));
                }
                Ok(Value::Text(t.to_string()))
            }
            ParamKind::Choice(names) => {
                let t = text.trim().to_ascii_lowercase();
                names
                    .iter()
                    .find(|n| **n == t)
                    .map(|n| Value::Choice(n))
                    .ok_or_else(|| {
                        SpecError(format!(
                            "{key}: {} must be {}, got `{text}`",
                            self.name,
                            self.range_text()
                        ))
                    })
            }
            ParamKind::Number(range) => {
                let bad = || {
                    SpecError(format!(
                        "{key}: {} must be {}, got `{text}`",
                        self.name,
                        self.range_text()
                    ))
                };
                let v: f64 = text.trim().parse().map_err(|_| bad())?;
                if !range.accepts(v) {
                    return Err(bad());
                }
                Ok(Value::Number(v))
            }
        }
    }
}

/// What a method reads besides the logits.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Needs {
    pub feature: bool,
    pub head: bool,
    /// A fit file (`gradnorm-tui fit`).
    pub fit: bool,
    /// Every tap of the network (Mahalanobis).
    pub taps: bool,
    /// May differentiate the forward pass w.r.t. the input (ODIN with
    /// epsilon > 0, Mahalanobis with magnitude > 0).
    pub input_gradient: bool,
}

pub struct MethodDef {
    pub key: &'static str,
    /// The paper's (or the method's paper's) name.
    pub label: &'static str,
    pub help: &'static str,
    pub params: &'static [ParamDef],
    pub needs: Needs,
    /// Display: how the progress line names a configured method.
    pub describe: fn(&Method, &mut std::fmt::Formatter<'_>) -> std::fmt::Result,
    /// Which computation of the engine's scores it is: the engine matches
    /// on it, so a method without one does not compile.
    pub kind: Kind,
}

/// Every method's computation, one per registry entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Msp,
    Odin,
    Energy,
    Mahalanobis,
    GradNorm,
    MaxLogit,
    Entropy,
    Gen,
    React,
    AshP,
    AshB,
    AshS,
    Scale,
    Dice,
    Knn,
    Vim,
    Residual,
    Klm,
    Mds,
    Rmds,
    GaiaA,
    GaiaZ,
    NacUe,
    Grood,
    LowdimGrad,
}

impl std::fmt::Debug for MethodDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key)
    }
}
