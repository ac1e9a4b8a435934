//! Rules decided once: which GradNorm the anatomy follows (the scorer, the
//! TUI's analysis and the core agree, with a sweep over its temperature),
//! and one default method set (eval, bench and the TUI's form).

use crate::common;
use gradnorm_core::method::{anatomy_gradnorm, anatomy_temperature, registry, Method};
use gradnorm_core::run::{Event, RunResults};
use gradnorm_engine::score::Scorer;
use gradnorm_tui::tui::analysis::Snapshot;
use gradnorm_tui::tui::SetupState;
use std::sync::Arc;

/// `msp` then a sweep `gradnorm:temperature=T1|T2`.
fn sweep(temperatures: &str) -> Vec<Method> {
    let mut methods = Method::parse_spec("msp", &[]).unwrap();
    methods
        .extend(Method::parse_spec(&format!("gradnorm:temperature={temperatures}"), &[]).unwrap());
    methods
}

#[test]
fn the_anatomy_follows_the_first_gradnorm_everywhere() {
    for (spec, first) in [("1|2", 1.0), ("2|1", 2.0)] {
        let methods = sweep(spec);
        assert_eq!(anatomy_gradnorm(&methods), Some(1), "{spec}");
        assert_eq!(anatomy_temperature(&methods), first, "{spec}");

        // The TUI's analysis reads the run's methods the same way.
        let mut info = (*crate::tui::synthetic::info()).clone();
        info.methods = methods.clone();
        let mut results = RunResults::new();
        results.apply(Event::Started(Arc::new(info)));
        assert_eq!(Snapshot::of(&results).temperature, first, "{spec}");

        // The scorer's factors multiply back to that GradNorm's score, not
        // the other one's: ||h||_1 * sum|C p - 1| / T.
        let Some(shared) = common::shared() else {
            continue;
        };
        let m = common::load_cpu(&shared.join("fixtures/bit/tiny.pth.tar"));
        let exp = candle_core::safetensors::load(
            shared.join("fixtures/bit/tiny_expected.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let out = Scorer::new(&methods, m.as_ref())
            .unwrap()
            .score(m.as_ref(), &exp["input"])
            .unwrap();
        for i in 0..out.softmax_term.len() {
            let product = (out.softmax_term[i] * out.feature_l1[i]) as f64 / first;
            let (followed, other) = (out.scores[1][i] as f64, out.scores[2][i] as f64);
            assert!(
                (product - followed).abs() <= 1e-5 * followed,
                "{spec} image {i}"
            );
            assert!((product - other).abs() > 1e-3 * other, "{spec} image {i}");
        }
    }
    // No GradNorm in the run: its registry default.
    let none = Method::parse_spec("msp", &[]).unwrap();
    assert_eq!(anatomy_gradnorm(&none), None);
    assert_eq!(
        anatomy_temperature(&none),
        Method::from_key("gradnorm")
            .unwrap()
            .number("temperature")
            .unwrap()
    );
}

#[test]
fn the_anatomy_skips_gradnorms_its_factors_do_not_multiply_to() {
    // ||h||_1 * sum|C p - 1| / T is the paper's GradNorm only: the head's
    // weight, L1, the uniform target.
    let parse = |spec: &str| Method::parse_spec(spec, &[]).unwrap();
    let mut methods = parse("gradnorm:norm=l2|linf");
    methods.extend(parse("gradnorm:target=predicted"));
    assert_eq!(anatomy_gradnorm(&methods), None);
    methods.extend(parse("gradnorm:temperature=3"));
    assert_eq!(anatomy_gradnorm(&methods), Some(3));
    assert_eq!(anatomy_temperature(&methods), 3.0);
    let layer = parse("gradnorm:layer=body.block4.unit01.conv3");
    assert_eq!(anatomy_gradnorm(&layer), None);
}

#[test]
fn eval_bench_and_the_form_start_from_one_method_set() {
    let want: Vec<&str> = registry::DEFAULT_METHODS.to_vec();
    // The form ticks the registry's defaults.
    let form = SetupState::new(Vec::new(), Vec::new());
    let ticked: Vec<&str> = form
        .methods
        .iter()
        .filter(|m| m.enabled)
        .map(|m| m.method.key())
        .collect();
    assert_eq!(ticked, want);
    // `eval` without --methods runs them (summary.json's method list).
    let Some(shared) = common::shared() else {
        return;
    };
    let out_dir = tempfile::tempdir().unwrap();
    let out = crate::eval::eval_tiny(&shared, &["--limit", "4"])
        .arg("--ood")
        .arg(format!(
            "textures={}",
            shared.join("data/ood/textures").display()
        ))
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .unwrap();
    common::assert_success(&out);
    let summary = common::read_json(&out_dir.path().join("summary.json"));
    let ran: Vec<&str> = summary["methods"]
        .as_object()
        .expect("summary.json keys its methods")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(ran, want, "{summary}");
    // `bench` without --methods times the same set.
    let out = assert_cmd::Command::cargo_bin("gradnorm-tui")
        .unwrap()
        .args(["bench", "--json", "--device", "cpu", "--image-size", "64"])
        .args(["--batch", "2", "--images", "2", "--source"])
        .arg(shared.join("data/imagenet-val/images"))
        .arg("--checkpoint")
        .arg(shared.join("fixtures/bit/tiny.pth.tar"))
        .output()
        .unwrap();
    let v = common::success_json(&out);
    assert_eq!(v["methods"], serde_json::json!(want), "{v}");
}
