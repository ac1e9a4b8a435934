//! Mahalanobis against the paper's code (tiny BiT fixture), a direct
//! computation of the fit on real images, and scikit-learn's logistic
//! regression.

use crate::common;

use candle_core::{DType, Device, Tensor};
use gradnorm_tui::data::image::{load_rgb, to_input};
use gradnorm_tui::model::{self, Classifier, InputSpec};
use gradnorm_tui::score::gaussian::{pinvh, GaussianFit};
use gradnorm_tui::score::logistic::{self, Logistic};
use gradnorm_tui::score::mahalanobis::{
    self, FgsmClamp, GaussianLayers, Mahalanobis, MahalanobisParams, ModelStamp,
};
use gradnorm_tui::score::{Method, Scorer};
use std::collections::HashMap;
use std::path::Path;

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn tiny(shared: &Path) -> Box<dyn Classifier> {
    model::load_checkpoint(
        &shared.join("fixtures/bit/tiny.pth.tar"),
        None,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap()
}

/// The fixture's means and precisions (P = diag + F F^T, formed in f64).
fn fixture_gaussians(exp: &HashMap<String, Tensor>) -> (Vec<Tensor>, Vec<Tensor>) {
    let (mut means, mut precisions) = (vec![], vec![]);
    for l in 0..5 {
        means.push(exp[&format!("maha_mean{l}")].clone());
        let diag = exp[&format!("maha_precision_diag{l}")]
            .to_dtype(DType::F64)
            .unwrap();
        let f = exp[&format!("maha_precision_factor{l}")]
            .to_dtype(DType::F64)
            .unwrap();
        let d = diag.dim(0).unwrap();
        let diag = Tensor::eye(d, DType::F64, &Device::Cpu)
            .unwrap()
            .broadcast_mul(&diag.unsqueeze(0).unwrap())
            .unwrap();
        let p = (f.matmul(&f.t().unwrap()).unwrap() + diag).unwrap();
        precisions.push(p.to_dtype(DType::F32).unwrap());
    }
    (means, precisions)
}

#[test]
fn layer_scores_equal_the_seeds_on_the_tiny_fixture() {
    let Some(shared) = common::shared() else {
        return;
    };
    let exp = candle_core::safetensors::load(
        shared.join("fixtures/bit/tiny_expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let m = tiny(&shared);
    let (means, precisions) = fixture_gaussians(&exp);
    let g = GaussianLayers::new(&means, &precisions, &Device::Cpu).unwrap();
    let scores = g.scores(m.as_ref(), &exp["input"], &[0.0, 0.001]).unwrap();
    common::assert_close(
        "layer scores, m = 0",
        &flat(&scores[0]),
        &flat(&exp["mahalanobis_layers_m0.0"]),
        1e-4,
    );
    common::assert_close(
        "layer scores, m = 0.001",
        &flat(&scores[1]),
        &flat(&exp["mahalanobis_layers_m0.001"]),
        1e-4,
    );

    // Through a parameters file: -sigmoid(w . s + b) of the seed's scores.
    let regression = Logistic {
        weights: vec![1e-3, -2e-3, 5e-4, 1e-5, 2e-6],
        bias: 0.7,
    };
    let params = MahalanobisParams {
        model: ModelStamp::of(m.as_ref(), 64).unwrap(),
        classes: (0..10).collect(),
        means: means.clone(),
        precisions: precisions.clone(),
        magnitude: 0.001,
        regression: regression.clone(),
        provenance: serde_json::json!({"test": true}),
    };
    // -P(OOD) = -sigmoid(w . s + b) of the seed's layer scores under `key`.
    let seed_probabilities = |key: &str| -> Vec<f32> {
        exp[key]
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap()
            .iter()
            .map(|s| -logistic::sigmoid(regression.decision(s)) as f32)
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maha.safetensors");
    params.save(&path).unwrap();
    let maha = Mahalanobis::load(&path, m.as_ref()).unwrap();
    assert_eq!(maha.magnitude(), 0.001);
    let got = flat(&maha.score(m.as_ref(), &exp["input"]).unwrap());
    let want = seed_probabilities("mahalanobis_layers_m0.001");
    common::assert_close("-P(OOD)", &got, &want, 1e-4);

    // Magnitude 0 through the Scorer, which hands over its own taps.
    let mut zero = params.clone();
    zero.magnitude = 0.0;
    zero.save(&path).unwrap();
    let scorer = Scorer::new(&[mahalanobis_method(&path)], m.as_ref()).unwrap();
    let got = scorer
        .score(m.as_ref(), &exp["input"])
        .unwrap()
        .scores
        .remove(0);
    let want = seed_probabilities("mahalanobis_layers_m0.0");
    common::assert_close("-P(OOD), m = 0, Scorer", &got, &want, 1e-4);

    // Magnitude 0.001 through the Scorer, whose one tracked forward pass
    // also serves ODIN's perturbation and MSP.
    params.save(&path).unwrap();
    let scorer = Scorer::new(
        &[
            Method::from_key("msp").unwrap(),
            Method::with_params("odin", &[("temperature", 1000.0), ("epsilon", 0.002)]).unwrap(),
            mahalanobis_method(&path),
        ],
        m.as_ref(),
    )
    .unwrap();
    let out = scorer.score(m.as_ref(), &exp["input"]).unwrap();
    common::assert_close("MSP, shared pass", &out.scores[0], &flat(&exp["msp"]), 1e-4);
    common::assert_close(
        "ODIN eps 0.002, shared pass",
        &out.scores[1],
        &flat(&exp["odin_t1000_eps0.002"]),
        1e-4,
    );
    let want = seed_probabilities("mahalanobis_layers_m0.001");
    common::assert_close(
        "-P(OOD), m = 0.001, shared pass",
        &out.scores[2],
        &want,
        1e-4,
    );

    // A file made for another model is refused, naming both.
    let mut other = params.clone();
    other.model.name = "BiT-S-R101x1".into();
    other.model.head_fingerprint = "fnv1a64:0000000000000000".into();
    other.save(&path).unwrap();
    let loaded = Mahalanobis::load(&path, m.as_ref());
    common::error_saying(loaded, &["BiT-S-R101x1", &m.info().name]);
}

/// Features far from the origin relative to their spread: the expanded
/// form f^T P f - 2 f^T P mu + mu^T P mu would lose most digits in f32.
#[test]
fn layer_score_keeps_the_direct_forms_precision() {
    let (k, d, b) = (50usize, 32usize, 8usize);
    let offset = 1.0e3;
    let noise = |i: usize| ((i as f64 * 12.9898).sin() * 43758.5453).fract();
    let means: Vec<f32> = (0..k * d).map(|i| (offset + noise(i)) as f32).collect();
    let feats: Vec<f32> = (0..b * d)
        .map(|i| (offset + noise(i + 7919)) as f32)
        .collect();
    // A well-conditioned SPD precision: A A^T / d + I.
    let a: Vec<f64> = (0..d * d).map(|i| noise(i + 104729)).collect();
    let mut p = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            p[i * d + j] = (0..d).map(|t| a[i * d + t] * a[j * d + t]).sum::<f64>() / d as f64
                + f64::from(u8::from(i == j));
        }
    }
    let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
    let g = GaussianLayers::new(
        &[Tensor::from_vec(means.clone(), (k, d), &Device::Cpu).unwrap()],
        &[Tensor::from_vec(p32.clone(), (d, d), &Device::Cpu).unwrap()],
        &Device::Cpu,
    )
    .unwrap();
    let got = flat(
        &g.layer_score(
            0,
            &Tensor::from_vec(feats.clone(), (b, d), &Device::Cpu).unwrap(),
        )
        .unwrap(),
    );
    // Direct form in f64 over every class, from the same f32 values.
    let want: Vec<f32> = (0..b)
        .map(|i| {
            (0..k)
                .map(|c| {
                    let diff: Vec<f64> = (0..d)
                        .map(|j| feats[i * d + j] as f64 - means[c * d + j] as f64)
                        .collect();
                    let mut q = 0.0;
                    for r in 0..d {
                        for s in 0..d {
                            q += diff[r] * p32[r * d + s] as f64 * diff[s];
                        }
                    }
                    -0.5 * q
                })
                .fold(f64::NEG_INFINITY, f64::max) as f32
        })
        .collect();
    common::assert_close("closest-class score", &got, &want, 1e-5);
}

/// The first `n` images of the shared ImageNet val sample whose class has at
/// least `per_class` images there, at `size` px, with their labels.
fn val_images(shared: &Path, n: usize, per_class: usize, size: usize) -> (Vec<f32>, Vec<usize>) {
    let dir = shared.join("data/imagenet-val");
    let list = std::fs::read_to_string(dir.join("val_list.txt")).unwrap();
    let entries: Vec<(&str, usize)> = list
        .lines()
        .map(|line| {
            let (file, label) = line.split_once(' ').unwrap();
            (file, label.trim().parse().unwrap())
        })
        .collect();
    let mut counts = HashMap::new();
    for (_, l) in &entries {
        *counts.entry(*l).or_insert(0usize) += 1;
    }
    let spec = InputSpec::half(size);
    let (mut data, mut labels) = (vec![], vec![]);
    for (file, label) in entries
        .iter()
        .filter(|(_, l)| counts[l] >= per_class)
        .take(n)
    {
        data.extend(to_input(&load_rgb(&dir.join(file)).unwrap(), &spec));
        labels.push(*label);
    }
    (data, labels)
}

#[test]
fn streaming_fit_equals_a_direct_computation_on_real_images() {
    let Some(shared) = common::shared() else {
        return;
    };
    let m = tiny(&shared);
    // Classes with several images, so that the class-centred features span
    // something; 32 px keeps the tiny network quick.
    let (n, size) = (240, 32);
    let (data, labels) = val_images(&shared, n, 3, size);
    let dims = m.info().tap_dims.clone();
    let mut fit = GaussianFit::new(&dims, 1000, &Device::Cpu).unwrap();
    let mut feats: Vec<Vec<f64>> = vec![vec![]; dims.len()];
    let per = 3 * size * size;
    for (chunk, lab) in data.chunks(per * 64).zip(labels.chunks(64)) {
        let x = Tensor::from_vec(chunk.to_vec(), (lab.len(), 3, size, size), &Device::Cpu).unwrap();
        let (_, taps) = m.forward_taps(&x).unwrap();
        fit.add(&taps, lab).unwrap();
        for (l, t) in taps.iter().enumerate() {
            feats[l].extend(flat(t).iter().map(|&v| v as f64));
        }
    }
    let got = fit.finish().unwrap();
    let mut classes: Vec<usize> = labels.clone();
    classes.sort_unstable();
    classes.dedup();
    for (l, &d) in dims.iter().enumerate() {
        let g = &got[l];
        assert_eq!(g.classes, classes);
        // Two passes: class means, then the explicitly centred features.
        let k = classes.len();
        let mut mean = vec![0f64; k * d];
        let mut count = vec![0f64; k];
        for (i, lab) in labels.iter().enumerate() {
            let c = classes.binary_search(lab).unwrap();
            count[c] += 1.0;
            for j in 0..d {
                mean[c * d + j] += feats[l][i * d + j];
            }
        }
        for c in 0..k {
            for j in 0..d {
                mean[c * d + j] /= count[c];
            }
        }
        let centred: Vec<f64> = (0..n * d)
            .map(|t| {
                let c = classes.binary_search(&labels[t / d]).unwrap();
                feats[l][t] - mean[c * d + t % d]
            })
            .collect();
        let x = Tensor::from_vec(centred, (n, d), &Device::Cpu).unwrap();
        let cov = (x.t().unwrap().matmul(&x).unwrap() / n as f64).unwrap();
        let cov: Vec<f64> = cov.flatten_all().unwrap().to_vec1().unwrap();
        let close = |what: &str, a: &[f64], b: &[f64], tol: f64| {
            let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f64, f64::max);
            assert!(
                worst <= tol * scale,
                "layer {l} {what}: {worst:e} vs {scale:e}"
            );
        };
        close("means", &g.means, &mean, 1e-12);
        close("covariance", &g.covariance, &cov, 1e-10);

        // The pseudo-inverse: rank min(d, N - K) (class centring removes one
        // dimension per class) and the Moore-Penrose conditions.
        if d > 512 {
            continue; // keeps the test to seconds
        }
        let (p, rank) = pinvh(&g.covariance, d).unwrap();
        eprintln!("layer {l}: dim {d}, rank {rank}, N - K = {}", n - k);
        assert_eq!(rank, d.min(n - k), "layer {l} rank");
        let s = Tensor::from_vec(g.covariance.clone(), (d, d), &Device::Cpu).unwrap();
        let pt = Tensor::from_vec(p.clone(), (d, d), &Device::Cpu).unwrap();
        let sps: Vec<f64> = s
            .matmul(&pt)
            .unwrap()
            .matmul(&s)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let psp: Vec<f64> = pt
            .matmul(&s)
            .unwrap()
            .matmul(&pt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        close("S P S = S", &sps, &g.covariance, 1e-8);
        close("P S P = P", &psp, &p, 1e-8);
    }
}

#[test]
fn fgsm_steps_up_the_loss_by_exactly_the_step() {
    let Some(shared) = common::shared() else {
        return;
    };
    let m = tiny(&shared);
    let (data, _) = val_images(&shared, 2, 1, 32);
    let labels = [1usize, 3];
    let x = Tensor::from_vec(data, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let spec = InputSpec::half(32);
    let adv = mahalanobis::fgsm(m.as_ref(), &x, &labels, 0.05, FgsmClamp::None, &spec).unwrap();
    let delta = flat(&(&adv - &x).unwrap());
    assert!(delta.iter().all(|d| (d.abs() - 0.05).abs() < 1e-6));
    let target = Tensor::new(&[1u32, 3], &Device::Cpu).unwrap();
    let loss = |t: &Tensor| -> f32 {
        candle_nn::loss::cross_entropy(&m.forward(t).unwrap().logits, &target)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    assert!(loss(&adv) > loss(&x));
    // The seed's clamp to [0, 1] in the normalized space.
    let unit = mahalanobis::fgsm(m.as_ref(), &x, &labels, 0.05, FgsmClamp::Unit, &spec).unwrap();
    let want: Vec<f32> = flat(&adv).iter().map(|v| v.clamp(0.0, 1.0)).collect();
    assert_eq!(flat(&unit), want);
}

// scikit-learn 1.9.1 reference, made with:
//   import numpy as np
//   from sklearn.linear_model import LogisticRegressionCV, LogisticRegression
//   i = np.arange(40, dtype=np.float64)
//   X = np.stack([2*np.sin(0.37*i), 5*np.cos(1.3*i+0.5)+0.1*i, (i*7 % 11)-5], 1)
//   y = (0.8*X[:,0] - 0.3*X[:,1] + 0.4*X[:,2] + 1.5*np.sin(2.9*i) > 0.2).astype(int)
//   r = LogisticRegressionCV().fit(X, y)        # r.scores_[1], r.C_, r.coef_, r.intercept_
//   t = LogisticRegression(C=r.C_[0], tol=1e-12, max_iter=100000).fit(X, y)
//   Q = [[0.5,-1.0,2.0],[-1.5,3.0,-4.0],[0.0,0.0,0.0]]; r.predict_proba(Q)[:,1], t.predict_proba(Q)[:,1]
//   for C in [1e-4, 1.0, 1e4]: LogisticRegression(C=C, tol=1e-12, max_iter=100000).fit(X, y)
//   StratifiedKFold(5).split(X, y)              # test folds
fn sklearn_problem() -> (Vec<Vec<f64>>, Vec<bool>) {
    let rows: Vec<Vec<f64>> = (0..40)
        .map(|i| {
            let f = i as f64;
            vec![
                2.0 * (0.37 * f).sin(),
                5.0 * (1.3 * f + 0.5).cos() + 0.1 * f,
                ((i * 7) % 11) as f64 - 5.0,
            ]
        })
        .collect();
    let y = rows
        .iter()
        .enumerate()
        .map(|(i, x)| 0.8 * x[0] - 0.3 * x[1] + 0.4 * x[2] + 1.5 * (2.9 * i as f64).sin() > 0.2)
        .collect();
    (rows, y)
}

#[test]
fn logistic_regression_cv_matches_scikit_learn() {
    let (rows, y) = sklearn_problem();
    let folds = logistic::stratified_folds(&y, 5);
    let sk_folds: [&[usize]; 5] = [
        &[0, 1, 2, 3, 4, 8, 10, 11],
        &[5, 6, 7, 9, 12, 13, 14, 15],
        &[16, 17, 18, 19, 20, 21, 23, 24],
        &[22, 25, 26, 27, 28, 29, 30, 31],
        &[32, 33, 34, 35, 36, 37, 38, 39],
    ];
    for (f, members) in sk_folds.iter().enumerate() {
        let ours: Vec<usize> = (0..40).filter(|&i| folds[i] == f).collect();
        assert_eq!(&ours, members, "fold {f}");
    }

    let cv = logistic::fit_cv(&rows, &y).unwrap();
    let sk_scores = [
        [
            0.875, 0.875, 1.0, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875,
        ],
        [
            0.5, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625,
        ],
        [
            0.5, 0.625, 0.875, 0.75, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875,
        ],
        [
            0.5, 0.5, 0.875, 0.875, 1.0, 0.875, 0.875, 0.875, 0.875, 0.875,
        ],
        [
            0.5, 0.625, 0.625, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875,
        ],
    ];
    for (f, row) in sk_scores.iter().enumerate() {
        assert_eq!(cv.scores[f], row.to_vec(), "fold {f} accuracies");
    }
    assert!((cv.c - 0.3593813663804626).abs() < 1e-15);
    // scikit-learn's L-BFGS stops at gradient 1e-4; its tight solution is the
    // optimum we solve for.
    let near = |what: &str, got: &[f64], want: &[f64], tol: f64| {
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= tol * w.abs().max(1e-3),
                "{what}: {got:?} vs {want:?}"
            );
        }
    };
    let mut ours = cv.model.weights.clone();
    ours.push(cv.model.bias);
    near(
        "CV refit vs sklearn tight",
        &ours,
        &[
            0.9699555997233309,
            -0.38017511254511294,
            0.3849083435097188,
            0.44978007632993333,
        ],
        1e-5,
    );
    near(
        "CV refit vs sklearn default",
        &ours,
        &[
            0.9699635199418054,
            -0.3801707258111035,
            0.3849112850341128,
            0.4497705346382143,
        ],
        1e-4,
    );
    let q = [[0.5, -1.0, 2.0], [-1.5, 3.0, -4.0], [0.0, 0.0, 0.0]];
    let proba: Vec<f64> = q.iter().map(|x| cv.model.probability(x)).collect();
    near(
        "probabilities vs sklearn tight",
        &proba,
        &[0.88941206783126, 0.0244752761097818, 0.6105869438540455],
        1e-6,
    );
    near(
        "probabilities vs sklearn default",
        &proba,
        &[0.8894116660108738, 0.02447479792309193, 0.610584675118575],
        1e-4,
    );
    for (c, want) in [
        (
            1e-4,
            [
                0.001476454378875631,
                -0.0032892405499526938,
                0.00257646309083055,
                -0.09370325623024324,
            ],
        ),
        (
            1.0,
            [
                1.2333444223207448,
                -0.43997373958657143,
                0.4447629662271386,
                0.5080660838747514,
            ],
        ),
        (
            1e4,
            [
                1.5567627879103247,
                -0.5178575894133657,
                0.5205331621507004,
                0.586543954210355,
            ],
        ),
    ] {
        let m = logistic::fit(&rows, &y, c).unwrap();
        let mut got = m.weights.clone();
        got.push(m.bias);
        near(&format!("C = {c}"), &got, &want, 1e-5);
    }
}

#[test]
fn the_lowest_validation_fpr_wins_and_ties_go_first() {
    // Two magnitudes whose layer scores are identical up to a shift, so the
    // regressions rank alike and the FPR95 ties: the first must win.
    let table = |shift: f64, ood: bool| -> Vec<Vec<f64>> {
        (0..40)
            .map(|i| {
                let t = i as f64;
                let base = if ood { -30.0 } else { -10.0 };
                vec![
                    base + (t * 0.7).sin() * 8.0 + shift,
                    base * 2.0 + (t * 1.3).cos() * 9.0,
                ]
            })
            .collect()
    };
    let mags = [0.0, 0.01];
    let tr_id = vec![table(0.0, false), table(0.0, false)];
    let tr_ood = vec![table(0.0, true), table(0.0, true)];
    let tuned = mahalanobis::choose_magnitude(&mags, &tr_id, &tr_ood, &tr_id, &tr_ood).unwrap();
    assert_eq!(tuned.trials.len(), 2);
    assert_eq!(tuned.trials[0].val_fpr95, tuned.trials[1].val_fpr95);
    assert_eq!(tuned.magnitude, 0.0);
    // A magnitude that separates perfectly beats one that does not.
    let mixed = vec![table(0.0, false), table(0.0, false)];
    let ood = vec![table(0.0, false), table(0.0, true)];
    let tuned = mahalanobis::choose_magnitude(&mags, &mixed, &ood, &mixed, &ood).unwrap();
    assert_eq!(tuned.magnitude, 0.01);
    assert_eq!(tuned.trials[1].val_fpr95, 0.0);
}

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

// Raw Mahalanobis layer scores span -10 to -2000 and the regression's
// weights come out near 1e-2..1e-5: the scale where first-order solvers
// crawl. The reference is scikit-learn 1.9.1's exact Newton solver:
//   i = np.arange(60.); ood = i % 3 == 0
//   X = np.stack([-12-40*abs(sin(.7i))-30*ood, -15-15*abs(cos(1.1i))-10*ood,
//                 -30-25*abs(sin(.3i+1))-20*ood, -130-90*abs(cos(.5i))-60*ood,
//                 -800-1000*abs(sin(.13i+.4))-700*ood], 1)
//   LogisticRegression(C=C, solver='newton-cholesky', tol=1e-14).fit(X, ood)
#[test]
fn logistic_regression_solves_mahalanobis_scaled_features() {
    let rows: Vec<Vec<f64>> = (0..60)
        .map(|i| {
            let f = i as f64;
            let o = if i % 3 == 0 { 1.0 } else { 0.0 };
            vec![
                -12.0 - 40.0 * (0.7 * f).sin().abs() - 30.0 * o,
                -15.0 - 15.0 * (1.1 * f).cos().abs() - 10.0 * o,
                -30.0 - 25.0 * (0.3 * f + 1.0).sin().abs() - 20.0 * o,
                -130.0 - 90.0 * (0.5 * f).cos().abs() - 60.0 * o,
                -800.0 - 1000.0 * (0.13 * f + 0.4).sin().abs() - 700.0 * o,
            ]
        })
        .collect();
    let y: Vec<bool> = (0..60).map(|i| i % 3 == 0).collect();
    for (c, want) in [
        (
            1e-4,
            [
                -0.008664596421960408,
                -0.0035009201142178867,
                -0.007566403339018599,
                -0.018012876883657825,
                -0.006933059724943804,
                -17.904745169385624,
            ],
        ),
        (
            0.046415888336127774,
            [
                -0.1114230411695602,
                -0.07037754308126973,
                -0.10512624188169956,
                -0.120945377908814,
                -0.008803147661215318,
                -56.95555313956032,
            ],
        ),
        (
            1e4,
            [
                -0.4659371501482114,
                -0.4164168087617854,
                -0.5244802065235651,
                -0.4615570109014246,
                -0.029603163849603847,
                -225.0476991544262,
            ],
        ),
    ] {
        let m = logistic::fit(&rows, &y, c).unwrap();
        let mut got = m.weights.clone();
        got.push(m.bias);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs(),
                "C = {c}: {got:?} vs {want:?}"
            );
        }
    }
}

/// Mahalanobis with the parameters file `path`.
fn mahalanobis_method(path: &std::path::Path) -> Method {
    let mut m = Method::from_key("mahalanobis").unwrap();
    m.set("params", path.to_str().unwrap()).unwrap();
    m
}
