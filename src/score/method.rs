//! The scoring methods as plain configuration (no tensors), shared by the
//! engine, the CLI, the config file and the TUI.

use std::path::PathBuf;

/// One OOD score. Higher always means "more in-distribution".
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Method {
    Msp,
    Odin { temperature: f64, epsilon: f64 },
    Energy { temperature: f64 },
    GradNorm { temperature: f64 },
    MaxLogit,
    Mahalanobis { params: PathBuf },
}

impl Method {
    /// Every key `--methods` accepts, in the paper's table order.
    pub const KEYS: [&'static str; 6] = [
        "msp",
        "odin",
        "energy",
        "mahalanobis",
        "gradnorm",
        "maxlogit",
    ];

    /// The method with the seed's default hyperparameters. Mahalanobis needs
    /// a parameters file, given separately.
    pub fn from_key(key: &str) -> Option<Method> {
        Some(match key.trim().to_ascii_lowercase().as_str() {
            "msp" => Method::Msp,
            "odin" => Method::Odin {
                temperature: 1000.0,
                epsilon: 0.0,
            },
            "energy" => Method::Energy { temperature: 1.0 },
            "gradnorm" => Method::GradNorm { temperature: 1.0 },
            "maxlogit" => Method::MaxLogit,
            "mahalanobis" => Method::Mahalanobis {
                params: PathBuf::new(),
            },
            _ => return None,
        })
    }

    pub fn key(&self) -> &'static str {
        match self {
            Method::Msp => "msp",
            Method::Odin { .. } => "odin",
            Method::Energy { .. } => "energy",
            Method::GradNorm { .. } => "gradnorm",
            Method::MaxLogit => "maxlogit",
            Method::Mahalanobis { .. } => "mahalanobis",
        }
    }

    /// The name the paper's table uses.
    pub fn label(&self) -> &'static str {
        match self {
            Method::Msp => "MSP",
            Method::Odin { .. } => "ODIN",
            Method::Energy { .. } => "Energy",
            Method::GradNorm { .. } => "GradNorm",
            Method::MaxLogit => "MaxLogit",
            Method::Mahalanobis { .. } => "Mahalanobis",
        }
    }

    /// Whether the score needs gradients w.r.t. the input (extra passes).
    pub fn needs_input_gradient(&self) -> bool {
        match self {
            Method::Odin { epsilon, .. } => *epsilon != 0.0,
            Method::Mahalanobis { .. } => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Odin {
                temperature,
                epsilon,
            } => write!(f, "ODIN (T={temperature}, eps={epsilon})"),
            Method::Energy { temperature } => write!(f, "Energy (T={temperature})"),
            Method::GradNorm { temperature } => write!(f, "GradNorm (T={temperature})"),
            Method::Mahalanobis { params } => write!(f, "Mahalanobis ({})", params.display()),
            m => f.write_str(m.label()),
        }
    }
}
