//! Layer scores against the paper's code on the tiny BiT fixture, and the
//! precision of the direct form.

use super::*;

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

/// Mahalanobis with the parameters file `path`.
fn mahalanobis_method(path: &std::path::Path) -> Method {
    let mut m = Method::from_key("mahalanobis").unwrap();
    m.set("params", path.to_str().unwrap()).unwrap();
    m
}
