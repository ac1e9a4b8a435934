//! The gradient detectors after GradNorm (GAIA-A, GAIA-Z, NAC-UE, GROOD and
//! the low-dimensional gradient method) against
//! their reference code: tests/fixtures/gradient_detectors/make.py runs the
//! authors' formulas on the shared BiT and torchvision fixtures, over the
//! methods fixture's test images (NAC-UE fitted on its fit images).

use crate::common;

use candle_core::{DType, Device, Tensor};
use gradnorm_engine::data::dataset::Dataset;
use gradnorm_engine::data::image::{load_rgb, to_input};
use gradnorm_engine::model::{self, Classifier, Preprocess};
use gradnorm_engine::score::fit::{fit_images, Fit, FitOptions};
use gradnorm_engine::score::{Method, Scorer};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The fixtures' image size (the methods fixture's PNGs are 64 x 64).
const SIZE: usize = 64;

/// One model of the fixtures: (fixture json, checkpoint, --model).
const CASES: [(&str, &str, Option<&str>); 2] = [
    ("bit_tiny.json", "fixtures/bit/tiny.pth.tar", None),
    (
        "resnet_bottleneck.json",
        "fixtures/torchvision/resnet_bottleneck.pth",
        Some("resnet"),
    ),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gradient_detectors")
}

/// The images of `list` as the script preprocesses them (mean/std 0.5).
fn batch(shared: &Path, list: &str) -> Tensor {
    let ds = Dataset::open(&shared.join("fixtures/methods").join(list), None).unwrap();
    let spec = Preprocess::Seed.spec(SIZE);
    let mut data = Vec::new();
    for item in &ds.items {
        data.extend(to_input(&load_rgb(&item.path).unwrap(), &spec));
    }
    Tensor::from_vec(data, (ds.items.len(), 3, SIZE, SIZE), &Device::Cpu).unwrap()
}

fn load(shared: &Path, checkpoint: &str, name: Option<&str>) -> Box<dyn Classifier> {
    load_as(shared, checkpoint, name, DType::F32)
}

fn load_as(
    shared: &Path,
    checkpoint: &str,
    name: Option<&str>,
    dtype: DType,
) -> Box<dyn Classifier> {
    let path = shared.join(checkpoint);
    model::load_checkpoint(&path, name, &Device::Cpu, dtype)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts every score within `rtol` of the reference, relative to itself;
/// returns the largest relative error.
fn assert_each_close(what: &str, got: &[f32], want: &[f64], rtol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let rel = (*g as f64 - w).abs() / w.abs().max(f64::MIN_POSITIVE);
        assert!(
            rel <= rtol,
            "{what}: image {i}: {g} vs {w} (relative {rel:.2e})\n got {got:?}\nwant {want:?}"
        );
        worst = worst.max(rel);
    }
    eprintln!("{what}: max relative error {worst:.2e}");
    worst
}

fn scores(doc: &serde_json::Value, key: &str) -> Vec<f64> {
    doc["scores"][key]
        .as_array()
        .unwrap_or_else(|| panic!("no scores for {key}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn gaia_a_and_gaia_z_equal_the_authors_code() {
    let Some(shared) = common::shared() else {
        return;
    };
    let x = batch(&shared, "test.txt");
    for (json, checkpoint, name) in CASES {
        let m = load(&shared, checkpoint, name);
        let doc = common::read_json(&fixtures().join(json));
        let keys = ["gaia-a", "gaia-z"];
        let methods: Vec<Method> = keys
            .iter()
            .map(|k| Method::parse_spec(k, &[]).unwrap().remove(0))
            .collect();
        let scorer = Scorer::new(&methods, m.as_ref()).unwrap();
        let out = scorer.score(m.as_ref(), &x).unwrap();
        for (key, got) in keys.iter().zip(&out.scores) {
            assert_each_close(&format!("{json}: {key}"), got, &scores(&doc, key), 1e-4);
        }
    }
}

#[test]
fn gaia_layers_can_be_named_and_a_bad_name_is_an_error() {
    let Some(shared) = common::shared() else {
        return;
    };
    let x = batch(&shared, "test.txt");
    let (_, checkpoint, name) = CASES[1];
    let m = load(&shared, checkpoint, name);
    // The default written out gives the default's scores.
    let methods: Vec<Method> = ["gaia-z", "gaia-z:layers=layer3+layer4"]
        .iter()
        .map(|s| Method::parse_spec(s, &[]).unwrap().remove(0))
        .collect();
    let out = Scorer::new(&methods, m.as_ref())
        .unwrap()
        .score(m.as_ref(), &x)
        .unwrap();
    assert_eq!(out.scores[0], out.scores[1]);
    let methods = Method::parse_spec("gaia-a:layers=layer9", &[]).unwrap();
    let scorer = Scorer::new(&methods, m.as_ref()).unwrap();
    let err = scorer.score(m.as_ref(), &x).err().unwrap().to_string();
    assert!(err.contains("layer9"), "{err}");
}

#[test]
fn gaia_on_a_model_without_its_layers_is_an_error_naming_the_model() {
    let Some(shared) = common::shared() else {
        return;
    };
    let m = load(
        &shared,
        "fixtures/torchvision/vit_tiny.pth",
        Some("vit:heads=4"),
    );
    let methods = Method::parse_spec("gaia-a", &[]).unwrap();
    common::error_saying(
        Scorer::new(&methods, m.as_ref()),
        &["gaia-a", "BiT, ResNet"],
    );
}

/// The fit of `m` on the methods fixture's fit list, as the script's.
fn fit(shared: &Path, m: &dyn Classifier) -> Fit {
    let items = Dataset::open(&shared.join("fixtures/methods/fit.txt"), None)
        .unwrap()
        .items;
    let opts = FitOptions {
        input: Preprocess::Seed.spec(SIZE),
        batch: 16,
        workers: 1,
        bank: 1000,
        nac_rows: gradnorm_engine::score::nac::DEFAULT_FIT_ROWS,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let (fit, skipped) = fit_images(m, items, opts, cancel, &mut |_, _| {}).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    fit
}

/// NAC-UE bins every neuron's state sigmoid(alpha o g) into up to 1,000
/// intervals, and g, a sum over the map's positions, cancels: in f32 a few
/// of the thousands of states land across an interval's bound from where
/// the float64 reference puts them, each moving the score by up to
/// 1/(4 neurons). So parity is asserted with the body in f64 (the head
/// stays f32), and the f32 run within 1e-3.
#[test]
fn nac_ue_equals_the_authors_postprocessor() {
    let Some(shared) = common::shared() else {
        return;
    };
    let x = batch(&shared, "test.txt");
    let dir = tempfile::tempdir().unwrap();
    for (json, checkpoint, name) in CASES {
        let doc = common::read_json(&fixtures().join(json));
        for (dtype, rtol) in [(DType::F64, 1e-4), (DType::F32, 1e-3)] {
            let m = load_as(&shared, checkpoint, name, dtype);
            // Through the fit file, as `fit` then `eval --fit` go.
            let path = dir.path().join(format!("{json}.{dtype:?}.safetensors"));
            fit(&shared, m.as_ref()).save(&path).unwrap();
            let fit = Fit::load_for(&path, m.as_ref()).unwrap();
            let states = fit.nac.as_ref().unwrap();
            assert_eq!((states.rows, states.layers.len()), (60, 4));
            let methods = Method::parse_spec("nac-ue", &[]).unwrap();
            let scorer = Scorer::with_fit(&methods, m.as_ref(), Some(&fit)).unwrap();
            let out = scorer.score(m.as_ref(), &x).unwrap();
            assert_each_close(
                &format!("{json}: nac-ue ({dtype:?} body)"),
                &out.scores[0],
                &scores(&doc, "nac-ue"),
                rtol,
            );
        }
    }
}

#[test]
fn nac_ue_parameters_pick_layers_and_hyperparameters() {
    let Some(shared) = common::shared() else {
        return;
    };
    let x = batch(&shared, "test.txt");
    let (_, checkpoint, name) = CASES[1];
    let m = load(&shared, checkpoint, name);
    let fit = fit(&shared, m.as_ref());
    let spec = |s: &str| Method::parse_spec(s, &[]).unwrap().remove(0);
    // The authors' values written out give the defaults' scores.
    let methods = vec![
        spec("nac-ue"),
        spec("nac-ue:layers=avgpool+layer3+layer2+layer1:bins=50+50+500+1000:o=10+500+50+5000:alpha=3000+300+0.01+1"),
        spec("nac-ue:layers=layer2:bins=8:o=1"),
    ];
    let out = Scorer::with_fit(&methods, m.as_ref(), Some(&fit))
        .unwrap()
        .score(m.as_ref(), &x)
        .unwrap();
    assert_eq!(out.scores[0], out.scores[1]);
    // Coverage lies in [0, 1].
    assert!(out.scores[2].iter().all(|s| (0.0..=1.0).contains(s)));
    assert_ne!(out.scores[2], out.scores[0]);
    for (bad, needle) in [
        ("nac-ue:layers=layer4", "layer `layer4`"),
        ("nac-ue:bins=7", "even"),
        ("nac-ue:o=1+2", "2 values for 4 layers"),
    ] {
        let methods = Method::parse_spec(bad, &[]).unwrap();
        common::error_saying(
            Scorer::with_fit(&methods, m.as_ref(), Some(&fit)),
            &[needle],
        );
    }
    let methods = Method::parse_spec("nac-ue", &[]).unwrap();
    common::error_saying(Scorer::new(&methods, m.as_ref()), &["needs a fit file"]);
    // A fit that kept no states (`fit --nac-rows 0`, or an older file).
    let mut without = fit.clone();
    without.nac = None;
    common::error_saying(
        Scorer::with_fit(&methods, m.as_ref(), Some(&without)),
        &["no NAC states", "--nac-rows 0"],
    );
}

/// GROOD against OpenOOD's postprocessor: its prototypes, its per-image
/// autograd gradients and the nearest indexed gradient (the exact search
/// faiss's IVF index approximates), through the fit file, with the body in
/// f32 and in f64.
#[test]
fn grood_equals_openoods_postprocessor() {
    let specs = ["grood", "grood:gradient=class", "grood:k=2"];
    each_fitted_case(&specs, |json, doc, stats| {
        // The index holds the fit's correctly classified images only.
        for (spec, (_, stat, v)) in specs.iter().zip(stats) {
            assert_eq!(stat, "indexed");
            assert_eq!(
                Some(v),
                doc["grood_indexed"][spec].as_f64(),
                "{json} {spec}"
            );
        }
    });
}

/// For both fixture models, with the body in f32 and in f64: fits them on
/// the fit images through a fit file, checks the scorer's statistics with
/// `check_stats`, and every score of `specs` against the fixture's.
fn each_fitted_case(
    specs: &[&str],
    mut check_stats: impl FnMut(&str, &serde_json::Value, Vec<(String, &'static str, f64)>),
) {
    let Some(shared) = common::shared() else {
        return;
    };
    let x = batch(&shared, "test.txt");
    let dir = tempfile::tempdir().unwrap();
    for (json, checkpoint, name) in CASES {
        let doc = common::read_json(&fixtures().join(json));
        for dtype in [DType::F32, DType::F64] {
            let m = load_as(&shared, checkpoint, name, dtype);
            let path = dir.path().join(format!("{json}.{dtype:?}.safetensors"));
            fit(&shared, m.as_ref()).save(&path).unwrap();
            let fit = Fit::load_for(&path, m.as_ref()).unwrap();
            let methods: Vec<Method> = specs
                .iter()
                .map(|s| Method::parse_spec(s, &[]).unwrap().remove(0))
                .collect();
            let scorer = Scorer::with_fit(&methods, m.as_ref(), Some(&fit)).unwrap();
            check_stats(json, &doc, scorer.stats());
            let out = scorer.score(m.as_ref(), &x).unwrap();
            for (spec, got) in specs.iter().zip(&out.scores) {
                assert_each_close(
                    &format!("{json}: {spec} ({dtype:?} body)"),
                    got,
                    &scores(&doc, spec),
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn grood_runs_on_any_backbone_and_says_what_its_fit_lacks() {
    let Some(shared) = common::shared() else {
        return;
    };
    // Only the feature and the head: a ViT has both.
    let vit = load(
        &shared,
        "fixtures/torchvision/vit_tiny.pth",
        Some("vit:heads=4"),
    );
    let vit_x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let vit_fit = {
        let mut b = gradnorm_engine::score::fit::FitBuilder::new(
            vit.info().num_classes,
            vit.head().0.dim(1).unwrap(),
            &Device::Cpu,
        )
        .unwrap();
        let out = vit.forward(&vit_x).unwrap();
        let predicted = out.logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        let labels: Vec<usize> = predicted.iter().map(|&p| p as usize).collect();
        b.add(&out.logits, &out.feature, &labels, &[true, true])
            .unwrap();
        let stamp = gradnorm_engine::score::mahalanobis::ModelStamp::of(vit.as_ref(), 32).unwrap();
        b.finish(stamp).unwrap()
    };
    let methods = Method::parse_spec("grood", &[]).unwrap();
    let out = Scorer::with_fit(&methods, vit.as_ref(), Some(&vit_fit))
        .unwrap()
        .score(vit.as_ref(), &vit_x)
        .unwrap();
    // Each image is in the index: its nearest gradient is its own.
    assert!(out.scores[0].iter().all(|s| s.abs() < 1e-6), "{out:?}");

    let (_, checkpoint, name) = CASES[1];
    let m = load(&shared, checkpoint, name);
    let fit = fit(&shared, m.as_ref());
    common::error_saying(Scorer::new(&methods, m.as_ref()), &["needs a fit file"]);
    let mut older = fit.clone();
    older.bank_classes = None;
    common::error_saying(
        Scorer::with_fit(&methods, m.as_ref(), Some(&older)),
        &["keeps no labels", "fit` again"],
    );
    let methods = Method::parse_spec("grood:k=9", &[]).unwrap();
    common::error_saying(
        Scorer::with_fit(&methods, m.as_ref(), Some(&fit)),
        &["k = 9", "only 8 of the fit bank's 60 images"],
    );
}

/// The low-dimensional gradient method against the authors' code
/// (github_Average_gradient.py's z, I and class means, github_main.py's
/// vmap per-sample gradients and KNN) on the head's parameters, through the
/// fit file, with the body in f32 and in f64.
#[test]
fn lowdim_grad_equals_the_authors_code_on_the_head() {
    let specs = ["lowdim-grad", "lowdim-grad:kernel=ntk", "lowdim-grad:k=2"];
    each_fitted_case(&specs, |json, _, stats| {
        // One direction per class of the fit, every fit image in the bank.
        for (spec, stat, v) in stats {
            let want = if stat == "directions" { 10.0 } else { 60.0 };
            assert_eq!(v, want, "{json} {spec} {stat}");
        }
    });
}

#[test]
fn lowdim_grad_says_what_its_fit_lacks() {
    let Some(shared) = common::shared() else {
        return;
    };
    let (_, checkpoint, name) = CASES[1];
    let m = load(&shared, checkpoint, name);
    let methods = Method::parse_spec("lowdim-grad", &[]).unwrap();
    common::error_saying(Scorer::new(&methods, m.as_ref()), &["needs a fit file"]);
    let fit = fit(&shared, m.as_ref());
    let mut older = fit.clone();
    older.bank_classes = None;
    common::error_saying(
        Scorer::with_fit(&methods, m.as_ref(), Some(&older)),
        &["keeps no labels", "fit` again"],
    );
    // One class: one direction, nothing to tell images apart by.
    let mut one_class = fit.clone();
    if let Some(c) = one_class.bank_classes.as_mut() {
        c.labels.iter_mut().for_each(|l| *l = 3);
    }
    common::error_saying(
        Scorer::with_fit(&methods, m.as_ref(), Some(&one_class)),
        &["images of 1 class;", "several classes"],
    );
    let methods = Method::parse_spec("lowdim-grad:k=61", &[]).unwrap();
    common::error_saying(
        Scorer::with_fit(&methods, m.as_ref(), Some(&fit)),
        &["k = 61", "bank holds 60 images"],
    );
}
