//! Usage errors: eval's flags, `--out`, the other commands' arguments
//! and `--help`.

use super::*;

/// Usage errors of eval (exit 2 with the message): the case (its output
/// folder), the flags added to the base ones (split at spaces), and what
/// stderr must say.
#[rustfmt::skip] // one case a line
const USAGE_CASES: &[(&str, &str, &str)] = &[
    ("image_size_zero", "--image-size 0", "the image size must be between 32 and 2048, got 0"),
    ("image_size_huge", "--image-size 100000", "between 32 and 2048, got 100000"),
    ("image_size_negative", "--image-size=-5", "the image size must be at least 32"),
    ("image_size_not_a_number", "--image-size abc", "not a whole number"),
    ("image_size_too_small", "--image-size 8", "--image-size"),
    ("batch_zero", "--batch 0", "the batch size must be between 1 and 4096, got 0"),
    ("batch_huge", "--batch 5000", "between 1 and 4096"),
    ("batch_times_size_too_big", "--batch 4096 --image-size 2048", "lower --batch or --image-size"),
    ("limit_zero", "--limit 0", "the limit must be at least 1, got 0"),
    ("workers_zero", "--workers 0", "the number of workers must be between 1 and 1024"),
    ("device_unknown", "--device gpu", "expected auto, cpu, cuda or cuda:N"),
    ("device_bad_ordinal", "--device cuda:x", "cuda:N with N a GPU number"),
    ("dtype_unknown", "--dtype int8", "expected f32, bf16 or f16"),
    ("method_unknown", "--methods msp,bogus", "unknown method `bogus`"),
    ("method_twice", "--methods msp,msp", "given twice"),
    ("methods_empty", "--methods=", "no methods"),
    ("epsilon_nan", "--epsilon-odin NaN", "odin: epsilon must be a number >= 0, got `NaN`"),
    ("epsilon_negative", "--epsilon-odin=-0.1", "odin: epsilon must be"),
    ("temperature_zero", "--temperature-odin 0", "odin: temperature must be"),
    ("temperature_inf", "--temperature-gradnorm inf", "gradnorm: temperature must be"),
    ("temperature_nan", "--temperature-energy NaN", "energy: temperature must be"),
    ("mahalanobis_without_params", "--methods msp,mahalanobis", "needs --mahalanobis-params"),
    ("ood_without_name", "--ood =x", "expected NAME=PATH"),
    ("ood_without_path", "--ood a=", "expected NAME=PATH"),
    ("unknown_flag", "--frobnicate", "unexpected argument"),
];

#[test]
fn usage_errors() {
    for (case, args, msg) in USAGE_CASES {
        println!("case {case}");
        let args: Vec<&str> = args.split(' ').collect();
        expect(&eval(case, &args), 2, msg);
    }
}

#[test]
fn ood_names_twice() {
    let a = ood("a", "ood");
    let out = eval("ood_names_twice", &["--ood", &a[1], "--ood", &a[1]]);
    expect(&out, 2, "two OOD sets are named `a`");
}

#[test]
fn ood_named_like_the_id_set() {
    let a = ood("id", "ood");
    let out = eval("ood_named_like_the_id_set", &["--ood", &a[1]]);
    expect(&out, 2, "two datasets are named `id`");
}

/// Usage errors of the binary run with exactly these arguments.
#[test]
fn bare_usage_errors() {
    #[rustfmt::skip] // one case a line
    let cases: [(&[&str], &str); 5] = [
        (&["eval", "--id", "x", "--ood", "a=b"], "eval needs --checkpoint"),
        (&["eval", "--checkpoint", DEMO, "--ood", "a=b"], "eval needs --id"),
        (&["eval", "--checkpoint", DEMO, "--id", "x"], "at least one --ood"),
        (&["eval", "--demo", "--checkpoint", DEMO], "--demo brings its own model"),
        (&["eval", "--config", "x.toml", "--checkpoint", DEMO], "cannot be used with"),
    ];
    for (args, msg) in cases {
        println!("case {args:?}");
        expect(&bin().args(args).output().unwrap(), 2, msg);
    }
}

#[test]
fn cuda_without_the_feature() {
    if cfg!(feature = "cuda") {
        eprintln!("SKIPPED: built with CUDA");
        return;
    }
    let out = eval("cuda_without_the_feature", &["--device", "cuda:0"]);
    expect(&out, 1, "without the `cuda` feature");
}

// ---- --out ----

fn with_out(case: &str, out: String) -> Output {
    bin().args(args_with(case, "--out", out)).output().unwrap()
}

#[test]
fn out_is_a_file() {
    let out = with_out("out_is_a_file", fx().join("file.txt").display().to_string());
    expect(&out, 2, "exists and is not a folder");
}

#[test]
fn out_under_a_file() {
    let out = with_out(
        "out_under_a_file",
        fx().join("file.txt/sub").display().to_string(),
    );
    expect(&out, 2, "cannot create the folder");
}

#[test]
fn out_in_proc() {
    let out = with_out("out_in_proc", "/proc/gradnorm-tui-results".into());
    expect(&out, 2, "--out /proc/gradnorm-tui-results: cannot");
}

/// Usage errors of the other commands: their arguments and the message.
#[test]
fn other_commands_usage_errors() {
    let path = |p: &str| fx().join(p).display().to_string();
    let image = path("id/0.png");
    let (t, t0, folder) = (path("t.safetensors"), path("t0.safetensors"), path("id"));
    let id = list("scores-id.txt", "0.5\nNaN\n").display().to_string();
    let ood = list("scores-ood.txt", "0.1\n").display().to_string();
    #[rustfmt::skip] // one case a line
    let cases = [
        (vec!["predict", "--checkpoint", DEMO, "--top", "0", &image], "--top must be at least 1"),
        (vec!["predict", "--checkpoint", DEMO, "--image-size", "0", &image], "between 32 and 2048"),
        (vec!["metrics", "--id", &id, "--ood", &ood], "not a finite number"),
        (vec!["train-demo", "--lr", "NaN", "--out", &t], "--lr must be a number in (0, 1]"),
        (vec!["train-demo", "--epochs", "0", "--out", &t0], "--epochs must be at least 1"),
        (vec!["train-demo", "--out", &folder], "is a folder"),
        (vec!["bench", "--model", "BiT-S-R50x1", "--batch", "0"], "the batch size must be between 1 and 4096"),
        (vec!["bench", "--model", "BiT-S-R50x1", "--device", "tpu"], "expected auto, cpu, cuda or cuda:N"),
        (vec!["tune-mahalanobis", "--checkpoint", DEMO, "--train", "x", "--val", "y", "--out", "z", "--batch", "0"], "the batch size must be between 1 and 4096"),
    ];
    for (args, msg) in cases {
        println!("case {args:?}");
        expect(&bin().args(args).output().unwrap(), 2, msg);
    }
    assert!(!fx().join("t.safetensors").exists());
}

#[test]
fn predict_missing_image_says_so_once() {
    let out = bin()
        .args([
            "predict",
            "--device",
            "cpu",
            "--image-size",
            "32",
            "--checkpoint",
            DEMO,
        ])
        .arg(fx().join("nope.png"))
        .arg(fx().join("id/0.png"))
        .output()
        .unwrap();
    expect(&out, 1, "nope.png: No such file or directory");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    // The image that could be read is still classified.
    assert!(String::from_utf8_lossy(&out.stdout).contains("0.png"));
}

/// `predict --class-order` of a missing or garbage file is an error naming
/// the file, not ignored.
#[test]
fn predict_class_order_that_cannot_be_read() {
    let garbage = list("order-garbage.txt", "hello\nnot a wnid\n");
    let wnids = list("order-wnids.txt", "n01440764\nn01443537\n");
    #[rustfmt::skip] // one case a line
    let cases = [
        (fx().join("no-order.txt"), "no-order.txt: No such file or directory"),
        (garbage, "order-garbage.txt: line 1: expected a wnid"),
        // Wnids, but the demo's classes have none to reorder.
        (wnids, "order-wnids.txt: a class order needs class names with wnids"),
    ];
    for (order, msg) in cases {
        println!("case {}", order.display());
        let out = bin()
            .args(["predict", "--device", "cpu", "--image-size", "32"])
            .args(["--checkpoint", DEMO, "--class-order"])
            .arg(&order)
            .arg(fx().join("id/0.png"))
            .output()
            .unwrap();
        expect(&out, 1, msg);
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn help_documents_the_exit_statuses() {
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for s in ["0 success", "1 error", "2 usage error", "130", "143"] {
        assert!(text.contains(s), "--help lacks `{s}`:\n{text}");
    }
}
