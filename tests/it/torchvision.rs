//! torchvision's ResNet and ViT against `../shared/fixtures/torchvision`
//! (made with torchvision's own model code): the architectures' tensor
//! names, shapes and parameter counts; random-weight checkpoints in
//! torchvision's `.pth` format, their outputs and the paper's scores; image
//! files through decoding, torchvision's eval transform and the scores.

use crate::common;

use candle_core::{DType, Device, Tensor, Var};
use gradnorm_engine::data::image::{load_rgb, to_input};
use gradnorm_engine::model::params::TorchvisionArch;
use gradnorm_engine::model::{self, Classifier, Family, Preprocess};
use gradnorm_engine::model::{resnet, vit};
use gradnorm_engine::score::{Method, Scorer};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn dir() -> Option<PathBuf> {
    Some(common::shared()?.join("fixtures/torchvision"))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn vec1(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The fixture's cases: (key, model name for `--model`).
const CASES: [(&str, &str); 3] = [
    ("resnet_bottleneck", "resnet"),
    ("resnet_basic", "resnet"),
    // Heads are not in a state dict; the tiny ViT has 4 of width 16.
    ("vit_tiny", "vit:heads=4"),
];

fn load(dir: &Path, key: &str, name: &str) -> Box<dyn Classifier> {
    let index = json(&dir.join("index.json"));
    let file = index[key]["checkpoint"].as_str().unwrap();
    model::load_checkpoint(&dir.join(file), Some(name), &Device::Cpu, DType::F32).unwrap()
}

#[test]
fn our_models_build_torchvisions_tensors() {
    let Some(dir) = dir() else { return };
    let variants = json(&dir.join("variants.json"));
    for (key, v) in variants.as_object().unwrap() {
        let want: Vec<(String, Vec<usize>)> = v["tensors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, s)| {
                let shape = s.as_array().unwrap().iter();
                (
                    n.clone(),
                    shape.map(|d| d.as_u64().unwrap() as usize).collect(),
                )
            })
            .collect();
        let (got, params) = if key.starts_with("resnet") {
            let cfg = resnet::variant(key).unwrap();
            (cfg.state_dict_shapes().unwrap(), cfg.num_params().unwrap())
        } else {
            let cfg = vit::variant(key).unwrap();
            (cfg.tensor_shapes().unwrap(), cfg.num_params().unwrap())
        };
        assert_eq!(got, want, "{key}: tensor names, shapes or order differ");
        assert_eq!(
            params as u64,
            v["num_parameters"].as_u64().unwrap(),
            "{key}"
        );
        // The fixture counts the state dict's float tensors.
        let state: usize = got
            .iter()
            .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(state as u64, v["num_params"].as_u64().unwrap(), "{key}");
    }
    assert_eq!(
        resnet::variant("resnet50").unwrap().num_params().unwrap(),
        25_557_032
    );
    assert_eq!(
        vit::variant("vit_b_16").unwrap().num_params().unwrap(),
        86_567_656
    );
    // torchvision's builders counted on the meta device (PyTorch 2.15).
    for (name, params, heads) in [("vit_l_32", 306_535_400, 16), ("vit_h_14", 632_045_800, 16)] {
        let cfg = vit::variant(name).unwrap();
        assert_eq!(
            (cfg.num_params().unwrap(), cfg.num_heads),
            (params, heads),
            "{name}"
        );
    }
}

/// A ViT's heads are not in its state dict: a published width takes
/// torchvision's (ViT-H: 16 heads of 80, not width / 64 = 20), any other
/// width is refused with the name that sets them, never guessed.
#[test]
fn a_vits_heads_are_published_or_named_never_guessed() {
    let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
    // What `infer` reads: patch and width, tokens, depth, MLP width, classes.
    let state = |width: usize, patch: usize| {
        let mut t = std::collections::HashMap::new();
        t.insert(
            "conv_proj.weight".to_string(),
            zeros(&[width, 3, patch, patch]),
        );
        t.insert("encoder.pos_embedding".to_string(), zeros(&[1, 17, width]));
        t.insert(
            "encoder.layers.encoder_layer_0.ln_1.weight".to_string(),
            zeros(&[width]),
        );
        t.insert(
            "encoder.layers.encoder_layer_0.mlp.0.weight".to_string(),
            zeros(&[4 * width, 1]),
        );
        t.insert("heads.head.weight".to_string(), zeros(&[10, width]));
        t
    };
    for (width, heads) in [(768, 12), (1024, 16), (1280, 16)] {
        assert_eq!(vit::published_heads(width), Some(heads));
        let cfg = vit::VitConfig::infer(&state(width, 14), None).unwrap();
        assert_eq!(
            (cfg.num_heads, cfg.image_size),
            (heads, 56),
            "width {width}"
        );
        // A name's heads win.
        let cfg = vit::VitConfig::infer(&state(width, 14), Some(8)).unwrap();
        assert_eq!(cfg.num_heads, 8);
    }
    let err = vit::VitConfig::infer(&state(16, 16), None)
        .unwrap_err()
        .unwrap();
    assert!(
        err.contains("vit:heads=N") && err.contains("width 16"),
        "{err}"
    );
    let err = vit::VitConfig::infer(&state(16, 16), Some(3))
        .unwrap_err()
        .unwrap();
    assert!(err.contains("3 attention heads"), "{err}");
}

#[test]
fn the_architecture_is_read_from_the_checkpoint() {
    let Some(dir) = dir() else { return };
    let index = json(&dir.join("index.json"));
    for (key, name) in CASES {
        let m = load(&dir, key, name);
        let info = m.info();
        assert_eq!(info.num_classes, 10, "{key}");
        assert_eq!(
            info.num_params as u64,
            index[key]["num_parameters"].as_u64().unwrap(),
            "{key}"
        );
        assert_eq!(info.input, Preprocess::Torchvision.spec(info.input.size));
        if key.starts_with("vit") {
            // A ViT's size is its position embeddings'; a ResNet takes any.
            assert_eq!(
                info.input.size as u64,
                index[key]["input_size"].as_u64().unwrap()
            );
        }
    }
    // Without --model the family is detected from the names.
    let m = common::load_cpu(&dir.join("resnet_basic.pth"));
    assert_eq!(m.info().family, Family::ResNet);
    // The tiny ViT's width (64) is no published variant's: its heads must
    // be named, and the error says how.
    let path = dir.join("vit_tiny.pth");
    let loaded = model::load_checkpoint(&path, None, &Device::Cpu, DType::F32);
    common::error_saying(loaded, &["vit_tiny.pth", "vit:heads=N", "width 64"]);
    let m = model::load_checkpoint(&path, Some("vit:heads=4"), &Device::Cpu, DType::F32).unwrap();
    assert_eq!(m.info().family, Family::Vit);
    // A named variant that the file is not is refused, naming both.
    let path = dir.join("resnet_basic.pth");
    let loaded = model::load_checkpoint(&path, Some("resnet50"), &Device::Cpu, DType::F32);
    common::error_saying(loaded, &["resnet50", "BasicBlock"]);
}

/// The scores the fixtures hold, in the order asked of the Scorer.
fn methods() -> (Vec<Method>, Vec<&'static str>) {
    let odin = |t: f64, eps: f64| {
        Method::with_params("odin", &[("temperature", t), ("epsilon", eps)]).unwrap()
    };
    (
        vec![
            Method::from_key("msp").unwrap(),
            Method::with_params("energy", &[("temperature", 1.0)]).unwrap(),
            odin(1000.0, 0.0),
            odin(1000.0, 0.002),
            odin(1.0, 0.002),
            Method::with_params("gradnorm", &[("temperature", 1.0)]).unwrap(),
        ],
        vec![
            "msp",
            "energy",
            "odin_t1000_eps0",
            "odin_t1000_eps0.002",
            "odin_t1_eps0.002",
            "gradnorm_t1",
        ],
    )
}

/// ODIN at T = 1000 puts every score within 1e-4 of 1/C: what carries the
/// information is the distance from 1/C, compared here (f32 scores keep
/// only about four digits of it, hence 1e-3).
fn assert_odin_t1000(what: &str, got: &[f32], want: &[f32], classes: usize) {
    let c = 1.0 / classes as f32;
    let dist = |v: &[f32]| v.iter().map(|s| s - c).collect::<Vec<f32>>();
    common::assert_close(what, &dist(got), &dist(want), 1e-3);
}

/// A score column against the fixture's to 1e-4; ODIN at T = 1000 by the
/// distance from 1/C (see [`assert_odin_t1000`]).
fn assert_score(what: &str, got: &[f32], want: &[f32], odin_t1000: bool) {
    if odin_t1000 {
        assert_odin_t1000(what, got, want, 10);
    } else {
        common::assert_close(what, got, want, 1e-4);
    }
}

#[test]
fn random_checkpoints_give_torchvisions_outputs_and_the_papers_scores() {
    let Some(dir) = dir() else { return };
    let index = json(&dir.join("index.json"));
    let (methods, keys) = methods();
    for (key, name) in CASES {
        let m = load(&dir, key, name);
        let exp = candle_core::safetensors::load(
            dir.join(index[key]["expected"].as_str().unwrap()),
            &Device::Cpu,
        )
        .unwrap();
        let x = &exp["input"];
        let out = m.forward(x).unwrap();
        common::assert_output_close(key, &out, &exp["logits"], &exp["feature"], 1e-4);
        let scorer = Scorer::new(&methods, m.as_ref()).unwrap();
        let scores = scorer.score(m.as_ref(), x).unwrap();
        for (k, score) in keys.iter().enumerate() {
            let what = format!("{key} {score}");
            let want = vec1(&exp[*score]);
            let odin_t1000 = score.starts_with("odin_t1000");
            assert_score(&what, &scores.scores[k], &want, odin_t1000);
        }
    }
}

#[test]
fn every_tap_is_differentiable_with_respect_to_the_input() {
    // Mahalanobis with a perturbation (m > 0) takes d tap / d input; the
    // stem max-pool and attention's softmax must carry it.
    let Some(dir) = dir() else { return };
    for (key, name) in CASES {
        let m = load(&dir, key, name);
        let s = m.info().input.size;
        let x = common::randn(7, 0., 1., &[1, 3, s, s]);
        let taps = m.forward_taps(&x).unwrap().1;
        let last = m.info().tap_dims.len() - 1;
        assert_eq!(taps.len(), last + 1);
        // Tap 0 (the stem and its pool alone) and the last (every stage).
        for l in [0, last] {
            assert_eq!(taps[l].dims(), [1, m.info().tap_dims[l]], "{key} tap {l}");
            let xv = Var::from_tensor(&x).unwrap();
            let alone = m.forward_tap(xv.as_tensor(), l).unwrap();
            common::assert_close(
                &format!("{key} tap {l}"),
                &vec1(&alone),
                &vec1(&taps[l]),
                1e-5,
            );
            let grads = alone.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let g = grads
                .get(xv.as_tensor())
                .expect("a gradient reaches the input");
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{key} tap {l}: gradient norm {norm}"
            );
        }
    }
}

#[test]
fn image_files_through_decoding_crop_and_scores() {
    let Some(dir) = dir() else { return };
    let expected = json(&dir.join("files_expected.json"));
    let index = json(&dir.join("index.json"));
    let (methods, _) = methods();
    let keys = [
        "msp",
        "energy",
        "odin",
        "odin_eps0.002",
        "odin_t1_eps0.002",
        "gradnorm",
    ];
    for (key, name) in CASES {
        let m = load(&dir, key, name);
        // Each model at the fixture's size N, with the crop rule of --image-size N.
        let size = index[key]["input_size"].as_u64().unwrap() as usize;
        let spec = m.preprocess().with_overrides(Some(size), None);
        let files = expected["models"][key].as_array().unwrap();
        let data: Vec<f32> = files
            .iter()
            .flat_map(|f| {
                to_input(
                    &load_rgb(&dir.join(f["path"].as_str().unwrap())).unwrap(),
                    &spec,
                )
            })
            .collect();
        let x =
            Tensor::from_vec(data, (files.len(), 3, spec.size, spec.size), &Device::Cpu).unwrap();
        let logits = vec1(&m.forward(&x).unwrap().logits);
        let want: Vec<f32> = files
            .iter()
            .flat_map(|f| {
                f["logits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        common::assert_close(&format!("{key} file logits"), &logits, &want, 1e-4);
        let scores = Scorer::new(&methods, m.as_ref())
            .unwrap()
            .score(m.as_ref(), &x)
            .unwrap();
        for (k, score) in keys.iter().enumerate() {
            let want: Vec<f32> = files
                .iter()
                .map(|f| f["scores"][score].as_f64().unwrap() as f32)
                .collect();
            let what = format!("{key} file {score}");
            assert_score(&what, &scores.scores[k], &want, k == 2 || k == 3);
        }
    }
}

#[test]
fn our_preprocessing_is_torchvisions_eval_transform() {
    let Some(dir) = dir() else { return };
    let index = json(&dir.join("index.json"));
    let exp = candle_core::safetensors::load(
        dir.join("preprocess_torchvision_224.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let spec = Preprocess::Torchvision.spec(224);
    let data = dir.join("../../data");
    let mut worst = 0f32;
    let names: HashMap<&str, &str> = index["preprocess"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    for (key, file) in names {
        let ours = to_input(&load_rgb(&data.join(file)).unwrap(), &spec);
        let theirs = vec1(&exp[key]);
        assert_eq!(ours.len(), theirs.len(), "{file}");
        let diff = ours
            .iter()
            .zip(&theirs)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{file}: max abs difference {diff:e}");
        worst = worst.max(diff);
    }
    // One 8-bit level is 1 / (255 * 0.225) = 0.0174 after normalization:
    // the decoded and resized pixels are identical.
    assert!(worst < 1e-5, "max abs difference {worst}");
}

#[test]
fn the_crop_rule_follows_the_image_size() {
    // --image-size N crops N after resizing the shorter side to floor(N / 0.875).
    assert_eq!(gradnorm_core::run::crop_resize(224), 256);
    assert_eq!(gradnorm_core::run::crop_resize(64), 73);
    assert_eq!(gradnorm_core::run::crop_resize(32), 36);
    let spec = Preprocess::Torchvision
        .spec(224)
        .with_overrides(Some(64), None);
    assert_eq!(spec, Preprocess::Torchvision.spec(64));
    let seed = spec.with_overrides(None, Some(Preprocess::Seed));
    assert_eq!(seed, gradnorm_engine::model::InputSpec::half(64));
}
