//! The post-hoc methods of issue 14: `fit` then `eval` reproduce every
//! score of ../shared/fixtures/methods (made with OpenOOD's formulas on the
//! paper's ResNetV2) and its statistics; property tests that catch sign and
//! axis slips (ash-p at percentile 0 is energy, react at 100 is energy, ...).

use crate::common;
use assert_cmd::Command;
use candle_core::{Device, Tensor, D};
use gradnorm_engine::data::dataset::{Dataset, Item};
use gradnorm_engine::data::image::{load_rgb, to_input};
use gradnorm_engine::model::{self, Classifier, InputSpec};
use gradnorm_engine::score::fit::{fit_images, Fit, FitOptions};
use gradnorm_engine::score::{logits, Method, Scorer};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const SIZE: usize = 64;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gradnorm-tui"))
}

/// `eval` of the tiny checkpoint at 64 px on the methods fixture's test
/// list, as the ID set and again as the OOD set `same`.
fn eval_on_the_test_list(shared: &Path) -> Command {
    let test = shared.join("fixtures/methods/test.txt");
    let mut cmd = bin();
    cmd.arg("eval")
        .arg("--checkpoint")
        .arg(shared.join("fixtures/bit/tiny.pth.tar"))
        .args(["--image-size", "64", "--id"])
        .arg(&test)
        .arg(format!("--ood=same={}", test.display()));
    cmd
}

/// The fixture's methods, each with its parameters: (the spec's name for
/// it, the key of its value in expected.json's `params`).
#[rustfmt::skip] // one method a line
const FIXTURE_METHODS: &[(&str, &[(&str, &str)])] = &[
    ("entropy", &[]),
    ("gen", &[("gamma", "gen_gamma"), ("m", "gen_m")]),
    ("react", &[("percentile", "react_percentile")]),
    ("ash-p", &[("percentile", "ash_percentile")]),
    ("ash-b", &[("percentile", "ash_percentile")]),
    ("ash-s", &[("percentile", "ash_percentile")]),
    ("scale", &[("percentile", "scale_percentile")]),
    ("dice", &[("percentile", "dice_percentile")]),
    ("knn", &[("k", "knn_k")]),
    ("vim", &[("dim", "vim_dim")]),
    ("residual", &[("dim", "vim_dim")]),
    ("klm", &[]),
    ("mds", &[]),
    ("rmds", &[]),
];

#[test]
fn fit_then_eval_reproduces_the_fourteen_scores() {
    let Some(shared) = common::shared() else {
        return;
    };
    let fx = shared.join("fixtures/methods");
    let ckpt = shared.join("fixtures/bit/tiny.pth.tar");
    let expected = common::read_json(&fx.join("expected.json"));
    let dir = tempfile::tempdir().unwrap();
    let fit = dir.path().join("fit.safetensors");
    let out = bin()
        .arg("fit")
        .arg("--checkpoint")
        .arg(&ckpt)
        .args(["--image-size", "64", "--train"])
        .arg(fx.join("fit.txt"))
        .arg("--out")
        .arg(&fit)
        .output()
        .unwrap();
    common::assert_success(&out);

    let p = &expected["params"];
    let num = |k: &str| p[k].as_f64().unwrap();
    // Each fixture method as a spec with the fixture's parameters.
    let specs: Vec<(&str, String)> = FIXTURE_METHODS
        .iter()
        .map(|&(key, params)| {
            let spec = params.iter().fold(key.to_string(), |spec, (name, k)| {
                format!("{spec}:{name}={}", num(k))
            });
            (key, spec)
        })
        .collect();
    let methods: Vec<&str> = specs.iter().map(|(_, s)| s.as_str()).collect();
    let run = dir.path().join("run");
    let out = eval_on_the_test_list(&shared)
        .arg("--no-store")
        .arg("--fit")
        .arg(&fit)
        .args(["--methods", &methods.join(","), "--out"])
        .arg(&run)
        .output()
        .unwrap();
    common::assert_success(&out);

    // The statistics eval prints, against the fixture's.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stat = |prefix: &str| -> f64 {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{stderr}"))
            .trim()
            .parse()
            .unwrap()
    };
    let st = &expected["stats"];
    for (got, key) in [
        (
            stat(&format!("note: {}: threshold = ", specs[2].1)),
            "react_threshold",
        ),
        (
            stat(&format!("note: {}: threshold = ", specs[7].1)),
            "dice_threshold",
        ),
        (
            stat(&format!("note: {}: alpha = ", specs[9].1)),
            "vim_alpha",
        ),
    ] {
        let want = st[key].as_f64().unwrap();
        assert!(((got - want) / want).abs() < 1e-4, "{key}: {got} vs {want}");
    }

    // Every score of every test image (the ID rows; the OOD set repeats them).
    let csv = std::fs::read_to_string(run.join("scores.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[0] == "id")
        .collect();
    let images = expected["images"].as_array().unwrap();
    assert_eq!(rows.len(), images.len());
    for (row, img) in rows.iter().zip(images) {
        let path = img["path"].as_str().unwrap();
        assert!(row[1].ends_with(path), "{} vs {path}", row[1]);
        for (key, spec) in &specs {
            let col = header.iter().position(|h| h == spec).unwrap();
            let got: f64 = row[col].parse().unwrap();
            let want = img["scores"][key].as_f64().unwrap();
            assert!(
                ((got - want) / want).abs() < 1e-4,
                "{key} on {path}: {got} vs {want}"
            );
        }
    }
}

/// The tiny BiT at 64 px and the fixture's test images as one batch.
fn model_and_batch(shared: &Path) -> (Box<dyn Classifier>, Tensor, Vec<std::path::PathBuf>) {
    let m = model::load_checkpoint(
        &shared.join("fixtures/bit/tiny.pth.tar"),
        None,
        &Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    let spec = InputSpec {
        size: SIZE,
        ..m.info().input
    };
    let ds = Dataset::open(&shared.join("fixtures/methods/test.txt"), None).unwrap();
    let paths: Vec<_> = ds.items.iter().map(|i| i.path.clone()).collect();
    let mut data = Vec::new();
    for p in &paths {
        data.extend(to_input(&load_rgb(p).unwrap(), &spec));
    }
    let x = Tensor::from_vec(data, (paths.len(), 3, SIZE, SIZE), &Device::Cpu).unwrap();
    (m, x, paths)
}

fn spec(s: &str) -> Method {
    Method::parse_spec(s, &[]).unwrap().remove(0)
}

fn vec1(t: &Tensor) -> Vec<f32> {
    t.to_vec1::<f32>().unwrap()
}

#[test]
fn feature_methods_reduce_to_their_special_cases() {
    let Some(shared) = common::shared() else {
        return;
    };
    let (m, x, _) = model_and_batch(&shared);
    let methods: Vec<Method> = [
        "energy",
        "ash-p:percentile=0",
        "ash-b:percentile=0",
        "ash-s:percentile=0",
        "scale:percentile=0",
        "gen:m=1:gamma=0.5",
        "entropy",
        "ash-p:percentile=90",
    ]
    .iter()
    .map(|s| spec(s))
    .collect();
    let s = Scorer::new(&methods, m.as_ref())
        .unwrap()
        .score(m.as_ref(), &x)
        .unwrap()
        .scores;
    let out = m.forward(&x).unwrap();
    let (w, b) = m.head();
    let energy_of = |h: &Tensor| {
        vec1(
            &h.matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(b)
                .unwrap()
                .log_sum_exp(D::Minus1)
                .unwrap(),
        )
    };
    // Pruning nothing is energy.
    common::assert_close("ash-p 0 = energy", &s[1], &s[0], 1e-5);
    // Binarizing everything: every entry becomes the mean of h.
    let d = out.feature.dim(1).unwrap();
    let mean = out.feature.mean_keepdim(1).unwrap();
    let flat = mean
        .broadcast_as((x.dim(0).unwrap(), d))
        .unwrap()
        .contiguous()
        .unwrap();
    common::assert_close(
        "ash-b 0 = E(W mean(h) 1 + b)",
        &s[2],
        &energy_of(&flat),
        1e-5,
    );
    // Nothing pruned: both scale h by e.
    let scaled = (&out.feature * std::f64::consts::E).unwrap();
    common::assert_close("ash-s 0 = E(W e h + b)", &s[3], &energy_of(&scaled), 1e-5);
    common::assert_close("scale 0 = E(W e h + b)", &s[4], &energy_of(&scaled), 1e-5);
    // GEN over the top class alone: -(p (1 - p))^g of the MSP.
    let msp = vec1(&logits::msp(&out.logits).unwrap());
    let gen: Vec<f32> = msp.iter().map(|p| -(p * (1.0 - p)).powf(0.5)).collect();
    common::assert_close("gen m=1", &s[5], &gen, 1e-5);
    // Entropy: sum p log p over classes, never positive.
    let p = candle_nn::ops::softmax(&out.logits, D::Minus1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let ent: Vec<f32> = p
        .iter()
        .map(|r| r.iter().map(|v| v * v.ln()).sum())
        .collect();
    common::assert_close("entropy", &s[6], &ent, 1e-5);
    // Pruning 90% differs from energy (the mask acts on features, not classes).
    assert!(s[7].iter().zip(&s[0]).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn mds_refuses_a_fit_with_one_image_per_class() {
    let Some(shared) = common::shared() else {
        return;
    };
    let (m, _, _) = model_and_batch(&shared);
    let mut items = Dataset::open(&shared.join("fixtures/methods/fit.txt"), None)
        .unwrap()
        .items;
    let mut seen = std::collections::HashSet::new();
    items.retain(|it| seen.insert(it.label));
    let (fit, _) = fit_at_test_size(m.as_ref(), items);
    assert_eq!(fit.images as usize, fit.by_class.classes.len());
    for key in ["mds", "rmds"] {
        let err = Scorer::with_fit(&[spec(key)], m.as_ref(), Some(&fit))
            .err()
            .unwrap_or_else(|| panic!("{key} accepted a fit with one image per class"))
            .to_string();
        assert!(
            err.contains("at least two fit images in some class"),
            "{err}"
        );
    }
    // The methods that need no class covariance still work on it.
    assert!(Scorer::with_fit(
        &[spec("vim:dim=16"), spec("knn:k=1")],
        m.as_ref(),
        Some(&fit)
    )
    .is_ok());
}

/// The fit of `items` at the test size (16 a batch, one worker, a bank of
/// 1000), and the images it skipped.
fn fit_at_test_size(m: &dyn Classifier, items: Vec<Item>) -> (Fit, Vec<(PathBuf, String)>) {
    let opts = FitOptions {
        input: InputSpec {
            size: SIZE,
            ..m.info().input
        },
        batch: 16,
        workers: 1,
        bank: 1000,
        nac_rows: 0,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    fit_images(m, items, opts, cancel, &mut |_, _| {}).unwrap()
}

#[test]
fn fit_methods_reduce_to_their_special_cases() {
    let Some(shared) = common::shared() else {
        return;
    };
    let (m, x, paths) = model_and_batch(&shared);
    let items = Dataset::open(&shared.join("fixtures/methods/fit.txt"), None)
        .unwrap()
        .items;
    let n_fit = items.len();
    let (fit, skipped) = fit_at_test_size(m.as_ref(), items);
    assert!(skipped.is_empty());
    assert_eq!((fit.images as usize, fit.bank_rows), (n_fit, n_fit));
    let methods: Vec<Method> = [
        "energy",
        "react:percentile=100",
        "vim:dim=16",
        "residual:dim=16",
        "mds",
        "rmds",
        "klm",
        "dice:percentile=90",
        "knn:k=1",
        "knn:k=5",
    ]
    .iter()
    .map(|s| spec(s))
    .collect();
    let scorer = Scorer::with_fit(&methods, m.as_ref(), Some(&fit)).unwrap();
    let s = scorer.score(m.as_ref(), &x).unwrap().scores;
    // No clipping at the largest entry: energy.
    common::assert_close("react 100 = energy", &s[1], &s[0], 1e-5);
    // ViM = energy - alpha * residual norm.
    let alpha = scorer
        .stats()
        .iter()
        .find(|(n, st, _)| n == "vim:dim=16" && *st == "alpha")
        .unwrap()
        .2 as f32;
    let vim: Vec<f32> = s[0].iter().zip(&s[3]).map(|(e, r)| e + alpha * r).collect();
    common::assert_close("vim = energy + alpha residual", &s[2], &vim, 1e-4);
    for (i, _) in paths.iter().enumerate() {
        // Distances are never negative: every score below is <= 0 ...
        assert!(
            s[3][i] <= 0.0 && s[4][i] <= 0.0 && s[6][i] <= 1e-6,
            "image {i}"
        );
        // ... and the background term only adds: rmds >= mds.
        assert!(
            s[5][i] >= s[4][i],
            "image {i}: rmds {} < mds {}",
            s[5][i],
            s[4][i]
        );
        // The first neighbour is nearer than the fifth.
        assert!(
            s[8][i] <= 0.0 && s[8][i] >= s[9][i],
            "knn {} {}",
            s[8][i],
            s[9][i]
        );
    }
    // DICE by hand: the contributions mean(F)_j W_cj above the threshold.
    let thr = scorer
        .stats()
        .iter()
        .find(|(n, _, _)| n == "dice:percentile=90")
        .unwrap()
        .2;
    let (w, b) = m.head();
    let wv = w.to_vec2::<f32>().unwrap();
    let bv = b.to_vec1::<f32>().unwrap();
    let h = m.forward(&x).unwrap().feature.to_vec2::<f32>().unwrap();
    let dice: Vec<f32> = h
        .iter()
        .map(|hr| {
            let z: Vec<f64> = wv
                .iter()
                .zip(&bv)
                .map(|(wr, &bc)| {
                    let dot: f64 = wr
                        .iter()
                        .enumerate()
                        .filter(|(j, &wcj)| fit.overall.means[*j] * f64::from(wcj) > thr)
                        .map(|(j, &wcj)| f64::from(wcj) * f64::from(hr[j]))
                        .sum();
                    dot + f64::from(bc)
                })
                .collect();
            let mx = z.iter().cloned().fold(f64::MIN, f64::max);
            (mx + z.iter().map(|v| (v - mx).exp()).sum::<f64>().ln()) as f32
        })
        .collect();
    common::assert_close("dice by hand", &s[7], &dice, 1e-4);
}

#[test]
fn a_fit_for_another_model_and_a_missing_fit_are_clear_errors() {
    let Some(shared) = common::shared() else {
        return;
    };
    let (m, _, _) = model_and_batch(&shared);
    let scorer = Scorer::new(&[spec("react")], m.as_ref());
    common::error_saying(scorer, &["react needs a fit file"]);
}

#[test]
fn a_sweep_gives_one_column_and_row_per_value_from_one_pass() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = eval_on_the_test_list(&shared)
        .args(["--methods", "energy,ash-p:percentile=0|90", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    common::assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| ASH-P percentile=0 "), "{stdout}");
    assert!(stdout.contains("| ASH-P percentile=90 "), "{stdout}");
    let csv = std::fs::read_to_string(dir.path().join("scores.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.ends_with(",energy,ash-p:percentile=0,ash-p:percentile=90"),
        "{header}"
    );
    for line in lines {
        let r: Vec<f64> = line
            .split(',')
            .skip(5)
            .map(|v| v.parse().unwrap())
            .collect();
        // Pruning nothing is energy; pruning 90% is not.
        assert!((r[1] - r[0]).abs() <= 1e-5 * r[0].abs(), "{line}");
        assert!((r[2] - r[0]).abs() > 1e-4, "{line}");
    }
}
