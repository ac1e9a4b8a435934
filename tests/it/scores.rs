//! Scores against the seed's outputs on the tiny BiT fixture, and GradNorm's
//! closed form against candle autograd of its defining loss.

use crate::common;

use candle_core::{Device, Tensor, Var, D};
use gradnorm_engine::model::Classifier;
use gradnorm_engine::score::{logits, Method, Scorer};
use std::collections::HashMap;

fn fixture() -> Option<(Box<dyn Classifier>, HashMap<String, Tensor>)> {
    let shared = common::shared()?;
    let m = common::load_cpu(&shared.join("fixtures/bit/tiny.pth.tar"));
    let exp = candle_core::safetensors::load(
        shared.join("fixtures/bit/tiny_expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    Some((m, exp))
}

fn vec1(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn scores_equal_the_seeds() {
    let Some((m, exp)) = fixture() else { return };
    let methods = vec![
        Method::from_key("msp").unwrap(),
        Method::with_params("energy", &[("temperature", 1.0)]).unwrap(),
        Method::with_params("odin", &[("temperature", 1000.0), ("epsilon", 0.0)]).unwrap(),
        Method::with_params("odin", &[("temperature", 1000.0), ("epsilon", 0.002)]).unwrap(),
        Method::with_params("gradnorm", &[("temperature", 1.0)]).unwrap(),
        Method::with_params("gradnorm", &[("temperature", 2.0)]).unwrap(),
    ];
    let keys = [
        "msp",
        "energy",
        "odin_t1000_eps0",
        "odin_t1000_eps0.002",
        "gradnorm_t1",
        "gradnorm_t2",
    ];
    let scorer = Scorer::new(&methods, m.as_ref()).unwrap();
    let out = scorer.score(m.as_ref(), &exp["input"]).unwrap();
    for (k, key) in keys.iter().enumerate() {
        common::assert_close(key, &out.scores[k], &vec1(&exp[*key]), 1e-4);
    }
    // The perturbation must matter: ODIN with eps > 0 differs from eps = 0.
    assert_ne!(out.scores[2], out.scores[3]);
    // The GradNorm factors multiply back to the score of the GradNorm the
    // anatomy follows: the first (T = 1; see defaults.rs).
    for i in 0..3 {
        let product = out.softmax_term[i] * out.feature_l1[i] / 1.0;
        assert!((product - out.scores[4][i]).abs() <= 1e-5 * out.scores[4][i]);
    }
}

/// sum over every entry of |d/dW sum_c -log softmax((W h + b) / T)_c|, per
/// image, by candle autograd (the seed's definition, batch size 1).
fn gradnorm_autograd(w: &Tensor, b: &Tensor, h: &Tensor, t: f64) -> Vec<f32> {
    let n = h.dim(0).unwrap();
    (0..n)
        .map(|i| {
            let wv = Var::from_tensor(w).unwrap();
            let hi = h.narrow(0, i, 1).unwrap();
            let logits = hi
                .matmul(&wv.as_tensor().t().unwrap())
                .unwrap()
                .broadcast_add(b)
                .unwrap();
            let logp = candle_nn::ops::log_softmax(&(logits / t).unwrap(), D::Minus1).unwrap();
            let loss = logp.neg().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let gw = grads.get(wv.as_tensor()).unwrap();
            gw.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn gradnorm_closed_form_equals_autograd_on_the_fixture() {
    let Some((m, exp)) = fixture() else { return };
    let out = m.forward(&exp["input"]).unwrap();
    let (w, b) = m.head();
    for t in [1.0, 2.0, 0.5] {
        let closed = vec1(&logits::gradnorm(&out.logits, &out.feature, t).unwrap());
        let auto = gradnorm_autograd(w, b, &out.feature, t);
        common::assert_close(&format!("gradnorm T={t}"), &closed, &auto, 1e-5);
    }
}

#[test]
fn gradnorm_closed_form_equals_autograd_on_random_heads() {
    for (seed, (c, d, n)) in [(10, 7, 4), (1000, 64, 3), (3, 2048, 2)]
        .into_iter()
        .enumerate()
    {
        let seed = 3 * seed as u64;
        let w = common::randn(seed, 0., 0.3, &[c, d]);
        let b = common::randn(seed + 1, 0., 1., &[c]);
        let h = common::randn(seed + 2, 0., 1., &[n, d]).relu().unwrap();
        let logits = h
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        for t in [1.0, 3.0] {
            let closed = vec1(&logits::gradnorm(&logits, &h, t).unwrap());
            let auto = gradnorm_autograd(&w, &b, &h, t);
            common::assert_close(
                &format!("random gradnorm C={c} D={d} T={t}"),
                &closed,
                &auto,
                1e-4,
            );
        }
    }
}

#[test]
fn logit_scores_follow_their_definitions() {
    let logits = Tensor::new(&[[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
    let msp = vec1(&logits::msp(&logits).unwrap());
    let e = (1f32.exp() + 2f32.exp() + 3f32.exp()).ln();
    assert!((msp[0] - 3f32.exp() / e.exp()).abs() < 1e-6);
    assert!((msp[1] - 1.0 / 3.0).abs() < 1e-6);
    let energy = vec1(&logits::energy(&logits, 1.0).unwrap());
    assert!((energy[0] - e).abs() < 1e-5);
    assert!((energy[1] - 3f32.ln()).abs() < 1e-6);
    let energy_t = vec1(&logits::energy(&logits, 2.0).unwrap());
    let e2 = 2.0 * ((0.5f32).exp() + 1f32.exp() + 1.5f32.exp()).ln();
    assert!((energy_t[0] - e2).abs() < 1e-5);
    assert_eq!(vec1(&logits::max_logit(&logits).unwrap()), vec![3.0, 0.0]);
}
