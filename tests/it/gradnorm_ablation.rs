//! GradNorm's ablations (norm, target, temperature) against the paper's loop
//! with only that choice changed: tests/fixtures/gradnorm_ablation/make.py
//! runs it on the shared BiT and torchvision fixtures and the shared
//! EfficientNet-Lite0 (BatchNorm folded at load here, unfolded there).

use crate::common;

use candle_core::{DType, Device, Tensor};
use gradnorm_engine::model::{self, Classifier};
use gradnorm_engine::score::{Method, Scorer};
use std::path::{Path, PathBuf};

/// One model of the fixtures: (fixture json, checkpoint, --model, inputs:
/// the shared fixture's, or make.py's formula input).
struct Case {
    json: &'static str,
    checkpoint: &'static str,
    model: Option<&'static str>,
    expected: Option<&'static str>,
}

const CASES: [Case; 4] = [
    Case {
        json: "bit_tiny.json",
        checkpoint: "fixtures/bit/tiny.pth.tar",
        model: None,
        expected: Some("fixtures/bit/tiny_expected.safetensors"),
    },
    Case {
        json: "resnet_bottleneck.json",
        checkpoint: "fixtures/torchvision/resnet_bottleneck.pth",
        model: Some("resnet"),
        expected: Some("fixtures/torchvision/resnet_bottleneck_expected.safetensors"),
    },
    Case {
        json: "vit_tiny.json",
        checkpoint: "fixtures/torchvision/vit_tiny.pth",
        model: Some("vit:heads=4"),
        expected: Some("fixtures/torchvision/vit_tiny_expected.safetensors"),
    },
    Case {
        json: "efficientnet_lite0.json",
        checkpoint: "models/efficientnet-lite0/efficientnet-lite0.safetensors",
        model: None,
        expected: None,
    },
];

/// make.py's `lite_input`: sin(0.0123 i) * 1.5 over the flat index of
/// [3, 3, 64, 64], as f32.
fn formula_input() -> Tensor {
    let shape = (3, 3, 64, 64);
    let n = 3 * 3 * 64 * 64;
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as f64 * 0.0123).sin() * 1.5) as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gradnorm_ablation")
}

fn load(shared: &Path, case: &Case) -> (Box<dyn Classifier>, Tensor, serde_json::Value) {
    let path = shared.join(case.checkpoint);
    let m = model::load_checkpoint(&path, case.model, &Device::Cpu, DType::F32)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let x = match case.expected {
        Some(e) => {
            candle_core::safetensors::load(shared.join(e), &Device::Cpu).unwrap()["input"].clone()
        }
        None => formula_input(),
    };
    let doc = common::read_json(&fixtures().join(case.json));
    (m, x, doc)
}

/// The fixture's cases whose layer `pick` accepts, as (method spec, scores).
fn specs(doc: &serde_json::Value, pick: impl Fn(usize) -> bool) -> Vec<(String, Vec<f32>)> {
    let head = doc["cases"][0]["layer"].as_str().unwrap().to_string();
    let mut layers: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for c in doc["cases"].as_array().unwrap() {
        let layer = c["layer"].as_str().unwrap().to_string();
        if !layers.contains(&layer) {
            layers.push(layer.clone());
        }
        if !pick(layers.len() - 1) {
            continue;
        }
        let mut spec = format!(
            "gradnorm:temperature={}:norm={}:target={}",
            c["temperature"],
            c["norm"].as_str().unwrap(),
            c["target"].as_str().unwrap()
        );
        if layer != head {
            spec.push_str(&format!(":layer={layer}"));
        }
        let scores = c["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        out.push((spec, scores));
    }
    out
}

fn check(pick: impl Fn(usize) -> bool + Copy) {
    let Some(shared) = common::shared() else {
        return;
    };
    for case in &CASES {
        let (m, x, doc) = load(&shared, case);
        let specs = specs(&doc, pick);
        let methods: Vec<Method> = specs
            .iter()
            .map(|(s, _)| Method::parse_spec(s, &[]).unwrap().remove(0))
            .collect();
        let scorer = Scorer::new(&methods, m.as_ref()).unwrap();
        let out = scorer.score(m.as_ref(), &x).unwrap();
        for ((spec, want), got) in specs.iter().zip(&out.scores) {
            common::assert_close(&format!("{}: {spec}", case.json), got, want, 1e-4);
        }
    }
}

#[test]
fn head_norms_targets_and_temperatures_equal_the_papers_loop() {
    check(|layer| layer == 0);
}

#[test]
fn earlier_layers_norms_and_targets_equal_the_papers_loop() {
    check(|layer| layer > 0);
}

#[test]
fn the_layer_list_has_every_weight_layer_and_the_head_last() {
    let Some(shared) = common::shared() else {
        return;
    };
    for case in &CASES {
        let (m, _, doc) = load(&shared, case);
        let layers = gradnorm_engine::model::probe::weight_layers(m.as_ref()).unwrap();
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        let head = doc["cases"][0]["layer"].as_str().unwrap();
        assert_eq!(names.last(), Some(&head), "{}", case.json);
        for c in doc["cases"].as_array().unwrap() {
            let layer = c["layer"].as_str().unwrap();
            assert!(
                names.contains(&layer),
                "{}: {layer} not in {names:?}",
                case.json
            );
        }
        // Each listed weight is a checkpoint tensor of that shape.
        let ckpt = gradnorm_engine::weights::read(&shared.join(case.checkpoint)).unwrap();
        for l in &layers {
            let t = &ckpt.tensors[&format!("{}.weight", l.name)];
            assert_eq!(t.dims(), l.shape.as_slice(), "{}", l.name);
        }
    }
}

#[test]
fn a_bad_layer_is_an_error_naming_the_parameter_and_close_names() {
    let Some(shared) = common::shared() else {
        return;
    };
    let (m, _, _) = load(&shared, &CASES[1]);
    for (spec, needles) in [
        (
            "gradnorm:layer=layer4.0.conv9",
            &[
                "gradnorm: layer `layer4.0.conv9`",
                "layer4.0.conv1",
                "layers",
            ][..],
        ),
        // A module with no weight of its own, and a BatchNorm's weight.
        (
            "gradnorm:layer=layer4.0",
            &["gradnorm: layer `layer4.0`"][..],
        ),
        (
            "gradnorm:layer=layer4.0.bn1",
            &["gradnorm: layer `layer4.0.bn1`", "layer4.0.conv1"][..],
        ),
    ] {
        let methods = Method::parse_spec(spec, &[]).unwrap();
        common::error_saying(Scorer::new(&methods, m.as_ref()), needles);
    }
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_gradnorm-tui"))
}

#[test]
fn the_layers_command_lists_names_shapes_and_counts() {
    let Some(shared) = common::shared() else {
        return;
    };
    let ckpt = shared.join("fixtures/bit/tiny.pth.tar");
    let out = bin()
        .args(["layers", "--device", "cpu", "--json", "--checkpoint"])
        .arg(&ckpt)
        .output()
        .unwrap();
    let text = common::success_stdout(&out);
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The root, four units of three convolutions and a projection, the head.
    assert_eq!(rows.len(), 1 + 4 * 4 + 1, "{text}");
    assert_eq!(rows[0]["name"], "root.conv");
    assert_eq!(rows[0]["shape"], serde_json::json!([64, 3, 7, 7]));
    assert_eq!(rows[0]["parameters"], 64 * 3 * 7 * 7);
    assert_eq!(rows.last().unwrap()["name"], "head.conv");
}
