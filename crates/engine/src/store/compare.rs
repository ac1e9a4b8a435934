//! Two runs side by side: the metric deltas per method and OOD set (two
//! models, two temperatures, CPU vs CUDA).

use gradnorm_core::metrics::Measures;
use gradnorm_core::run::Summary;
use std::collections::HashMap;

/// One method on one OOD set (or `average`) in both runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Delta {
    /// The method's key (`gradnorm`, ...).
    pub method: String,
    pub label: String,
    /// An OOD set's name, or `average`; `a-name = b-name` when the runs
    /// named the same files differently.
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
/// key (their parameters may differ: that is often the point); sets by
/// name. [`compare_files`] matches sets by their files.
pub fn compare(a: &Summary, b: &Summary) -> Comparison {
    compare_files(a, &HashMap::new(), b, &HashMap::new())
}

/// [`compare`], with OOD sets matched by what they hold: `files_a` and
/// `files_b` map a set's name to a key of its images' contents (see
/// `Store::set_files`), so "dtd" and "textures" of the same files pair up.
/// A set with no same-files partner pairs by name, as [`compare`] does.
pub fn compare_files(
    a: &Summary,
    files_a: &HashMap<String, String>,
    b: &Summary,
    files_b: &HashMap<String, String>,
) -> Comparison {
    let pairs = pair_sets(a, files_a, b, files_b);
    // b's sets renamed to a's names where paired, so rows match by name.
    let renamed: HashMap<&str, &str> = pairs
        .iter()
        .map(|(x, y)| (y.as_str(), x.as_str()))
        .collect();
    let shown: HashMap<&str, String> = pairs
        .iter()
        .map(|(x, y)| {
            let label = if x == y {
                x.clone()
            } else {
                format!("{x} = {y}")
            };
            (x.as_str(), label)
        })
        .collect();
    let mut c = compare_named(a, b, |set| match renamed.get(set) {
        Some(x) => x.to_string(),
        // Unpaired, but its name is a paired set's: other files.
        None if shown.contains_key(set) => format!("{set} (other files)"),
        None => set.to_string(),
    });
    for d in &mut c.deltas {
        if let Some(label) = shown.get(d.set.as_str()) {
            d.set = label.clone();
        }
    }
    c
}

/// a's OOD sets paired with b's: same files first, then same names.
fn pair_sets(
    a: &Summary,
    files_a: &HashMap<String, String>,
    b: &Summary,
    files_b: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let names = |s: &Summary| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in &s.methods {
            for (set, _) in &m.ood {
                if !out.contains(set) {
                    out.push(set.clone());
                }
            }
        }
        out
    };
    let (na, mut nb) = (names(a), names(b));
    let mut pairs = Vec::new();
    let mut rest = Vec::new();
    for x in na {
        let same = files_a
            .get(&x)
            .and_then(|fx| nb.iter().position(|y| files_b.get(y) == Some(fx)));
        match same {
            Some(i) => pairs.push((x, nb.remove(i))),
            None => rest.push(x),
        }
    }
    for x in rest {
        if let Some(i) = nb.iter().position(|y| *y == x) {
            pairs.push((x, nb.remove(i)));
        }
    }
    pairs
}

/// The comparison with b's set names mapped through `rename` (to a's).
fn compare_named(a: &Summary, b: &Summary, rename: impl Fn(&str) -> String) -> Comparison {
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
    let ra = rows(a);
    let rb: Vec<_> = rows(b)
        .into_iter()
        .map(|(k, l, set, m)| {
            let set = if set == "average" { set } else { rename(&set) };
            (k, l, set, m)
        })
        .collect();
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
