//! Tuning, then evaluating with the tuned parameters, from the command
//! line.

use super::*;

/// tune-mahalanobis then eval with its file, on the tiny checkpoint (10
/// classes: ImageNet labels taken mod 10) at 32 px, a handful of images.
#[test]
fn tune_then_eval_from_the_command_line() {
    let Some(shared) = common::shared() else {
        return;
    };
    let val_dir = shared.join("data/imagenet-val");
    let list = std::fs::read_to_string(val_dir.join("val_list.txt")).unwrap();
    let lines: Vec<String> = list
        .lines()
        .map(|l| {
            let (file, label) = l.split_once(' ').unwrap();
            let label: usize = label.trim().parse().unwrap();
            format!("{} {}", val_dir.join(file).display(), label % 10)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.txt");
    let val = dir.path().join("val.txt");
    std::fs::write(&train, lines[100..180].join("\n")).unwrap();
    std::fs::write(&val, lines[..12].join("\n")).unwrap();
    let params = dir.path().join("maha.safetensors");
    let scores = dir.path().join("scores.json");
    let ckpt = shared.join("fixtures/bit/tiny.pth.tar");
    let out = assert_cmd::Command::cargo_bin("gradnorm-tui")
        .unwrap()
        .args(["tune-mahalanobis", "--device", "cpu", "--image-size", "32"])
        .args(["--tune-count", "6", "--batch", "12", "--checkpoint"])
        .arg(&ckpt)
        .arg("--train")
        .arg(&train)
        .arg("--val")
        .arg(&val)
        .arg("--out")
        .arg(&params)
        .arg("--scores-out")
        .arg(&scores)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("fit: 80/80 images"), "{stderr}");

    // The file holds a magnitude of the seed's grid and one regression
    // weight per tap, and the scores file the 6 + 6 rows of each side.
    let p = MahalanobisParams::read(&params).unwrap();
    assert!(mahalanobis::MAGNITUDES.contains(&p.magnitude));
    assert_eq!(p.regression.weights.len(), 5);
    assert_eq!(p.model.image_size, 32);
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&scores).unwrap()).unwrap();
    for side in ["train_id", "train_ood", "val_id", "val_ood"] {
        let rows = table[side].as_array().unwrap();
        assert_eq!(rows.len(), 7, "{side}");
        assert_eq!(rows[0].as_array().unwrap().len(), 6, "{side}");
    }

    let run = dir.path().join("run");
    let out = assert_cmd::Command::cargo_bin("gradnorm-tui")
        .unwrap()
        .args([
            "eval",
            "--no-store",
            "--device",
            "cpu",
            "--image-size",
            "32",
            "--limit",
            "4",
        ])
        .args(["--methods", "mahalanobis,msp", "--checkpoint"])
        .arg(&ckpt)
        .arg("--id")
        .arg(&val)
        .arg(format!(
            "--ood=textures={}",
            shared.join("data/ood/textures").display()
        ))
        .arg("--mahalanobis-params")
        .arg(&params)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    common::assert_success(&out);
    let csv = std::fs::read_to_string(run.join("scores.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "mahalanobis").unwrap();
    let values: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values.len(), 8);
    // -P(OOD).
    assert!(
        values.iter().all(|v| (-1.0..=0.0).contains(v)),
        "{values:?}"
    );
}
