//! Metrics against the seed's get_measures (scikit-learn + its FPR95 walk),
//! through the library and the `metrics` command.

use crate::common;

use assert_cmd::Command;
use gradnorm_core::metrics;

fn cases() -> Option<Vec<serde_json::Value>> {
    let shared = common::shared()?;
    let cases = common::read_json(&shared.join("fixtures/metrics/cases.json"));
    Some(serde_json::from_value(cases).unwrap())
}

#[test]
fn measures_equal_the_seeds_on_every_case() {
    let Some(cases) = cases() else { return };
    assert!(cases.len() >= 7);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let m = metrics::measures(&common::floats(&case["id"]), &common::floats(&case["ood"]));
        common::assert_measures(name, m, case, "seed");
    }
}

#[test]
fn metrics_command_prints_the_seeds_numbers_as_json() {
    let Some(cases) = cases() else { return };
    let dir = tempfile::tempdir().unwrap();
    for case in cases.iter().take(3) {
        let id = dir.path().join("id.txt");
        let ood = dir.path().join("ood.txt");
        let lines = |v: &serde_json::Value| {
            common::floats(v)
                .iter()
                .map(|x| format!("{x:?}\n"))
                .collect::<String>()
        };
        std::fs::write(&id, lines(&case["id"])).unwrap();
        std::fs::write(&ood, lines(&case["ood"])).unwrap();
        let out = Command::cargo_bin("gradnorm-tui")
            .unwrap()
            .args(["metrics", "--json", "--id"])
            .arg(&id)
            .arg("--ood")
            .arg(&ood)
            .output()
            .unwrap();
        let json = common::success_json(&out);
        for key in ["auroc", "aupr_in", "aupr_out", "fpr95"] {
            let (got, want) = (json[key].as_f64().unwrap(), case[key].as_f64().unwrap());
            assert!(
                (got - want).abs() <= 1e-9,
                "{}: {key} {got} vs {want}",
                case["name"]
            );
        }
        // The table form prints percentages.
        let out = Command::cargo_bin("gradnorm-tui")
            .unwrap()
            .args(["metrics", "--id"])
            .arg(&id)
            .arg("--ood")
            .arg(&ood)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let auroc = format!("{:.2}%", 100.0 * case["auroc"].as_f64().unwrap());
        assert!(text.contains(&auroc), "{text} lacks {auroc}");
    }
}

#[test]
fn metrics_command_rejects_bad_input_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = common::write_file(dir.path(), "good.txt", "0.5\n0.7\n");
    let empty = common::write_file(dir.path(), "empty.txt", "\n\n");
    let junk = common::write_file(dir.path(), "junk.txt", "0.5\nabc\n");
    let nan = common::write_file(dir.path(), "nan.txt", "0.5\nNaN\n");
    for (bad, needle) in [
        (&empty, "no scores"),
        (&junk, "line 2: `abc` is not a number"),
        (&nan, "not a finite number"),
        (&dir.path().join("absent.txt"), "absent.txt"),
    ] {
        let out = Command::cargo_bin("gradnorm-tui")
            .unwrap()
            .args(["metrics", "--id"])
            .arg(&good)
            .arg("--ood")
            .arg(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", bad.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
}
