//! End to end: `predict` and `eval` on real images from ../shared/data with
//! the tiny BiT fixture, checked against direct computations from the
//! logits and a brute-force AUROC.

use crate::common;

use assert_cmd::Command;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn bin() -> Command {
    Command::cargo_bin("gradnorm-tui").unwrap()
}

fn tiny(shared: &Path) -> PathBuf {
    shared.join("fixtures/bit/tiny.pth.tar")
}

/// `eval` on the CPU at size 64 of the tiny checkpoint, with `flags` and the
/// shared ImageNet validation list as the ID set.
pub(crate) fn eval_tiny(shared: &Path, flags: &[&str]) -> Command {
    let mut cmd = bin();
    // --no-store: these runs must compute, not reuse a store in the checkout.
    cmd.args([
        "eval",
        "--no-store",
        "--device",
        "cpu",
        "--image-size",
        "64",
    ])
    .args(flags)
    .arg("--checkpoint")
    .arg(tiny(shared))
    .arg("--id")
    .arg(shared.join("data/imagenet-val/val_list.txt"));
    cmd
}

/// `predict --json` for some images: path -> (logits, feature_l1).
fn predict(shared: &Path, images: &[PathBuf]) -> HashMap<PathBuf, (Vec<f64>, f64)> {
    let out = bin()
        .args([
            "predict",
            "--json",
            "--device",
            "cpu",
            "--image-size",
            "64",
            "--top",
            "3",
            "--checkpoint",
        ])
        .arg(tiny(shared))
        .args(images)
        .output()
        .unwrap();
    common::assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut map = HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let logits: Vec<f64> = v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(logits.len(), 10);
        let top = v["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // A 10-class model without a names file has no names.
        assert!(top[0]["name"].is_null());
        // top[0] is the argmax with its softmax probability.
        let (arg, max) =
            logits
                .iter()
                .enumerate()
                .fold((0, f64::MIN), |a, (i, &l)| if l > a.1 { (i, l) } else { a });
        let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        assert_eq!(top[0]["index"].as_u64().unwrap() as usize, arg);
        assert!((top[0]["prob"].as_f64().unwrap() - 1.0 / z).abs() < 1e-5);
        map.insert(
            PathBuf::from(v["image"].as_str().unwrap()),
            (logits, v["feature_l1"].as_f64().unwrap()),
        );
    }
    assert_eq!(map.len(), images.len());
    map
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    (
        header,
        lines
            .map(|l| l.split(',').map(String::from).collect())
            .collect(),
    )
}

#[test]
fn eval_writes_a_summary_and_scores_that_agree_with_the_logits() {
    let Some(shared) = common::shared() else {
        return;
    };
    let data = shared.join("data");
    let out_dir = tempfile::tempdir().unwrap();
    let out = eval_tiny(&shared, &["--batch", "7", "--limit", "24"])
        .arg(format!(
            "--ood=textures={}",
            data.join("ood/textures").display()
        ))
        .arg(format!(
            "--ood=cifar10={}",
            data.join("ood/cifar10").display()
        ))
        .args([
            "--methods",
            "msp,odin,energy,gradnorm,maxlogit",
            "--temperature-gradnorm",
            "2",
            "--out",
        ])
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stdout = common::success_stdout(&out);
    // The paper's table: a row per method, a column per OOD set and the average.
    for needle in [
        "| method",
        "textures",
        "cifar10",
        "average",
        "| MSP",
        "| ODIN",
        "| Energy",
        "| GradNorm",
        "| MaxLogit",
    ] {
        assert!(stdout.contains(needle), "table lacks {needle}:\n{stdout}");
    }

    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    let datasets = summary["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 3);
    for d in datasets {
        assert_eq!(d["images"], 24);
        assert_eq!(d["evaluated"], 24);
        assert_eq!(d["skipped_count"], 0);
    }
    // ImageNet labels for a 10-class model: no accuracy to speak of (the
    // run says so instead of counting every image as a miss).
    assert!(summary["id_top1"].is_null());
    let (header, rows) = read_csv(&out_dir.path().join("scores.csv"));
    assert_eq!(
        header,
        [
            "dataset",
            "path",
            "label",
            "top1",
            "top1_prob",
            "msp",
            "odin",
            "energy",
            "gradnorm",
            "maxlogit"
        ]
    );
    assert_eq!(rows.len(), 72);

    // Every method's scores against a direct computation from predict's logits.
    let some: Vec<PathBuf> = rows
        .iter()
        .step_by(9)
        .map(|r| PathBuf::from(&r[1]))
        .collect();
    let logits = predict(&shared, &some);
    for row in rows.iter().step_by(9) {
        let (l, h1) = &logits[&PathBuf::from(&row[1])];
        let col = |name: &str| {
            row[header.iter().position(|h| h == name).unwrap()]
                .parse::<f64>()
                .unwrap()
        };
        let max = l.iter().cloned().fold(f64::MIN, f64::max);
        let lse = |t: f64| max / t + l.iter().map(|x| (x / t - max / t).exp()).sum::<f64>().ln();
        let close = |a: f64, b: f64, what: &str| {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1e-3),
                "{what}: {a} vs {b}"
            )
        };
        close(col("msp"), (max - lse(1.0)).exp(), "msp");
        close(col("odin"), (max / 1000.0 - lse(1000.0)).exp(), "odin");
        close(col("energy"), lse(1.0), "energy");
        close(col("maxlogit"), max, "maxlogit");
        let c = l.len() as f64;
        let term: f64 = l
            .iter()
            .map(|x| (c * (x / 2.0 - lse(2.0)).exp() - 1.0).abs())
            .sum();
        close(col("gradnorm"), term * h1 / 2.0, "gradnorm");
    }

    // The summary's AUROC against a brute-force count over the CSV's scores.
    for (m, method) in ["msp", "odin", "energy", "gradnorm", "maxlogit"]
        .iter()
        .enumerate()
    {
        let scores = |set: &str| -> Vec<f64> {
            rows.iter()
                .filter(|r| r[0] == set)
                .map(|r| r[5 + m].parse().unwrap())
                .collect()
        };
        let id = scores("id");
        let mut sum = 0.0;
        for ood in ["textures", "cifar10"] {
            let want = common::auroc_pairs(&id, &scores(ood));
            let got = summary["methods"][method]["ood"][ood]["auroc"]
                .as_f64()
                .unwrap();
            assert!((got - want).abs() < 1e-9, "{method} {ood}: {got} vs {want}");
            sum += want;
        }
        let avg = summary["methods"][method]["average"]["auroc"]
            .as_f64()
            .unwrap();
        assert!((avg - sum / 2.0).abs() < 1e-9);
    }
}

#[test]
fn unreadable_files_are_recorded_and_skipped() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // An OOD folder with three real images and three broken files.
    let ood = dir.path().join("ood");
    std::fs::create_dir_all(&ood).unwrap();
    let cifar = shared.join("data/ood/cifar10/cat");
    let mut real: Vec<PathBuf> = std::fs::read_dir(&cifar)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    real.sort();
    for (i, p) in real.iter().take(3).enumerate() {
        std::fs::copy(p, ood.join(format!("ok{i}.jpg"))).unwrap();
    }
    std::fs::write(ood.join("empty.jpg"), b"").unwrap();
    std::fs::write(ood.join("text.png"), b"not an image").unwrap();
    let jpeg = std::fs::read(&real[0]).unwrap();
    std::fs::write(ood.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();

    let out_dir = dir.path().join("run");
    let out = eval_tiny(&shared, &["--json", "--limit", "6"])
        .arg(format!("--ood=broken={}", ood.display()))
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let summary = common::success_json(&out);
    let broken = &summary["datasets"][1];
    assert_eq!(broken["images"], 6);
    // A truncated JPEG may still decode (with grey fill) as PIL may; the
    // empty and the text file never do.
    let skipped = broken["skipped"].as_array().unwrap();
    let names: Vec<&str> = skipped
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("empty.jpg")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("text.png")), "{names:?}");
    assert!(skipped
        .iter()
        .all(|s| !s["reason"].as_str().unwrap().is_empty()));
    assert_eq!(
        broken["skipped_count"].as_u64().unwrap() as usize,
        skipped.len()
    );
    assert_eq!(
        broken["evaluated"].as_u64().unwrap() as usize + skipped.len(),
        6
    );
    let (_, rows) = read_csv(&out_dir.join("scores.csv"));
    assert_eq!(
        rows.iter().filter(|r| r[0] == "broken").count(),
        6 - skipped.len()
    );
    // Never replaced by another image: every row is one of the folder's files.
    assert!(rows
        .iter()
        .filter(|r| r[0] == "broken")
        .all(|r| r[1].contains("/ood/")));
}

#[test]
fn eval_reports_usage_errors_with_exit_code_2() {
    let given = ["--checkpoint", "c", "--id", "x", "--ood", "a=b"];
    let cases: [(&[&str], &str); 3] = [
        (&given[2..], "--checkpoint"),
        (
            &[&given[..], &["--methods", "msp,foo"]].concat(),
            "unknown method `foo`",
        ),
        (
            &[&given[..], &["--methods", "mahalanobis"]].concat(),
            "--mahalanobis-params",
        ),
    ];
    for (args, message) in cases {
        let out = bin().arg("eval").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{args:?}"
        );
    }
}

#[test]
fn selftest_passes_on_the_cpu_and_fails_on_wrong_fixtures() {
    let Some(shared) = common::shared() else {
        return;
    };
    let out = bin()
        .args(["selftest", "--device", "cpu", "--fixtures"])
        .arg(shared.join("fixtures/bit"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PASS  score odin_t1000_eps0.002"), "{text}");
    assert!(text.contains("PASS  mahalanobis_layers_m0.001"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    // Hidden from the command list.
    let help = bin().arg("--help").output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("selftest"));

    // The expected outputs with the input transposed (BiT is blind to the
    // input's scale and nearly to its offset): the comparisons fail.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        shared.join("fixtures/bit/tiny.pth.tar"),
        dir.path().join("tiny.pth.tar"),
    )
    .unwrap();
    let exp = candle_core::safetensors::load(
        shared.join("fixtures/bit/tiny_expected.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut wrong = exp.clone();
    let transposed = exp["input"].transpose(2, 3).unwrap().contiguous().unwrap();
    wrong.insert("input".into(), transposed);
    candle_core::safetensors::save(&wrong, dir.path().join("tiny_expected.safetensors")).unwrap();
    let out = bin()
        .args(["selftest", "--device", "cpu", "--fixtures"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL  logits"), "{text}");
}

#[test]
fn bench_reports_its_json_fields_with_synthetic_mahalanobis() {
    let Some(shared) = common::shared() else {
        return;
    };
    let out = bin()
        .args([
            "bench",
            "--json",
            "--device",
            "cpu",
            "--image-size",
            "64",
            "--batch",
            "2",
            "--images",
            "4",
            "--methods",
            "msp,mahalanobis",
            "--source",
        ])
        .arg(shared.join("data/imagenet-val/images"))
        .arg("--checkpoint")
        .arg(tiny(&shared))
        .output()
        .unwrap();
    let v = common::success_json(&out);
    for key in [
        "device",
        "model",
        "image_size",
        "batch",
        "dtype",
        "decode_img_per_s",
        "forward_img_per_s",
        "end_to_end_img_per_s",
    ] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["image_size"], 64);
    assert_eq!(v["dtype"], "f32");
    assert_eq!(v["mahalanobis_params"], "synthetic");
    for key in [
        "decode_img_per_s",
        "forward_img_per_s",
        "end_to_end_img_per_s",
    ] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
}

/// The help texts that name methods list the registry's: every key under
/// `--methods`, every fit-based key under `--fit` and `fit`.
#[test]
fn help_lists_every_method_the_registry_has() {
    use gradnorm_core::method::registry::{fitted_keys, keys};
    let text = |args: &[&str]| {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let eval = text(&["eval", "--help"]);
    assert!(
        eval.contains(&format!("Keys: {}.", keys().join(", "))),
        "{eval}"
    );
    let fitted = fitted_keys().join(", ");
    assert!(
        fitted.contains("lowdim-grad") && fitted.contains("knn"),
        "{fitted}"
    );
    assert!(eval.contains(&format!("(needed by {fitted})")), "{eval}");
    let top = text(&["--help"]);
    assert!(
        top.contains(&format!("fit-based methods ({fitted}) need")),
        "{top}"
    );
}
