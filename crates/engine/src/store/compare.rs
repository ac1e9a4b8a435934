//! Two runs side by side: the metric deltas per method and OOD set (two
//! models, two temperatures, CPU vs CUDA).

use gradnorm_core::metrics::Measures;
use gradnorm_core::run::Summary;

/// One method on one OOD set (or `average`) in both runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Delta {
    /// The method's key (`gradnorm`, ...).
    pub method: String,
    pub label: String,
    /// An OOD set's name, or `average`.
    pub set: String,
    pub a: Measures,
    pub b: Measures,
}

impl Delta {
    /// `b - a` for each measure.
    pub fn diff(&self) -> Measures {
        Measures {
            auroc: self.b.auroc - self.a.auroc,
            aupr_in: self.b.aupr_in - self.a.aupr_in,
            aupr_out: self.b.aupr_out - self.a.aupr_out,
            fpr95: self.b.fpr95 - self.a.fpr95,
        }
    }
}

/// What two runs share, measured in both; methods or sets that only one
/// run has are listed apart.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub deltas: Vec<Delta>,
    /// `method/set` pairs present in only one of the runs.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

/// Compares two summaries, in `a`'s method and set order. Methods match by
/// key (their parameters may differ: that is often the point).
pub fn compare(a: &Summary, b: &Summary) -> Comparison {
    let mut deltas = Vec::new();
    let mut only_a = Vec::new();
    let rows = |s: &Summary| -> Vec<(String, String, String, Measures)> {
        let mut out = Vec::new();
        for m in &s.methods {
            for (set, ms) in &m.ood {
                out.push((m.key.clone(), m.label.clone(), set.clone(), *ms));
            }
            if let Some(avg) = m.average {
                out.push((m.key.clone(), m.label.clone(), "average".into(), avg));
            }
        }
        out
    };
    let (ra, rb) = (rows(a), rows(b));
    for (key, label, set, ma) in &ra {
        match rb.iter().find(|(k, _, s, _)| k == key && s == set) {
            Some((_, _, _, mb)) => deltas.push(Delta {
                method: key.clone(),
                label: label.clone(),
                set: set.clone(),
                a: *ma,
                b: *mb,
            }),
            None => only_a.push(format!("{key}/{set}")),
        }
    }
    let only_b = rb
        .iter()
        .filter(|(k, _, s, _)| !ra.iter().any(|(ka, _, sa, _)| ka == k && sa == s))
        .map(|(k, _, s, _)| format!("{k}/{s}"))
        .collect();
    Comparison {
        deltas,
        only_a,
        only_b,
    }
}
