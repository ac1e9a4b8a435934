//! OpenOOD v1.5's protocol: its metric convention against its evaluator's
//! formula (tests/fixtures/openood/make_cases.py, scikit-learn), its
//! ImageNet image lists read as OpenOOD reads them, and set groups.

use crate::common;
use gradnorm_tui::metrics::{self, Convention, Measures};
use std::path::PathBuf;

fn fixture() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openood/cases.json");
    common::read_json(&path)
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_measures(name: &str, got: Measures, case: &serde_json::Value) {
    for (key, got) in [
        ("auroc", got.auroc),
        ("aupr_in", got.aupr_in),
        ("aupr_out", got.aupr_out),
        ("fpr95", got.fpr95),
    ] {
        let want = case[key].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9,
            "{name} {key}: got {got}, OpenOOD's auc_and_fpr_recall {want}"
        );
    }
}

#[test]
fn openood_convention_equals_openoods_evaluator_on_every_case() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (id, ood) = (floats(&case["id"]), floats(&case["ood"]));
        assert_measures(name, Convention::OpenOod.measures(&id, &ood), case);
        assert_measures(name, metrics::openood_measures(&id, &ood), case);
    }
}

#[test]
fn the_two_conventions_differ_where_they_should() {
    // ID scores 0..99; OOD: 90 far below, 10 amid the ID scores
    // (50.5..59.5; no ties, which OpenOOD's ROC would thin out).
    let id: Vec<f64> = (0..100).map(f64::from).collect();
    let ood: Vec<f64> = std::iter::repeat_n(-1000.0, 90)
        .chain((50..60).map(|s| f64::from(s) + 0.5))
        .collect();
    let paper = Convention::Paper.measures(&id, &ood);
    let openood = Convention::OpenOod.measures(&id, &ood);
    assert_eq!(paper, metrics::measures(&id, &ood));
    // AUROC does not depend on which class is positive.
    assert!((paper.auroc - openood.auroc).abs() < 1e-12);
    // FPR95 does. The paper's keeps 95% of ID (scores >= 5): the 10 OOD
    // images amid them pass. OpenOOD's catches 95% of OOD (scores <= 54.5):
    // the 55 ID images scoring 0..54 are rejected with them.
    assert!((paper.fpr95 - 0.10).abs() < 1e-12, "{paper:?}");
    assert!((openood.fpr95 - 0.55).abs() < 1e-12, "{openood:?}");
}
