//! The method registry: every OOD score defined once — key, label,
//! parameters (name, default, range, help), what it needs, and how it is
//! prepared for a model. The CLI (`--methods` specs), the config file, the
//! TUI form, summary.json and bench all read this table; adding a method is
//! one file with its computation plus one entry here.

use super::method::{Method, SpecError, Value};
use super::{Prepare, Score};
use crate::error::Result;
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
    pub(crate) prepare: fn(&Method, &Prepare) -> Result<Box<dyn Score>>,
}

impl std::fmt::Debug for MethodDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key)
    }
}

const fn number(
    name: &'static str,
    default: f64,
    min: f64,
    max: f64,
    open_min: bool,
    help: &'static str,
) -> ParamDef {
    ParamDef {
        name,
        label: name,
        kind: ParamKind::Number(NumberRange {
            default,
            min,
            max,
            open_min,
            integer: false,
        }),
        help,
    }
}

/// A softmax temperature T > 0, 1 by default (energy, GradNorm).
const TEMPERATURE: ParamDef = number(
    "temperature",
    1.0,
    0.0,
    f64::INFINITY,
    true,
    "temperature T",
);

const fn integer(name: &'static str, default: f64, min: f64, help: &'static str) -> ParamDef {
    let mut p = number(name, default, min, f64::INFINITY, false, help);
    if let ParamKind::Number(range) = &mut p.kind {
        range.integer = true;
    }
    p
}

const fn percentile(default: f64, help: &'static str) -> ParamDef {
    number("percentile", default, 0.0, 100.0, false, help)
}

fn plain(m: &Method, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str(m.label())?;
    let params: Vec<String> = m
        .def()
        .params
        .iter()
        .zip(m.values())
        .map(|(p, v)| format!("{}={v}", p.name))
        .collect();
    if !params.is_empty() {
        write!(f, " ({})", params.join(", "))?;
    }
    Ok(())
}

fn with_temperature(m: &Method, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(
        f,
        "{} (T={})",
        m.label(),
        m.number("temperature").unwrap_or(1.0)
    )
}

const LOGITS: Needs = Needs {
    feature: false,
    head: false,
    fit: false,
    taps: false,
    input_gradient: false,
};
const FEATURE_HEAD: Needs = Needs {
    feature: true,
    head: true,
    ..LOGITS
};
const FITTED: Needs = Needs {
    fit: true,
    ..FEATURE_HEAD
};

/// Every method, in the order tables list them (the paper's first).
pub static METHODS: &[MethodDef] = &[
    MethodDef {
        key: "msp",
        label: "MSP",
        help: "maximum softmax probability (Hendrycks & Gimpel 2017)",
        params: &[],
        needs: LOGITS,
        describe: plain,
        prepare: super::logits::prepare_msp,
    },
    MethodDef {
        key: "odin",
        label: "ODIN",
        help: "temperature-scaled MSP after an input nudge (Liang et al. 2018)",
        params: &[
            number(
                "temperature",
                1000.0,
                0.0,
                f64::INFINITY,
                true,
                "softmax temperature T",
            ),
            number(
                "epsilon",
                0.0,
                0.0,
                f64::INFINITY,
                false,
                "input perturbation magnitude (0: none, one pass)",
            ),
        ],
        needs: Needs {
            input_gradient: true,
            ..LOGITS
        },
        describe: |m, f| {
            write!(
                f,
                "ODIN (T={}, eps={})",
                m.number("temperature").unwrap_or(0.0),
                m.number("epsilon").unwrap_or(0.0)
            )
        },
        prepare: super::odin::prepare,
    },
    MethodDef {
        key: "energy",
        label: "Energy",
        help: "T * logsumexp(logits / T) (Liu et al. 2020)",
        params: &[TEMPERATURE],
        needs: LOGITS,
        describe: with_temperature,
        prepare: super::logits::prepare_energy,
    },
    MethodDef {
        key: "mahalanobis",
        label: "Mahalanobis",
        help: "class-conditional Gaussians on five taps, combined by a regression (Lee et al. 2018)",
        params: &[ParamDef {
            name: "params",
            label: "params file",
            kind: ParamKind::Path,
            help: "parameters file from tune-mahalanobis",
        }],
        needs: Needs {
            taps: true,
            input_gradient: true,
            ..LOGITS
        },
        describe: |m, f| match m.path("params").filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => write!(f, "Mahalanobis ({})", p.display()),
            None => write!(f, "Mahalanobis (parameters in memory)"),
        },
        prepare: super::mahalanobis::prepare,
    },
    MethodDef {
        key: "gradnorm",
        label: "GradNorm",
        help: "L1 norm of the head's gradient of the KL to uniform (Huang et al. 2021)",
        params: &[
            TEMPERATURE,
            ParamDef {
                name: "layer",
                label: "layer",
                kind: ParamKind::Text("head"),
                help: "the weight whose gradient is read, as the checkpoint names it \
                       (`gradnorm-tui layers` lists them); head: the classifier (the paper's)",
            },
            ParamDef {
                name: "norm",
                label: "norm",
                kind: ParamKind::Choice(&["l1", "l2", "linf"]),
                help: "norm of the gradient: L1 (the paper's), L2 or L-infinity",
            },
            ParamDef {
                name: "target",
                label: "target",
                kind: ParamKind::Choice(&["uniform", "predicted"]),
                help: "loss target: uniform (the paper's KL) or the top-1 label (cross-entropy)",
            },
        ],
        needs: FEATURE_HEAD,
        describe: super::gradnorm::describe,
        prepare: super::gradnorm::prepare,
    },
    MethodDef {
        key: "maxlogit",
        label: "MaxLogit",
        help: "the largest logit (Hendrycks et al. 2022)",
        params: &[],
        needs: LOGITS,
        describe: plain,
        prepare: super::logits::prepare_max_logit,
    },
    MethodDef {
        key: "entropy",
        label: "Entropy",
        help: "minus the softmax entropy, sum_c p_c log p_c",
        params: &[],
        needs: LOGITS,
        describe: plain,
        prepare: super::posthoc::prepare_entropy,
    },
    MethodDef {
        key: "gen",
        label: "GEN",
        help: "generalized entropy of the M largest probabilities (Liu et al. 2023)",
        params: &[
            number("gamma", 0.1, 0.0, 1.0, true, "exponent g of p^g (1 - p)^g"),
            integer("m", 100.0, 1.0, "how many of the largest probabilities count"),
        ],
        needs: LOGITS,
        describe: plain,
        prepare: super::posthoc::prepare_gen,
    },
    MethodDef {
        key: "react",
        label: "ReAct",
        help: "energy after clipping h at a percentile of the fit features (Sun et al. 2021)",
        params: &[percentile(90.0, "percentile of every fit feature entry that clips h")],
        needs: FITTED,
        describe: plain,
        prepare: super::fitted::prepare_react,
    },
    MethodDef {
        key: "ash-p",
        label: "ASH-P",
        help: "energy after pruning all but the top (100 - p)% of h (Djurisic et al. 2023)",
        params: &[percentile(90.0, "percentage of h's entries pruned")],
        needs: FEATURE_HEAD,
        describe: plain,
        prepare: super::posthoc::prepare_ash_p,
    },
    MethodDef {
        key: "ash-b",
        label: "ASH-B",
        help: "energy after pruning h and setting the kept entries to sum(h)/k",
        params: &[percentile(90.0, "percentage of h's entries pruned")],
        needs: FEATURE_HEAD,
        describe: plain,
        prepare: super::posthoc::prepare_ash_b,
    },
    MethodDef {
        key: "ash-s",
        label: "ASH-S",
        help: "energy after pruning h and scaling it by exp(sum(h) / sum(h'))",
        params: &[percentile(90.0, "percentage of h's entries pruned")],
        needs: FEATURE_HEAD,
        describe: plain,
        prepare: super::posthoc::prepare_ash_s,
    },
    MethodDef {
        key: "scale",
        label: "SCALE",
        help: "energy after scaling h by exp(sum(h) / sum(top-k of h)) (Xu et al. 2024)",
        params: &[percentile(85.0, "percentage of h's entries outside the top-k")],
        needs: FEATURE_HEAD,
        describe: plain,
        prepare: super::posthoc::prepare_scale,
    },
    MethodDef {
        key: "dice",
        label: "DICE",
        help: "energy of a head sparsified by the fit's mean contributions (Sun & Li 2022)",
        params: &[percentile(90.0, "percentile of the contributions zeroed")],
        needs: FITTED,
        describe: plain,
        prepare: super::fitted::prepare_dice,
    },
    MethodDef {
        key: "knn",
        label: "KNN",
        help: "minus the k-th nearest squared distance to the fit's normalized features (Sun et al. 2022)",
        params: &[integer("k", 50.0, 1.0, "which neighbour")],
        needs: FITTED,
        describe: plain,
        prepare: super::fitted::prepare_knn,
    },
    MethodDef {
        key: "vim",
        label: "ViM",
        help: "energy minus alpha times the feature's residual off the principal space (Wang et al. 2022)",
        params: &[integer("dim", 256.0, 1.0, "dimension of the principal space")],
        needs: FITTED,
        describe: plain,
        prepare: super::fitted::prepare_vim,
    },
    MethodDef {
        key: "residual",
        label: "Residual",
        help: "minus the norm of ViM's residual alone",
        params: &[integer("dim", 256.0, 1.0, "dimension of the principal space")],
        needs: FITTED,
        describe: plain,
        prepare: super::fitted::prepare_residual,
    },
    MethodDef {
        key: "klm",
        label: "KLM",
        help: "minus the smallest KL divergence to the fit's mean softmax per predicted class (Hendrycks et al. 2022)",
        params: &[],
        needs: FITTED,
        describe: plain,
        prepare: super::fitted::prepare_klm,
    },
    MethodDef {
        key: "mds",
        label: "MDS",
        help: "Mahalanobis distance on the penultimate feature alone, tied covariance",
        params: &[],
        needs: FITTED,
        describe: plain,
        prepare: super::fitted::prepare_mds,
    },
    MethodDef {
        key: "rmds",
        label: "RMDS",
        help: "relative Mahalanobis: MDS minus a class-agnostic background term (Ren et al. 2021)",
        params: &[],
        needs: FITTED,
        describe: plain,
        prepare: super::fitted::prepare_rmds,
    },
];

/// The definition of `key` (case-insensitive).
pub fn find(key: &str) -> Option<&'static MethodDef> {
    let key = key.trim().to_ascii_lowercase();
    METHODS.iter().find(|d| d.key == key)
}

/// Every key `--methods` accepts, in table order.
pub fn keys() -> Vec<&'static str> {
    METHODS.iter().map(|d| d.key).collect()
}
