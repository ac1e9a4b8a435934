//! `gradnorm-tui selftest --fixtures DIR [--device D]` (hidden from
//! `--help`): the parity checks of tests/it/bit_model.rs, tests/it/scores.rs
//! and tests/it/mahalanobis/ against the seed's outputs on the tiny BiT
//! fixture, run on any device from the release binary, since the GPU machine
//! has no Rust toolchain. DIR holds `tiny.pth.tar` and `tiny_expected.safetensors`
//! (../shared/fixtures/bit). Prints each check's worst error and PASS or
//! FAIL; exits 1 when any check fails.

use crate::cli::SelftestArgs;
use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use gradnorm_engine::model;
use gradnorm_engine::score::mahalanobis::GaussianLayers;
use gradnorm_engine::score::{Method, Scorer};
use std::collections::HashMap;
use std::process::ExitCode;

/// The tests' tolerance: |got - want| <= TOL * (|want| + max |want|).
const TOL: f32 = 1e-4;

#[derive(Default)]
struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    /// The worst element-wise error scaled as `tests/common::assert_close`
    /// does, printed with PASS or FAIL.
    fn close(&mut self, what: &str, got: &Tensor, want: &Tensor, tol: f32) -> anyhow::Result<()> {
        let got = flat(got)?;
        let want = flat(want)?;
        let worst = if got.len() != want.len() {
            f32::INFINITY
        } else {
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            got.iter()
                .zip(&want)
                .map(|(g, w)| {
                    let e = (g - w).abs() / (w.abs() + scale).max(f32::MIN_POSITIVE);
                    // NaN counts as a failure.
                    if e.is_nan() {
                        f32::INFINITY
                    } else {
                        e
                    }
                })
                .fold(0f32, f32::max)
        };
        self.record(
            what,
            worst <= tol,
            format!("worst {worst:.2e} (tolerance {tol:.0e})"),
        );
        Ok(())
    }

    fn record(&mut self, what: &str, pass: bool, detail: String) {
        println!(
            "{}  {what:<34} {detail}",
            if pass { "PASS" } else { "FAIL" }
        );
        if pass {
            self.passed += 1;
        } else {
            self.failed.push(what.to_string());
        }
    }
}

fn flat(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

pub fn run(args: &SelftestArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let device = gradnorm_engine::device::open(args.device)?;
    let ckpt = args.fixtures.join("tiny.pth.tar");
    let exp_path = args.fixtures.join("tiny_expected.safetensors");
    let exp = candle_core::safetensors::load(&exp_path, &Device::Cpu)
        .with_context(|| format!("reading {}", exp_path.display()))?;
    let get = |name: &str| -> anyhow::Result<&Tensor> {
        exp.get(name)
            .with_context(|| format!("{} has no tensor `{name}`", exp_path.display()))
    };
    let m = model::load_checkpoint(&ckpt, None, &device, DType::F32)?;
    println!(
        "selftest: {} on {} against {}",
        m.info().name,
        gradnorm_engine::device::device_name(&device),
        args.fixtures.display()
    );
    let x = get("input")?.to_device(&device)?;
    let mut checks = Checks::default();

    // tests/it/bit_model.rs: outputs and taps, all at once and one by one.
    let (out, taps) = m.forward_taps(&x)?;
    checks.close("logits", &out.logits, get("logits")?, TOL)?;
    checks.close("feature", &out.feature, get("feature")?, TOL)?;
    for (l, tap) in taps.iter().enumerate() {
        checks.close(&format!("tap {l}"), tap, get(&format!("tap{l}"))?, TOL)?;
        let alone = m.forward_tap(&x, l)?;
        checks.close(&format!("tap {l} alone"), &alone, tap, TOL)?;
    }
    let plain = m.forward(&x)?;
    checks.close("forward = forward_taps", &plain.logits, &out.logits, TOL)?;

    // tests/it/scores.rs: every logit score, ODIN's input perturbation.
    let methods = [
        ("msp", Method::from_key("msp").unwrap()),
        (
            "energy",
            Method::with_params("energy", &[("temperature", 1.0)]).unwrap(),
        ),
        (
            "odin_t1000_eps0",
            Method::with_params("odin", &[("temperature", 1000.0), ("epsilon", 0.0)]).unwrap(),
        ),
        (
            "odin_t1000_eps0.002",
            Method::with_params("odin", &[("temperature", 1000.0), ("epsilon", 0.002)]).unwrap(),
        ),
        (
            "gradnorm_t1",
            Method::with_params("gradnorm", &[("temperature", 1.0)]).unwrap(),
        ),
        (
            "gradnorm_t2",
            Method::with_params("gradnorm", &[("temperature", 2.0)]).unwrap(),
        ),
    ];
    let list: Vec<Method> = methods.iter().map(|(_, m)| m.clone()).collect();
    let scorer = Scorer::new(&list, m.as_ref())?;
    let scores = scorer.score(m.as_ref(), &x)?;
    for (k, (key, _)) in methods.iter().enumerate() {
        let got = Tensor::new(scores.scores[k].as_slice(), &Device::Cpu)?;
        checks.close(&format!("score {key}"), &got, get(key)?, TOL)?;
    }

    // tests/it/mahalanobis/seed.rs: layer scores without and with the nudge.
    let (means, precisions) = fixture_gaussians(&exp, &exp_path)?;
    let g = GaussianLayers::new(&means, &precisions, &device)?;
    let layers = g.scores(m.as_ref(), &x, &[0.0, 0.001])?;
    for (s, key) in layers
        .iter()
        .zip(["mahalanobis_layers_m0.0", "mahalanobis_layers_m0.001"])
    {
        checks.close(key, s, get(key)?, TOL)?;
    }

    if checks.failed.is_empty() {
        println!("selftest: all {} checks PASS", checks.passed);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "selftest: {} of {} checks FAIL: {}",
            checks.failed.len(),
            checks.passed + checks.failed.len(),
            checks.failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// The fixture's class means and precisions (stored as diagonal + low-rank
/// factor: P = F F^T + diag), as tests/it/mahalanobis/ builds them.
fn fixture_gaussians(
    exp: &HashMap<String, Tensor>,
    path: &std::path::Path,
) -> anyhow::Result<(Vec<Tensor>, Vec<Tensor>)> {
    let get = |name: String| -> anyhow::Result<&Tensor> {
        exp.get(&name)
            .with_context(|| format!("{} has no tensor `{name}`", path.display()))
    };
    let (mut means, mut precisions) = (Vec::new(), Vec::new());
    for l in 0..5 {
        means.push(get(format!("maha_mean{l}"))?.clone());
        let diag = get(format!("maha_precision_diag{l}"))?.to_dtype(DType::F64)?;
        let f = get(format!("maha_precision_factor{l}"))?.to_dtype(DType::F64)?;
        let d = diag.dim(0)?;
        let diag = Tensor::eye(d, DType::F64, &Device::Cpu)?.broadcast_mul(&diag.unsqueeze(0)?)?;
        let p = (f.matmul(&f.t()?)? + diag)?;
        precisions.push(p.to_dtype(DType::F32)?);
    }
    Ok((means, precisions))
}
