//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared` beside the checkout (or $GRADNORM_SHARED), when present.
/// Tests that need it print why they skip and return.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("GRADNORM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("fixtures").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (the shared fixtures and data live there)",
            dir.display()
        );
        None
    }
}

/// Asserts `got` equals `want` to `rtol` relative, the way `numpy.allclose`
/// does with a tolerance scaled to the tensor: for every element
/// |got - want| <= rtol * (|want| + max|want|). The norm-wise relative error
/// ||got - want|| / ||want|| is printed too.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = (0usize, 0f32);
    let (mut diff2, mut norm2) = (0f64, 0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let rel = (g - w).abs() / (w.abs() + scale).max(f32::MIN_POSITIVE);
        if rel.is_nan() || rel > worst.1 {
            worst = (i, rel);
        }
        diff2 += ((g - w) as f64).powi(2);
        norm2 += (*w as f64).powi(2);
    }
    let (i, rel) = worst;
    let normwise = (diff2 / norm2.max(f64::MIN_POSITIVE)).sqrt();
    assert!(
        rel <= rtol,
        "{what}: element {i}: got {} want {} (relative error {rel:e} > {rtol:e})",
        got[i],
        want[i]
    );
    eprintln!("{what}: worst element {rel:.2e}, norm-wise {normwise:.2e}");
}

/// For gradients through ReLU-like kinks, where two correct implementations
/// that differ by rounding can take the other side of a kink for a few
/// activations: the norm-wise relative error must be below `norm_rtol`, and
/// all but `outliers` (a fraction) of the elements must pass
/// `assert_close`'s element test at `rtol`.
pub fn assert_mostly_close(
    what: &str,
    got: &[f32],
    want: &[f32],
    rtol: f32,
    norm_rtol: f64,
    outliers: f64,
) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (mut diff2, mut norm2, mut bad) = (0f64, 0f64, 0usize);
    for (g, w) in got.iter().zip(want) {
        if (g - w).abs() > rtol * (w.abs() + scale) {
            bad += 1;
        }
        diff2 += ((g - w) as f64).powi(2);
        norm2 += (*w as f64).powi(2);
    }
    let normwise = (diff2 / norm2.max(f64::MIN_POSITIVE)).sqrt();
    let frac = bad as f64 / got.len().max(1) as f64;
    eprintln!(
        "{what}: norm-wise {normwise:.2e}, {bad} of {} elements outside {rtol:e}",
        got.len()
    );
    assert!(
        normwise <= norm_rtol,
        "{what}: norm-wise relative error {normwise:e} > {norm_rtol:e}"
    );
    assert!(
        frac <= outliers,
        "{what}: {bad} elements ({frac:e}) differ, more than {outliers:e}"
    );
}

/// The JSON file at `path`; panics naming the file if it is unreadable.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A temporary folder holding `entries`: each an empty file, or a folder
/// where it ends in `/` (with the folders above them).
pub fn temp_tree(entries: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in entries {
        let path = dir.path().join(e);
        if e.ends_with('/') {
            std::fs::create_dir_all(&path).unwrap();
        } else {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"").unwrap();
        }
    }
    dir
}

/// Writes `contents` to `dir/name`; the file's path.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// Panics with the command's stderr unless it exited successfully.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The command's stdout; panics with its stdout and stderr unless it exited
/// successfully.
pub fn success_stdout(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The command's stdout read as JSON; panics with its stderr unless it
/// exited successfully.
pub fn success_json(out: &std::process::Output) -> serde_json::Value {
    assert_success(out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The error `result` must hold, as text, after checking that it says each
/// of `needles`.
#[track_caller]
pub fn error_saying<T, E: std::fmt::Display>(result: Result<T, E>, needles: &[&str]) -> String {
    let Err(e) = result else {
        panic!("must fail: {needles:?}")
    };
    let e = e.to_string();
    for n in needles {
        assert!(e.contains(n), "lacks `{n}`: {e}");
    }
    e
}

/// AUROC by counting pairs (ties half): the Mann-Whitney definition,
/// independent of the curve code in src/metrics.rs.
pub fn auroc_pairs(id: &[f64], ood: &[f64]) -> f64 {
    let mut s = 0.0;
    for &a in id {
        for &b in ood {
            s += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    s / (id.len() * ood.len()) as f64
}

/// The checkpoint at `path` on the CPU in f32, its architecture inferred.
pub fn load_cpu(path: &std::path::Path) -> Box<dyn gradnorm_engine::model::Classifier> {
    gradnorm_engine::model::load_checkpoint(
        path,
        None,
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tensor's elements as one f32 vector.
pub fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Asserts a model's logits and feature equal `logits` and `feature` to
/// `rtol` (see [`assert_close`]).
pub fn assert_output_close(
    what: &str,
    got: &gradnorm_engine::model::Output,
    logits: &candle_core::Tensor,
    feature: &candle_core::Tensor,
    rtol: f32,
) {
    assert_close(
        &format!("{what} logits"),
        &flat(&got.logits),
        &flat(logits),
        rtol,
    );
    assert_close(
        &format!("{what} feature"),
        &flat(&got.feature),
        &flat(feature),
        rtol,
    );
}

/// A tensor of `shape` drawn from the seeded stream `seed`: normal
/// (mean, std), the same on every run.
pub fn randn(seed: u64, mean: f32, std: f32, shape: &[usize]) -> candle_core::Tensor {
    let n = shape.iter().product();
    let v = gradnorm_engine::rng::normals(seed, mean, std, n);
    candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
}

/// A tensor of `shape` uniform in [lo, hi) from the seeded stream `seed`.
pub fn rand(seed: u64, lo: f32, hi: f32, shape: &[usize]) -> candle_core::Tensor {
    let n = shape.iter().product();
    let v = gradnorm_engine::rng::uniforms(seed, lo, hi, n);
    candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
}

/// A JSON array of numbers, as the fixtures write score lists.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Asserts the four measures equal a fixture case's `auroc`, `aupr_in`,
/// `aupr_out` and `fpr95` to 1e-9; `reference` names who computed them.
pub fn assert_measures(
    name: &str,
    got: gradnorm_core::metrics::Measures,
    case: &serde_json::Value,
    reference: &str,
) {
    for (key, got) in [
        ("auroc", got.auroc),
        ("aupr_in", got.aupr_in),
        ("aupr_out", got.aupr_out),
        ("fpr95", got.fpr95),
    ] {
        let want = case[key].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9,
            "{name} {key}: got {got}, {reference} {want}"
        );
    }
}
