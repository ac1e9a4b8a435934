//! Checkpoints that are missing, damaged or wrong for the model, and
//! models whose outputs are flagged.

use super::*;

fn with_checkpoint(case: &str, ckpt: &Path, extra: &[&str]) -> Output {
    with_path(case, "--checkpoint", ckpt, extra)
}

fn victim() -> String {
    std::fs::read_to_string(fx().join("victim.txt")).unwrap()
}

#[test]
fn checkpoint_missing_says_so_once() {
    let out = with_checkpoint("ckpt_missing", &fx().join("nope.pth"), &[]);
    expect(&out, 1, "nope.pth: No such file or directory");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn checkpoint_with_nan_weights() {
    let out = with_checkpoint("ckpt_nan", &fx().join("nan.safetensors"), &[]);
    expect(&out, 1, &format!("tensor `{}` holds", victim()));
    expect(&out, 1, "NaN or infinite");
}

#[test]
fn checkpoint_with_an_integer_weight() {
    let out = with_checkpoint("ckpt_int", &fx().join("int.safetensors"), &[]);
    expect(&out, 1, &format!("tensor `{}` holds I64 values", victim()));
}

#[test]
fn checkpoint_with_a_wrong_shape() {
    let out = with_checkpoint("ckpt_shape", &fx().join("shape.safetensors"), &[]);
    expect(&out, 1, &victim());
    expect(&out, 1, "[3]");
}

#[test]
fn checkpoint_missing_a_tensor() {
    let out = with_checkpoint(
        "ckpt_missing_tensor",
        &fx().join("missing.safetensors"),
        &[],
    );
    expect(&out, 1, &victim());
}

#[test]
fn model_whose_outputs_do_not_depend_on_the_input_is_flagged() {
    let out = with_checkpoint("ckpt_zeros", &fx().join("zeros.safetensors"), &[]);
    let summary = finished("ckpt_zeros", &out, 0, "do not depend on its input");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("WARNING: "), "{stdout}");
    let warnings = summary["warnings"].as_array().unwrap();
    assert!(warnings
        .iter()
        .any(|w| w.as_str().unwrap().contains("do not depend")));
}

/// Eval failures (exit 1) with the flags a case adds: the case, the flags,
/// what stderr says.
#[test]
fn eval_failures() {
    let path = |p: &str| fx().join(p).display().to_string();
    let (maha, order) = (path("nope.safetensors"), path("nope-order.txt"));
    let garbage = list("order.txt", "not a wnid\n").display().to_string();
    let names = list("names.txt", "a\nb\nc\n").display().to_string();
    let maha_flags = [
        "--methods",
        "msp,mahalanobis",
        "--mahalanobis-params",
        &maha,
    ];
    #[rustfmt::skip] // one case a line
    let cases: [(&str, &[&str], &str); 8] = [
        ("model_mismatch", &["--model", "efficientnet-lite0"], "not the requested efficientnet-lite0"),
        // Another family: what the file is, not "not a checkpoint".
        ("model_family", &["--model", "resnet50"], "holds BiT ResNetV2 weights, not the requested resnet50"),
        ("model_family_vit", &["--model", "vit-b-16"], "holds BiT ResNetV2 weights, not the requested vit-b-16"),
        ("model_unknown", &["--model", "resnet9000"], "resnet9000"),
        ("maha_missing", &maha_flags, "nope.safetensors"),
        ("order_missing", &["--class-order", &order], "nope-order.txt: No such file or directory"),
        ("order_garbage", &["--class-order", &garbage], "order.txt"),
        ("names_count", &["--classes", &names], "3 class names for a model with 10 classes"),
    ];
    for (case, args, msg) in cases {
        println!("case {case}");
        expect(&eval(case, args), 1, msg);
    }
}
