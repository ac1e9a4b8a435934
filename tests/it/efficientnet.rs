//! EfficientNet-Lite on real ImageNet images: the architecture against the
//! `efficientnet_lite_pytorch` wheel, accuracy against the wheel's PyTorch
//! model on the same files, awkward inputs, bad checkpoints, gradients.

use crate::common::{self, flat};

use candle_core::{DType, Device, Tensor, D};
use gradnorm_engine::data::image::{load_rgb, to_input};
use gradnorm_engine::error::Error;
use gradnorm_engine::model::efficientnet_lite::{self, EfficientNetConfig, EfficientNetLite};
use gradnorm_engine::model::{self, Classifier, FromCheckpoint, InputSpec, ModelSpec};
use gradnorm_engine::score::top_k;
use gradnorm_engine::weights;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

const CHECKPOINT: &str = "models/efficientnet-lite0/efficientnet-lite0.safetensors";

fn lite0(shared: &Path) -> Box<dyn Classifier> {
    model::load_checkpoint(
        &shared.join(CHECKPOINT),
        Some("efficientnet-lite0"),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap()
}

/// `images/FILE LABEL` lines of a list file, as (path, label).
fn read_list(dir: &Path, list: &str) -> Vec<(PathBuf, usize)> {
    std::fs::read_to_string(dir.join(list))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (f, label) = l.rsplit_once(' ').unwrap();
            (dir.join(f), label.trim().parse().unwrap())
        })
        .collect()
}

/// Decodes and preprocesses images in parallel into one [N, 3, S, S] batch.
fn batch(paths: &[PathBuf], spec: &InputSpec) -> Tensor {
    let data: Vec<Vec<f32>> = paths
        .par_iter()
        .map(|p| to_input(&load_rgb(p).unwrap(), spec))
        .collect();
    let n = data.len();
    Tensor::from_vec(data.concat(), (n, 3, spec.size, spec.size), &Device::Cpu).unwrap()
}

/// Lite0 and a batch of the one shared image `file`, preprocessed for it.
fn lite0_on(shared: &Path, file: &str) -> (Box<dyn Classifier>, Tensor) {
    let m = lite0(shared);
    let x = batch(&[shared.join(file)], &m.info().input);
    (m, x)
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

/// Top-1 and top-5 hits of the model on (path, label) items, batches of 32.
fn hits(m: &dyn Classifier, items: &[(PathBuf, usize)]) -> (usize, usize) {
    let (mut top1, mut top5) = (0, 0);
    for chunk in items.chunks(32) {
        let paths: Vec<PathBuf> = chunk.iter().map(|(p, _)| p.clone()).collect();
        let logits = m.forward(&batch(&paths, &m.info().input)).unwrap().logits;
        for (row, (_, label)) in rows(&logits).iter().zip(chunk) {
            let top = top_k(row, 5);
            top1 += usize::from(top[0].0 == *label);
            top5 += usize::from(top.iter().any(|(i, _)| i == label));
        }
    }
    (top1, top5)
}

#[test]
fn every_variant_has_the_wheels_architecture() {
    // From efficientnet_lite_pytorch 0.1.0: EfficientNet.from_name(name):
    // sum of parameters().numel(), len(_blocks), input_image_size.
    let wheel = [
        ("efficientnet-lite0", 4_652_008, 16, 224),
        ("efficientnet-lite1", 5_416_680, 21, 240),
        ("efficientnet-lite2", 6_092_072, 21, 260),
        ("efficientnet-lite3", 8_197_096, 24, 280),
        ("efficientnet-lite4", 13_006_568, 30, 300),
    ];
    for (name, params, blocks, size) in wheel {
        let cfg = EfficientNetConfig::of(efficientnet_lite::variant(name).unwrap());
        assert_eq!(cfg.num_params(), params, "{name}");
        assert_eq!(cfg.blocks.len(), blocks, "{name}");
        // Every variant builds and runs (bench uses random weights).
        let m = model::random(name, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(m.info().num_params, params, "{name}");
        assert_eq!(m.info().input.size, size, "{name}");
        let x = Tensor::zeros((1, 3, 33, 33), DType::F32, &Device::Cpu).unwrap();
        let (out, taps) = m.forward_taps(&x).unwrap();
        assert_eq!(out.logits.dims(), &[1, 1000], "{name}");
        assert_eq!(out.feature.dims(), &[1, 1280], "{name}");
        let dims: Vec<usize> = taps.iter().map(|t| t.dim(1).unwrap()).collect();
        assert_eq!(dims, m.info().tap_dims, "{name}");
    }
    // The wheel's lite4 widths: stem block 24, stage ends 32, 56, 160, last 448.
    let cfg = EfficientNetConfig::of(efficientnet_lite::variant("efficientnet-lite4").unwrap());
    assert_eq!(cfg.tap_dims(), vec![32, 32, 56, 160, 1280]);
    assert_eq!(cfg.blocks[0].cout, 24);
    assert_eq!(cfg.blocks.last().unwrap().cout, 448);
}

#[test]
fn lite0_loads_from_the_shared_checkpoint_by_name_or_inferred() {
    let Some(shared) = common::shared() else {
        return;
    };
    let m =
        model::load_checkpoint(&shared.join(CHECKPOINT), None, &Device::Cpu, DType::F32).unwrap();
    let info = m.info();
    assert_eq!(info.num_classes, 1000);
    assert_eq!(info.feature_dim, 1280);
    assert_eq!(info.num_params, 4_652_008);
    assert_eq!(info.tap_dims, vec![32, 24, 40, 112, 1280]);
    assert_eq!(info.input, InputSpec::half(224));
    assert!(info.name.contains("efficientnet-lite0"), "{}", info.name);
}

#[test]
fn imagenet_val_accuracy_matches_pytorch() {
    let Some(shared) = common::shared() else {
        return;
    };
    let start = std::time::Instant::now();
    let m = lite0(&shared);
    let items = read_list(&shared.join("data/imagenet-val"), "val_list.txt");
    assert_eq!(items.len(), 1300);
    let (top1, top5) = hits(m.as_ref(), &items);
    let (top1, top5) = (
        100.0 * top1 as f64 / items.len() as f64,
        100.0 * top5 as f64 / items.len() as f64,
    );
    eprintln!(
        "EfficientNet-Lite0 on {} ImageNet val images: top-1 {top1:.2}%, top-5 {top5:.2}% in {:.1} s",
        items.len(),
        start.elapsed().as_secs_f64()
    );
    // The wheel's PyTorch model on the same files (PIL bilinear resize to
    // 224, mean 0.5, std 0.5): 81.54% top-1, 94.85% top-5.
    assert!((top1 - 81.54).abs() <= 0.5, "top-1 {top1:.2}%");
    assert!((top5 - 94.85).abs() <= 0.5, "top-5 {top5:.2}%");
}

#[test]
fn greyscale_and_tiny_images_are_classified() {
    let Some(shared) = common::shared() else {
        return;
    };
    let m = lite0(&shared);
    // The 23 greyscale images of imagenet-sample: the wheel's PyTorch model
    // gets 19 right at top-1 and all 23 at top-5.
    let dir = shared.join("data/imagenet-sample");
    let grey: Vec<(PathBuf, usize)> = read_list(&dir, "list.txt")
        .into_iter()
        .filter(|(p, _)| {
            // The header says it; no need to decode.
            use image::ImageDecoder;
            let reader = image::ImageReader::open(p).unwrap();
            let decoder = reader
                .with_guessed_format()
                .unwrap()
                .into_decoder()
                .unwrap();
            matches!(
                decoder.color_type(),
                image::ColorType::L8 | image::ColorType::L16
            )
        })
        .collect();
    assert_eq!(grey.len(), 23);
    let (top1, top5) = hits(m.as_ref(), &grey);
    assert!(
        top1 >= 18 && top5 >= 22,
        "grey: top-1 {top1}/23, top-5 {top5}/23"
    );

    // CIFAR-10 images are 32x32: upscaled to 224, finite probabilities.
    let cifar = shared.join("data/ood/cifar10");
    let paths: Vec<PathBuf> = ["airplane", "cat", "ship", "truck"]
        .iter()
        .map(|c| cifar.join(c).join("0000.jpg"))
        .collect();
    assert_eq!(load_rgb(&paths[0]).unwrap().dimensions(), (32, 32));
    let logits = m.forward(&batch(&paths, &m.info().input)).unwrap().logits;
    let p = candle_nn::ops::softmax(&logits, D::Minus1).unwrap();
    for row in rows(&p) {
        assert!(row.iter().all(|v| v.is_finite()));
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
}

#[test]
fn taps_alone_equal_taps_of_the_full_pass() {
    let Some(shared) = common::shared() else {
        return;
    };
    let (m, x) = lite0_on(&shared, "data/imagenet-sample/images/n01440764_tench.JPEG");
    let (out, taps) = m.forward_taps(&x).unwrap();
    assert_eq!(taps.len(), 5);
    // The last tap is the pooled head output, i.e. the penultimate feature.
    assert_eq!(flat(&taps[4]), flat(&out.feature));
    for (l, tap) in taps.iter().enumerate() {
        assert_eq!(flat(&m.forward_tap(&x, l).unwrap()), flat(tap), "tap {l}");
    }
    // logits = W h + b with the head the scores see.
    let (w, b) = m.head();
    let again = out
        .feature
        .matmul(&w.t().unwrap())
        .unwrap()
        .broadcast_add(b)
        .unwrap();
    common::assert_close("logits from head", &flat(&again), &flat(&out.logits), 1e-6);
    assert!(m.forward_tap(&x, 5).is_err());
}

#[test]
fn input_gradient_matches_finite_differences() {
    let Some(shared) = common::shared() else {
        return;
    };
    let (m, x) = lite0_on(
        &shared,
        "data/imagenet-val/images/ILSVRC2012_val_00000347.JPEG",
    );
    // Energy (logsumexp of the logits) and a Mahalanobis tap, differentiated
    // with respect to the input as ODIN and Mahalanobis do.
    let energy = |t: &Tensor| {
        m.forward(t)
            .unwrap()
            .logits
            .log_sum_exp(D::Minus1)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let tap2 = |t: &Tensor| {
        m.forward_tap(t, 2)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
    };
    type Scalar<'a> = &'a dyn Fn(&Tensor) -> Tensor;
    let f: [(&str, Scalar); 2] = [("energy", &energy), ("tap 2", &tap2)];
    let scalar = |t: Tensor| t.to_scalar::<f32>().unwrap() as f64;
    for (what, f) in f {
        let var = candle_core::Var::from_tensor(&x).unwrap();
        let grads = f(var.as_tensor()).backward().unwrap();
        let g = grads
            .get(var.as_tensor())
            .expect("gradient reaches the input");
        // Along the gradient the directional derivative is |g|; ReLU6 kinks
        // make the central difference approach it from below as h shrinks
        // (0.1-0.3% short at h = 1e-3 here).
        let norm = scalar(g.sqr().unwrap().sum_all().unwrap()).sqrt();
        let step = (g * (1e-3 / norm)).unwrap();
        let plus = scalar(f(&(&x + &step).unwrap()));
        let minus = scalar(f(&(&x - &step).unwrap()));
        let numeric = (plus - minus) / 2e-3;
        eprintln!("{what}: |gradient| {norm:.4}, central difference {numeric:.4}");
        assert!(
            (numeric - norm).abs() <= 0.02 * norm,
            "{what}: {numeric} vs {norm}"
        );
    }
}

#[test]
fn cpu_kernels_equal_candle_ops_with_gradients() {
    let Some(shared) = common::shared() else {
        return;
    };
    let ckpt = || weights::read(&shared.join(CHECKPOINT)).unwrap();
    let kernels =
        EfficientNetLite::from_checkpoint(ckpt(), None, &Device::Cpu, DType::F32).unwrap();
    // The path other devices take: candle's conv2d, matmul and strided views.
    let ops = EfficientNetLite::from_checkpoint(ckpt(), None, &Device::Cpu, DType::F32)
        .unwrap()
        .with_candle_ops();
    let dir = shared.join("data/imagenet-val/images");
    let x = batch(
        &[
            dir.join("ILSVRC2012_val_00000355.JPEG"),
            shared.join("data/ood/cifar10/cat/0000.jpg"),
        ],
        &kernels.info().input,
    );
    let run = |m: &EfficientNetLite| {
        let var = candle_core::Var::from_tensor(&x).unwrap();
        let (out, taps) = m.forward_taps(var.as_tensor()).unwrap();
        let e = out
            .logits
            .log_sum_exp(D::Minus1)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = e.backward().unwrap();
        let g = flat(grads.get(var.as_tensor()).unwrap());
        (
            flat(&out.logits),
            taps.iter().map(flat).collect::<Vec<_>>(),
            g,
        )
    };
    let (logits, taps, grad) = run(&kernels);
    let (want_logits, want_taps, want_grad) = run(&ops);
    common::assert_close("logits", &logits, &want_logits, 1e-5);
    for (l, (a, b)) in taps.iter().zip(&want_taps).enumerate() {
        common::assert_close(&format!("tap {l}"), a, b, 1e-5);
    }
    // A ReLU6 kink may fall on either side for a few activations, which moves
    // the gradient of the pixels under them: PyTorch's own f32 input gradient
    // is 6e-3 (norm-wise) from its f64 one on these images.
    common::assert_mostly_close("energy input gradient", &grad, &want_grad, 1e-3, 1e-2, 5e-3);
}

#[test]
fn reduced_precision_runs_the_body_in_that_dtype() {
    let Some(shared) = common::shared() else {
        return;
    };
    let f32_model = lite0(&shared);
    let bf16 =
        model::load_checkpoint(&shared.join(CHECKPOINT), None, &Device::Cpu, DType::BF16).unwrap();
    assert_eq!(bf16.dtype(), DType::BF16);
    let dir = shared.join("data/imagenet-val");
    let items: Vec<(PathBuf, usize)> = read_list(&dir, "val_list.txt")
        .into_iter()
        .take(4)
        .collect();
    let paths: Vec<PathBuf> = items.iter().map(|(p, _)| p.clone()).collect();
    let x = batch(&paths, &f32_model.info().input);
    let want = f32_model.forward(&x).unwrap();
    let got = bf16.forward(&x).unwrap();
    // The head runs in f32 on a bf16 body.
    assert_eq!(got.logits.dtype(), DType::F32);
    assert_eq!(got.feature.dtype(), DType::F32);
    assert_eq!(bf16.head().0.dtype(), DType::F32);
    for (a, b) in rows(&got.logits).iter().zip(rows(&want.logits)) {
        assert_eq!(top_k(a, 1)[0].0, top_k(&b, 1)[0].0);
    }
    common::assert_close("bf16 logits", &flat(&got.logits), &flat(&want.logits), 0.05);
}

fn load_err(ckpt: weights::Checkpoint, name: Option<&str>) -> Error {
    match EfficientNetLite::from_checkpoint(ckpt, name, &Device::Cpu, DType::F32) {
        Ok(_) => panic!("must fail"),
        Err(e) => e,
    }
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let Some(shared) = common::shared() else {
        return;
    };
    let path = shared.join(CHECKPOINT);
    let dev = Device::Cpu;

    // A BiT checkpoint named as EfficientNet-Lite.
    let bit = shared.join("fixtures/bit/tiny.pth.tar");
    let e = model::load(
        &ModelSpec {
            name: Some("efficientnet-lite0".into()),
            checkpoint: Some(bit),
        },
        &dev,
        DType::F32,
    )
    .err()
    .unwrap();
    assert!(matches!(e, Error::ModelMismatch { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("tiny.pth.tar") && e.contains("BiT") && e.contains("efficientnet-lite0"),
        "{e}"
    );

    // lite0 weights named as lite2.
    let e = load_err(weights::read(&path).unwrap(), Some("efficientnet-lite2"));
    assert!(matches!(e, Error::ModelMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("efficientnet-lite2"), "{e}");

    // A wrong-shape tensor: a 3x3 depthwise kernel where lite0 has 5x5.
    let mut ckpt = weights::read(&path).unwrap();
    ckpt.tensors.insert(
        "_blocks.3._depthwise_conv.weight".into(),
        Tensor::zeros((144, 1, 3, 3), DType::F32, &dev).unwrap(),
    );
    let e = load_err(ckpt, Some("efficientnet-lite0"));
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("`_blocks.3._depthwise_conv.weight`")
            && e.contains("[144, 1, 3, 3]")
            && e.contains("[144, 1, 5, 5]")
            && e.contains("efficientnet-lite0.safetensors"),
        "{e}"
    );

    let mut ckpt = weights::read(&path).unwrap();
    ckpt.tensors.remove("_blocks.7._bn1.running_var");
    let e = load_err(ckpt, None);
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == "_blocks.7._bn1.running_var"),
        "{e:?}"
    );

    // Squeeze-excitation weights belong to EfficientNet, not to Lite.
    let mut ckpt = weights::read(&path).unwrap();
    ckpt.tensors.insert(
        "_blocks.1._se_reduce.weight".into(),
        Tensor::zeros((4, 96, 1, 1), DType::F32, &dev).unwrap(),
    );
    let e = load_err(ckpt, None);
    assert!(
        matches!(&e, Error::UnexpectedTensor { name, .. } if name == "_blocks.1._se_reduce.weight"),
        "{e:?}"
    );
}

#[test]
fn predict_names_the_tench() {
    let Some(shared) = common::shared() else {
        return;
    };
    let out = assert_cmd::Command::cargo_bin("gradnorm-tui")
        .unwrap()
        .args(["predict", "--model", "efficientnet-lite0", "--checkpoint"])
        .arg(shared.join(CHECKPOINT))
        .arg(shared.join("data/imagenet-sample/images/n01440764_tench.JPEG"))
        .arg(shared.join("data/imagenet-sample/images/n02692877_airship.JPEG"))
        .arg(shared.join("data/ood/cifar10/ship/0000.jpg"))
        .output()
        .unwrap();
    let stdout = common::success_stdout(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    // Each image: its path, then the ranked classes.
    assert!(lines[0].ends_with("n01440764_tench.JPEG"), "{stdout}");
    assert!(lines[1].contains("tench"), "{stdout}");
    let airship = lines
        .iter()
        .position(|l| l.ends_with("n02692877_airship.JPEG"))
        .unwrap();
    assert!(lines[airship + 1].contains("airship"), "{stdout}");
}
