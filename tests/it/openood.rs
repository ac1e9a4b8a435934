//! OpenOOD v1.5's protocol: its metric convention against its evaluator's
//! formula (tests/fixtures/openood/make_cases.py, scikit-learn), its
//! ImageNet image lists read as OpenOOD reads them, and set groups.

use crate::common;
use gradnorm_core::metrics::{self, Convention, Measures};
use std::path::PathBuf;

/// Who computed the fixture's measures.
const OPENOOD: &str = "OpenOOD's auc_and_fpr_recall";

fn fixture() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openood/cases.json");
    common::read_json(&path)
}

#[test]
fn openood_convention_equals_openoods_evaluator_on_every_case() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (id, ood) = (common::floats(&case["id"]), common::floats(&case["ood"]));
        common::assert_measures(name, Convention::OpenOod.measures(&id, &ood), case, OPENOOD);
        common::assert_measures(name, metrics::openood_measures(&id, &ood), case, OPENOOD);
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

// ---------------------------------------------------------------------------
// `eval --benchmark openood-imagenet`: a small tree in OpenOOD's layout.

use assert_cmd::Command;
use std::path::Path;

/// (set, list file, group, images): OpenOOD v1.5's ImageNet-1k sets, small.
const SETS: [(&str, &str, Option<&str>, usize); 6] = [
    ("imagenet", "test_imagenet.txt", None, 12),
    ("ssb_hard", "test_ssb_hard.txt", Some("near"), 7),
    ("ninco", "test_ninco.txt", Some("near"), 6),
    ("inaturalist", "test_inaturalist.txt", Some("far"), 5),
    ("textures", "test_textures.txt", Some("far"), 8),
    ("openimage_o", "test_openimage_o.txt", Some("far"), 6),
];

/// A 16 x 16 PNG whose pattern depends on `seed` (a different look per set).
fn png(path: &Path, seed: u64) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 56) as u8
    };
    let base = [next(), next(), next()];
    let img = image::RgbImage::from_fn(16, 16, |x, y| {
        let n = next() / 4;
        image::Rgb([
            base[0].wrapping_add((x * 8) as u8).wrapping_add(n),
            base[1].wrapping_add((y * 8) as u8),
            base[2].wrapping_add(n),
        ])
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// OpenOOD's data folder with [`SETS`]: `benchmark_imglist/imagenet/` lists
/// (`path label`, -1 for OOD) and the images under `images_largescale/`
/// (Textures under `images_classic/`, as OpenOOD keeps them).
fn openood_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("benchmark_imglist/imagenet");
    std::fs::create_dir_all(&lists).unwrap();
    for (k, (set, list, _, n)) in SETS.iter().enumerate() {
        let mut text = String::new();
        for i in 0..*n {
            let (rel, label) = if k == 0 {
                (
                    format!("imagenet_1k/val/ILSVRC2012_val_{i:08}.png"),
                    (i % 10) as i64,
                )
            } else {
                (format!("{set}/class{}/img_{i:03}.png", i % 2), -1)
            };
            png(
                &dir.path().join(images_of(set)).join(&rel),
                (k * 100 + i) as u64,
            );
            text.push_str(&format!("{rel} {label}\n"));
        }
        std::fs::write(lists.join(list), text).unwrap();
    }
    dir
}

fn images_of(set: &str) -> &'static str {
    if set == "textures" {
        "images_classic"
    } else {
        "images_largescale"
    }
}

fn demo_checkpoint() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(gradnorm_engine::demo::CHECKPOINT)
}

fn eval_benchmark(data_root: &Path, out: &Path, flags: &[&str]) -> std::process::Output {
    Command::cargo_bin("gradnorm-tui")
        .unwrap()
        .args(["eval", "--no-store", "--device", "cpu", "--batch", "8"])
        .args(["--benchmark", "openood-imagenet", "--data-root"])
        .arg(data_root)
        .arg("--checkpoint")
        .arg(demo_checkpoint())
        .args(["--methods", "msp,energy", "--out"])
        .arg(out)
        .args(flags)
        .output()
        .unwrap()
}

/// scores.csv: per dataset and method, the scores.
fn scores_by_set(path: &Path) -> std::collections::HashMap<(String, String), Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut out = std::collections::HashMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        for method in ["msp", "energy"] {
            let col = header.iter().position(|h| *h == method).unwrap();
            out.entry((cells[0].to_string(), method.to_string()))
                .or_insert_with(Vec::new)
                .push(cells[col].parse::<f64>().unwrap());
        }
    }
    out
}

fn measures_of(v: &serde_json::Value) -> Measures {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn assert_near(what: &str, got: Measures, want: Measures) {
    for (k, g, w) in [
        ("auroc", got.auroc, want.auroc),
        ("aupr_in", got.aupr_in, want.aupr_in),
        ("aupr_out", got.aupr_out, want.aupr_out),
        ("fpr95", got.fpr95, want.fpr95),
    ] {
        assert!((g - w).abs() <= 1e-12, "{what} {k}: got {g}, want {w}");
    }
}

#[test]
fn openood_imagenet_reads_openoods_lists_with_groups_and_both_conventions() {
    let data = openood_tree();
    let out = tempfile::tempdir().unwrap();
    let run = eval_benchmark(data.path(), out.path(), &[]);
    let stdout = common::success_stdout(&run);
    // The table: every set, the group averages and the overall average.
    for column in ["ssb_hard", "openimage_o", "near avg", "far avg", "average"] {
        assert!(stdout.contains(column), "{column} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("near avg: the mean over ssb_hard, ninco"),
        "{stdout}"
    );
    assert!(stdout.contains("convention: the paper's"), "{stdout}");

    let summary = common::read_json(&out.path().join("summary.json"));
    let datasets = summary["datasets"].as_array().unwrap();
    let names: Vec<(&str, &str, u64)> = datasets
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap(),
                d["role"].as_str().unwrap(),
                d["evaluated"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(&str, &str, u64)> = SETS
        .iter()
        .map(|(s, _, g, n)| (*s, if g.is_some() { "ood" } else { "id" }, *n as u64))
        .collect();
    assert_eq!(names, want);
    let groups_of: Vec<Option<&str>> = datasets.iter().map(|d| d["group"].as_str()).collect();
    assert_eq!(groups_of, SETS.map(|s| s.2));
    // ID labels are read from the list (-1 marks OOD, no label).
    assert_eq!(summary["id_labelled"], 12);
    assert_eq!(summary["convention"], "paper");
    assert!(summary["conventions"]["openood"]
        .as_str()
        .unwrap()
        .contains("OOD positive"));
    let groups = &summary["groups"];
    assert_eq!(
        groups["near"]["sets"],
        serde_json::json!(["ssb_hard", "ninco"])
    );
    assert_eq!(
        groups["far"]["sets"],
        serde_json::json!(["inaturalist", "textures", "openimage_o"])
    );

    // Every figure from the per-image scores, independently of the run.
    let scores = scores_by_set(&out.path().join("scores.csv"));
    for method in ["msp", "energy"] {
        let id = &scores[&("imagenet".to_string(), method.to_string())];
        let m = &summary["methods"][method];
        for convention in Convention::ALL {
            let per_set = |set: &str| {
                convention.measures(id, &scores[&(set.to_string(), method.to_string())])
            };
            // The paper's figures unnamed (summary.convention), OpenOOD's
            // keyed by its name.
            let figures = match convention {
                Convention::Paper => m.clone(),
                Convention::OpenOod => m["openood"].clone(),
            };
            for (set, _, group, _) in &SETS[1..] {
                assert_near(
                    &format!("{method} {convention} {set}"),
                    measures_of(&figures["ood"][*set]),
                    per_set(set),
                );
                assert!(group.is_some());
            }
            let mean_of = |sets: &[&str]| {
                metrics::mean(&sets.iter().map(|s| per_set(s)).collect::<Vec<_>>()).unwrap()
            };
            assert_near(
                &format!("{method} {convention} near"),
                measures_of(&groups["near"]["methods"][method][convention.name()]),
                mean_of(&["ssb_hard", "ninco"]),
            );
            assert_near(
                &format!("{method} {convention} far"),
                measures_of(&groups["far"]["methods"][method][convention.name()]),
                mean_of(&["inaturalist", "textures", "openimage_o"]),
            );
            // The overall average is over the sets, not the groups.
            assert_near(
                &format!("{method} {convention} average"),
                measures_of(&figures["average"]),
                mean_of(&[
                    "ssb_hard",
                    "ninco",
                    "inaturalist",
                    "textures",
                    "openimage_o",
                ]),
            );
        }
    }
}

#[test]
fn the_openood_convention_leads_the_table_and_summary_when_asked() {
    let data = openood_tree();
    let out = tempfile::tempdir().unwrap();
    let run = eval_benchmark(data.path(), out.path(), &["--convention", "openood"]);
    let stdout = common::success_stdout(&run);
    assert!(stdout.contains("convention: OpenOOD v1.5's"), "{stdout}");
    let summary = common::read_json(&out.path().join("summary.json"));
    assert_eq!(summary["convention"], "openood");
    let msp = &summary["methods"]["msp"];
    // The paper's figures are then keyed by name.
    assert!(msp["paper"]["ood"]["ninco"]["fpr95"].is_number(), "{msp}");
    assert!(msp["ood"]["ninco"]["fpr95"].is_number(), "{msp}");
}

#[test]
fn a_stored_run_reports_groups_in_either_convention() {
    let data = openood_tree();
    let out = tempfile::tempdir().unwrap();
    let store = out.path().join("store");
    let run = Command::cargo_bin("gradnorm-tui")
        .unwrap()
        .args(["eval", "--device", "cpu", "--methods", "msp"])
        .args(["--benchmark", "openood-imagenet", "--data-root"])
        .arg(data.path())
        .arg("--checkpoint")
        .arg(demo_checkpoint())
        .arg("--store")
        .arg(&store)
        .arg("--out")
        .arg(out.path().join("run"))
        .output()
        .unwrap();
    common::assert_success(&run);
    let report = |convention: &str, format: &str| {
        let out = Command::cargo_bin("gradnorm-tui")
            .unwrap()
            .args([
                "report",
                "latest",
                "--format",
                format,
                "--convention",
                convention,
            ])
            .arg("--store")
            .arg(&store)
            .output()
            .unwrap();
        common::success_stdout(&out)
    };
    let md = report("openood", "md");
    assert!(
        md.contains("convention: OpenOOD v1.5's") && md.contains("far avg"),
        "{md}"
    );
    let json: serde_json::Value = serde_json::from_str(&report("openood", "json")).unwrap();
    assert_eq!(json["convention"], "openood");
    // The store keeps the groups: the stored run's figures equal the run's.
    let written = common::read_json(&out.path().join("run/summary.json"));
    assert_eq!(json["groups"], written["groups"]);
    assert_eq!(
        json["methods"]["msp"]["ood"],
        written["methods"]["msp"]["openood"]["ood"]
    );
    let paper: serde_json::Value = serde_json::from_str(&report("paper", "json")).unwrap();
    assert_eq!(
        paper["methods"]["msp"]["ood"],
        written["methods"]["msp"]["ood"]
    );
    // csv: a row per group average, with every digit of summary.json's.
    let csv = report("openood", "csv");
    let near = csv
        .lines()
        .find(|l| l.starts_with("msp,near avg,"))
        .unwrap_or_else(|| panic!("{csv}"));
    let fpr: f64 = near.split(',').nth(2).unwrap().parse().unwrap();
    assert_eq!(
        fpr,
        written["groups"]["near"]["methods"]["msp"]["openood"]["fpr95"]
            .as_f64()
            .unwrap()
    );
    let tex = report("paper", "latex");
    assert!(
        tex.contains("{near avg}") && tex.contains("{far avg}"),
        "{tex}"
    );
}

#[test]
fn missing_files_are_counted_before_the_run() {
    let data = openood_tree();
    let images = data.path().join("images_largescale");
    for i in [1, 3, 4, 5] {
        std::fs::remove_file(images.join(format!("ninco/class{}/img_{i:03}.png", i % 2))).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let run = eval_benchmark(data.path(), out.path(), &[]);
    common::assert_success(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("`ninco`: 4 of 6 files listed in")
            && stderr.contains("ninco/class1/img_001.png"),
        "{stderr}"
    );
    let summary = common::read_json(&out.path().join("summary.json"));
    let ninco = summary["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "ninco")
        .unwrap()
        .clone();
    assert_eq!(
        (ninco["evaluated"].as_u64(), ninco["skipped_count"].as_u64()),
        (Some(2), Some(4))
    );

    // A set with none of its files: a wrong folder, refused before the run.
    std::fs::remove_dir_all(data.path().join("images_classic/textures")).unwrap();
    let run = eval_benchmark(data.path(), out.path(), &[]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("`textures`: 8 of 8 files"), "{stderr}");
    // A list that is not there names its path.
    let run = eval_benchmark(&data.path().join("nowhere"), out.path(), &[]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("nowhere/benchmark_imglist/imagenet/test_imagenet.txt"),
        "{stderr}"
    );
}

#[test]
fn a_config_file_gives_groups_and_openoods_list_format() {
    let data = openood_tree();
    let lists = data.path().join("benchmark_imglist/imagenet");
    let images = data.path().join("images_largescale");
    let text = format!(
        r#"batch = 8
device = "cpu"
methods = [{{ method = "msp" }}]

[model]
checkpoint = "{ckpt}"

[id]
name = "imagenet"
path = "{lists}/test_imagenet.txt"
root = "{images}"
format = "openood"

[[ood]]
name = "ssb_hard"
path = "{lists}/test_ssb_hard.txt"
root = "{images}"
format = "openood"
group = "close"

[[ood]]
name = "textures"
path = "{lists}/test_textures.txt"
root = "{classic}"
format = "openood"
group = "distant"
"#,
        ckpt = demo_checkpoint().display(),
        lists = lists.display(),
        images = images.display(),
        classic = data.path().join("images_classic").display(),
    );
    let config = gradnorm_core::run::file::parse(&text).unwrap();
    // The TUI's form counts such a list (its -1 labels are OpenOOD's).
    let count = gradnorm_tui::tui::discover::count(&lists.join("test_ssb_hard.txt"), None);
    assert_eq!(count.unwrap(), 7);
    assert_eq!(config.ood[0].group.as_deref(), Some("close"));
    assert_eq!(
        config.ood[1].format,
        Some(gradnorm_core::run::ListFormat::OpenOod)
    );
    // A group on the ID set means nothing: refused, naming the key.
    let bad = text.replace(
        "format = \"openood\"\n\n[[ood]]\nname = \"ssb_hard\"",
        "format = \"openood\"\ngroup = \"x\"\n\n[[ood]]\nname = \"ssb_hard\"",
    );
    common::error_saying(gradnorm_core::run::file::parse(&bad), &["id.group"]);

    let path = data.path().join("run.toml");
    std::fs::write(&path, &text).unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = Command::cargo_bin("gradnorm-tui")
        .unwrap()
        .args(["eval", "--no-store", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = common::success_stdout(&run);
    assert!(
        stdout.contains("close avg") && stdout.contains("distant avg"),
        "{stdout}"
    );
    let summary = common::read_json(&out.path().join("summary.json"));
    assert_eq!(
        summary["groups"]["distant"]["sets"],
        serde_json::json!(["textures"])
    );
    assert_eq!(
        summary["groups"]["close"]["methods"]["msp"]["paper"],
        summary["methods"]["msp"]["ood"]["ssb_hard"]
    );
}

#[test]
fn the_tuis_metrics_table_has_a_row_per_group() {
    use gradnorm_core::run::Event;
    use gradnorm_tui::tui::theme;
    let mut app = crate::tui::app();
    for e in crate::tui::run_events() {
        let e = match e {
            Event::Started(info) => {
                let mut info = (*info).clone();
                info.datasets[1].group = Some("far".into());
                info.datasets[2].group = Some("near".into());
                Event::Started(std::sync::Arc::new(info))
            }
            e => e,
        };
        app.apply(e);
    }
    app.tick();
    crate::tui::press(&mut app, &[crate::tui::ch('2')]);
    let text = crate::tui::draw(&mut app, 120, 40);
    // The selected method (the first) on each group's one set.
    for (group, d, set) in [("far avg", 1, "textures"), ("near avg", 2, "scenes")] {
        let m = app.analysis().measures(0, d).unwrap();
        let row = text
            .lines()
            .find(|l| l.contains(group))
            .unwrap_or_else(|| panic!("no {group} row:\n{text}"));
        for v in [m.fpr95, m.auroc, m.aupr_in, m.aupr_out] {
            assert!(row.contains(&theme::pct(v)), "{row}");
        }
        assert!(row.contains(&format!("(1 of {set})")), "{row}");
    }
}

#[test]
fn p_toggles_the_tuis_metrics_between_the_conventions() {
    let mut app = crate::tui::finished_app();
    crate::tui::press(&mut app, &[crate::tui::ch('2')]);
    let (id, ood) = (app.results().scores(0, 0), app.results().scores(1, 0));
    assert_eq!(
        app.analysis().measures(0, 1),
        Some(metrics::measures(&id, &ood))
    );
    crate::tui::press(&mut app, &[crate::tui::ch('p')]);
    assert_eq!(app.analysis().convention, Convention::OpenOod);
    assert_eq!(
        app.analysis().measures(0, 1),
        Some(metrics::openood_measures(&id, &ood))
    );
    let text = crate::tui::draw(&mut app, 120, 40);
    assert!(text.contains("openood convention (p)"), "{text}");
    // Fresh batches keep the convention chosen.
    app.tick();
    assert_eq!(app.analysis().convention, Convention::OpenOod);
    crate::tui::press(&mut app, &[crate::tui::ch('p')]);
    assert_eq!(
        app.analysis().measures(0, 1),
        Some(metrics::measures(&id, &ood))
    );
}
