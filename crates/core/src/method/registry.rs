//! The method registry: every OOD score defined once — key, label,
//! parameters (name, default, range, help), what it needs. The CLI
//! (`--methods` specs), the config file, the TUI form, summary.json and bench
//! all read this table; adding a method is one entry here plus its
//! computation in the engine's `score` (matched on its [`Kind`]).

use super::def::{Kind, MethodDef, Needs, NumberRange, ParamDef, ParamKind};
use super::Method;

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
        short: name,
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
const TEMPERATURE: ParamDef = short(
    "T",
    number(
        "temperature",
        1.0,
        0.0,
        f64::INFINITY,
        true,
        "temperature T",
    ),
);

/// `p` named `short` on the progress line.
const fn short(short: &'static str, p: ParamDef) -> ParamDef {
    ParamDef { short, ..p }
}

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

/// GradNorm names its temperature and what differs from the paper's
/// choices (a layer but the head, a norm but L1, the predicted target).
fn gradnorm(m: &Method, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "{} (", m.label())?;
    for (p, v) in m.def().params.iter().zip(m.values()) {
        match p.kind {
            ParamKind::Number(_) => write!(f, "{}={v}", p.short)?,
            _ if *v == p.kind.default_value() => {}
            ParamKind::Choice(_) if p.name == "target" => write!(f, ", {v} target")?,
            _ => write!(f, ", {v}")?,
        }
    }
    f.write_str(")")
}

fn plain(m: &Method, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str(m.label())?;
    let params: Vec<String> = m
        .def()
        .params
        .iter()
        .zip(m.values())
        .map(|(p, v)| format!("{}={v}", p.short))
        .collect();
    if !params.is_empty() {
        write!(f, " ({})", params.join(", "))?;
    }
    Ok(())
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
        kind: Kind::Msp,
    },
    MethodDef {
        key: "odin",
        label: "ODIN",
        help: "temperature-scaled MSP after an input nudge (Liang et al. 2018)",
        params: &[
            short(
                "T",
                number(
                    "temperature",
                    1000.0,
                    0.0,
                    f64::INFINITY,
                    true,
                    "softmax temperature T",
                ),
            ),
            short(
                "eps",
                number(
                    "epsilon",
                    0.0,
                    0.0,
                    f64::INFINITY,
                    false,
                    "input perturbation magnitude (0: none, one pass)",
                ),
            ),
        ],
        needs: Needs {
            input_gradient: true,
            ..LOGITS
        },
        describe: plain,
        kind: Kind::Odin,
    },
    MethodDef {
        key: "energy",
        label: "Energy",
        help: "T * logsumexp(logits / T) (Liu et al. 2020)",
        params: &[TEMPERATURE],
        needs: LOGITS,
        describe: plain,
        kind: Kind::Energy,
    },
    MethodDef {
        key: "mahalanobis",
        label: "Mahalanobis",
        help: "class-conditional Gaussians on five taps, combined by a regression (Lee et al. 2018)",
        params: &[ParamDef {
            name: "params",
            label: "params file",
            short: "params",
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
        kind: Kind::Mahalanobis,
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
                short: "layer",
                kind: ParamKind::Text("head"),
                help: "the weight whose gradient is read, as the checkpoint names it \
                       (`gradnorm-tui layers` lists them); head: the classifier (the paper's)",
            },
            ParamDef {
                name: "norm",
                label: "norm",
                short: "norm",
                kind: ParamKind::Choice(&["l1", "l2", "linf"]),
                help: "norm of the gradient: L1 (the paper's), L2 or L-infinity",
            },
            ParamDef {
                name: "target",
                label: "target",
                short: "target",
                kind: ParamKind::Choice(&["uniform", "predicted"]),
                help: "loss target: uniform (the paper's KL) or the top-1 label (cross-entropy)",
            },
        ],
        needs: FEATURE_HEAD,
        describe: gradnorm,
        kind: Kind::GradNorm,
    },
    MethodDef {
        key: "maxlogit",
        label: "MaxLogit",
        help: "the largest logit (Hendrycks et al. 2022)",
        params: &[],
        needs: LOGITS,
        describe: plain,
        kind: Kind::MaxLogit,
    },
    MethodDef {
        key: "entropy",
        label: "Entropy",
        help: "minus the softmax entropy, sum_c p_c log p_c",
        params: &[],
        needs: LOGITS,
        describe: plain,
        kind: Kind::Entropy,
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
        kind: Kind::Gen,
    },
    MethodDef {
        key: "react",
        label: "ReAct",
        help: "energy after clipping h at a percentile of the fit features (Sun et al. 2021)",
        params: &[percentile(90.0, "percentile of every fit feature entry that clips h")],
        needs: FITTED,
        describe: plain,
        kind: Kind::React,
    },
    MethodDef {
        key: "ash-p",
        label: "ASH-P",
        help: "energy after pruning all but the top (100 - p)% of h (Djurisic et al. 2023)",
        params: &[percentile(90.0, "percentage of h's entries pruned")],
        needs: FEATURE_HEAD,
        describe: plain,
        kind: Kind::AshP,
    },
    MethodDef {
        key: "ash-b",
        label: "ASH-B",
        help: "energy after pruning h and setting the kept entries to sum(h)/k",
        params: &[percentile(90.0, "percentage of h's entries pruned")],
        needs: FEATURE_HEAD,
        describe: plain,
        kind: Kind::AshB,
    },
    MethodDef {
        key: "ash-s",
        label: "ASH-S",
        help: "energy after pruning h and scaling it by exp(sum(h) / sum(h'))",
        params: &[percentile(90.0, "percentage of h's entries pruned")],
        needs: FEATURE_HEAD,
        describe: plain,
        kind: Kind::AshS,
    },
    MethodDef {
        key: "scale",
        label: "SCALE",
        help: "energy after scaling h by exp(sum(h) / sum(top-k of h)) (Xu et al. 2024)",
        params: &[percentile(85.0, "percentage of h's entries outside the top-k")],
        needs: FEATURE_HEAD,
        describe: plain,
        kind: Kind::Scale,
    },
    MethodDef {
        key: "dice",
        label: "DICE",
        help: "energy of a head sparsified by the fit's mean contributions (Sun & Li 2022)",
        params: &[percentile(90.0, "percentile of the contributions zeroed")],
        needs: FITTED,
        describe: plain,
        kind: Kind::Dice,
    },
    MethodDef {
        key: "knn",
        label: "KNN",
        help: "minus the k-th nearest squared distance to the fit's normalized features (Sun et al. 2022)",
        params: &[integer("k", 50.0, 1.0, "which neighbour")],
        needs: FITTED,
        describe: plain,
        kind: Kind::Knn,
    },
    MethodDef {
        key: "vim",
        label: "ViM",
        help: "energy minus alpha times the feature's residual off the principal space (Wang et al. 2022)",
        params: &[integer("dim", 256.0, 1.0, "dimension of the principal space")],
        needs: FITTED,
        describe: plain,
        kind: Kind::Vim,
    },
    MethodDef {
        key: "residual",
        label: "Residual",
        help: "minus the norm of ViM's residual alone",
        params: &[integer("dim", 256.0, 1.0, "dimension of the principal space")],
        needs: FITTED,
        describe: plain,
        kind: Kind::Residual,
    },
    MethodDef {
        key: "klm",
        label: "KLM",
        help: "minus the smallest KL divergence to the fit's mean softmax per predicted class (Hendrycks et al. 2022)",
        params: &[],
        needs: FITTED,
        describe: plain,
        kind: Kind::Klm,
    },
    MethodDef {
        key: "mds",
        label: "MDS",
        help: "Mahalanobis distance on the penultimate feature alone, tied covariance",
        params: &[],
        needs: FITTED,
        describe: plain,
        kind: Kind::Mds,
    },
    MethodDef {
        key: "rmds",
        label: "RMDS",
        help: "relative Mahalanobis: MDS minus a class-agnostic background term (Ren et al. 2021)",
        params: &[],
        needs: FITTED,
        describe: plain,
        kind: Kind::Rmds,
    },
    MethodDef {
        key: "gaia-a",
        label: "GAIA-A",
        help: "minus the mean squared channel-averaged gradient of the pooled feature's sum \
               at the chosen layers, relative to the head's (Chen et al. 2023)",
        params: &[GAIA_LAYERS],
        needs: FEATURE_HEAD,
        describe: plain,
        kind: Kind::GaiaA,
    },
    MethodDef {
        key: "gaia-z",
        label: "GAIA-Z",
        help: "minus the mean squared fraction of non-zero gradients of the top logit per \
               channel of the chosen layers (Chen et al. 2023)",
        params: &[GAIA_LAYERS],
        needs: FEATURE_HEAD,
        describe: plain,
        kind: Kind::GaiaZ,
    },
    MethodDef {
        key: "nac-ue",
        label: "NAC-UE",
        help: "neuron activation coverage: how often the fit set's states sigmoid(alpha o dKL/do) \
               fell in the image's state's interval, averaged over neurons and layers (Liu et al. 2024)",
        params: &[
            ParamDef {
                name: "layers",
                label: "layers",
                short: "layers",
                kind: ParamKind::Text("auto"),
                help: "the layers whose neurons count, joined by +; auto: the authors' four \
                       (ResNet: avgpool+layer3+layer2+layer1; BiT: before_head+body.block3+\
                       body.block2+body.block1; EfficientNet-Lite0, with ResNet's \
                       hyperparameters: _avg_pooling+_blocks.10+_blocks.4+_blocks.2)",
            },
            nac_per_layer("bins", "intervals + 1 (M, even); auto: the authors' per layer (50, 50, 500, 1000)"),
            nac_per_layer("o", "fit states that fill an interval (O); auto: the authors' per layer (10, 500, 50, 5000)"),
            nac_per_layer("alpha", "the sigmoid's steepness; auto: the authors' per layer (3000, 300, 0.01, 1)"),
        ],
        needs: FITTED,
        describe: plain,
        kind: Kind::NacUe,
    },
    MethodDef {
        key: "grood",
        label: "GROOD",
        help: "minus the squared distance from the image's gradient of the nearest-prototype \
               loss to the nearest of the fit's correctly classified images' (ElAraby et al. 2023)",
        params: &[
            ParamDef {
                name: "gradient",
                label: "gradient",
                short: "grad",
                kind: ParamKind::Choice(&["noise", "class"]),
                help: "whose gradient: the noise prototype's (OpenOOD's default) or the predicted \
                       class prototype's (its use_pseudo_prototype)",
            },
            integer("k", 1.0, 1.0, "which neighbour (OpenOOD's: the nearest)"),
        ],
        needs: FITTED,
        describe: plain,
        kind: Kind::Grood,
    },
    MethodDef {
        key: "lowdim-grad",
        label: "LowDim-Grad",
        help: "KNN on the image's head-parameter gradient of the energy, projected on the fit's \
               class-mean gradients: minus the k-th smallest squared distance to the fit images' \
               (Wu et al. 2024, their ImageNet recipe)",
        params: &[
            ParamDef {
                name: "kernel",
                label: "kernel",
                short: "kernel",
                kind: ParamKind::Choice(&["nfk", "ntk"]),
                help: "nfk: gradients centred on the fit's mean and scaled by its diagonal Fisher \
                       (the authors' ImageNet setting); ntk: raw gradients",
            },
            integer("k", 10.0, 1.0, "which neighbour (the authors' ImageNet setting: 10)"),
        ],
        needs: FITTED,
        describe: plain,
        kind: Kind::LowdimGrad,
    },
];

/// A NAC-UE hyperparameter: `auto`, one number for every layer, or one per
/// layer joined by +.
const fn nac_per_layer(name: &'static str, help: &'static str) -> ParamDef {
    ParamDef {
        name,
        label: name,
        short: name,
        kind: ParamKind::Text("auto"),
        help,
    }
}

/// GAIA's layers: whose output gradients it reads.
const GAIA_LAYERS: ParamDef = ParamDef {
    name: "layers",
    label: "layers",
    short: "layers",
    kind: ParamKind::Text("auto"),
    help: "the normalization layers whose output gradients count, as the checkpoint names \
           them or a block above them, joined by +; auto: the authors' ImageNet choice \
           (BiT: body.block4; ResNet: layer3+layer4; EfficientNet-Lite, ResNet's \
           counterpart: the stride-16 and -32 stages' blocks and the head's _bn1)",
};

/// The paper's methods: what `eval`, `bench` and the TUI's form run when
/// no methods are chosen.
pub const DEFAULT_METHODS: [&str; 5] = ["msp", "odin", "energy", "gradnorm", "maxlogit"];

/// The definition of `key` (case-insensitive).
pub fn find(key: &str) -> Option<&'static MethodDef> {
    let key = key.trim().to_ascii_lowercase();
    METHODS.iter().find(|d| d.key == key)
}

/// Every key `--methods` accepts, in table order.
pub fn keys() -> Vec<&'static str> {
    METHODS.iter().map(|d| d.key).collect()
}

/// The keys of the methods that read a fit file, in table order.
pub fn fitted_keys() -> Vec<&'static str> {
    METHODS
        .iter()
        .filter(|d| d.needs.fit)
        .map(|d| d.key)
        .collect()
}
