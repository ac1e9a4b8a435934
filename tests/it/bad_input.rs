//! Bad input and faults (issue 17), as a careful new user would try them:
//! images, datasets, checkpoints, flags, configs, signals and terminals.
//! Every case runs the binary and asserts its exit status and its message;
//! a run that stops early must still write and print what it computed.
//! Inputs are tiny: images drawn here, the committed demo checkpoint at
//! 32 x 32, so the whole module runs in seconds.

use assert_cmd::Command;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

const DEMO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/checkpoints/demo/bit-demo.safetensors"
);

/// Files shared by every case, made once per test process.
fn fx() -> &'static Path {
    static FX: OnceLock<PathBuf> = OnceLock::new();
    FX.get_or_init(make_fixtures)
}

fn colour(i: u32) -> image::RgbImage {
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([
            (x * 8 + i * 40) as u8,
            (y * 8 + i * 25) as u8,
            ((x + y) * 4 + i * 60) as u8,
        ])
    })
}

fn make_fixtures() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bad_input-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mk = |p: &str| std::fs::create_dir_all(dir.join(p)).unwrap();
    for d in [
        "id",
        "ood",
        "empty",
        "mixed/sub",
        "loose/x.jpg",
        "bad",
        "weird",
        "eleven",
    ] {
        mk(d);
    }
    let mut list = String::new();
    for i in 0..6u32 {
        colour(i).save(dir.join(format!("id/{i}.png"))).unwrap();
        colour(i + 10)
            .save(dir.join(format!("ood/{i}.png")))
            .unwrap();
        list.push_str(&format!("id/{i}.png {i}\n"));
    }
    std::fs::write(dir.join("id.txt"), &list).unwrap();
    // A long OOD list (one image, many lines) for the signal cases.
    let long: String = (0..20_000).map(|_| "ood/0.png\n").collect();
    std::fs::write(dir.join("long.txt"), long).unwrap();
    // Images beside a subfolder of images.
    colour(1).save(dir.join("mixed/a.png")).unwrap();
    colour(2).save(dir.join("mixed/sub/b.png")).unwrap();
    // Images beside an empty folder named like an image.
    colour(1).save(dir.join("loose/a.png")).unwrap();
    colour(2).save(dir.join("loose/b.png")).unwrap();
    // Eleven class folders for a ten-class model.
    for c in 0..11u32 {
        mk(&format!("eleven/c{c:02}"));
        colour(c)
            .save(dir.join(format!("eleven/c{c:02}/x.png")))
            .unwrap();
    }
    // Undecodable files, each a different way.
    let jpeg = {
        let mut buf = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(colour(3))
            .write_to(&mut buf, image::ImageFormat::Jpeg)
            .unwrap();
        buf.into_inner()
    };
    std::fs::write(dir.join("good.jpg"), &jpeg).unwrap();
    std::fs::write(dir.join("bad/empty.png"), b"").unwrap();
    std::fs::write(dir.join("bad/text.jpg"), b"hello, not an image\n").unwrap();
    std::fs::write(dir.join("bad/truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    // Complete (ends in EOI) but a segment length runs past the end.
    let mut corrupt = jpeg.clone();
    corrupt[4] = 0xFF;
    corrupt[5] = 0xF0;
    std::fs::write(dir.join("bad/corrupt.jpg"), &corrupt).unwrap();
    std::fs::write(dir.join("bad/huge.png"), huge_png()).unwrap();
    // Odd but valid images.
    image::ImageBuffer::<image::Luma<u16>, _>::from_fn(32, 32, |x, _| {
        image::Luma([x as u16 * 2000])
    })
    .save(dir.join("weird/grey16.png"))
    .unwrap();
    image::RgbImage::from_pixel(1, 1, image::Rgb([200, 10, 10]))
        .save(dir.join("weird/one.png"))
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
        colour(4).save(dir.join("weird").join(name)).unwrap();
    }
    std::fs::write(dir.join("file.txt"), "a file, not a folder\n").unwrap();
    std::fs::write(
        dir.join("random.bin"),
        (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(dir.join("empty.bin"), b"").unwrap();
    let demo = std::fs::read(DEMO).unwrap();
    std::fs::write(dir.join("truncated.safetensors"), &demo[..demo.len() / 3]).unwrap();
    checkpoints(&dir);
    dir
}

/// A PNG whose header claims 100000 x 100000 pixels (valid CRC).
fn huge_png() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(crc32(b"IEND").to_be_bytes());
    png
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Broken variants of the demo checkpoint.
fn checkpoints(dir: &Path) {
    let demo = candle_core::safetensors::load(DEMO, &Device::Cpu).unwrap();
    let mut names: Vec<&String> = demo.keys().collect();
    names.sort();
    let victim = names
        .iter()
        // Not a tensor the architecture is inferred from (conv1, root, head).
        .find(|n| n.ends_with("conv2.weight") && demo[**n].dims().len() == 4)
        .unwrap()
        .to_string();
    let save = |name: &str, map: &HashMap<String, Tensor>| {
        candle_core::safetensors::save(map, dir.join(name)).unwrap()
    };
    let with = |f: &dyn Fn(&Tensor) -> Tensor| {
        let mut m = demo.clone();
        let t = f(&m[&victim]);
        m.insert(victim.clone(), t);
        m
    };
    save(
        "nan.safetensors",
        &with(&|t| (t.ones_like().unwrap() * f64::NAN).unwrap()),
    );
    save(
        "inf.safetensors",
        &with(&|t| (t.to_dtype(DType::F32).unwrap().ones_like().unwrap() * f64::INFINITY).unwrap()),
    );
    save(
        "int.safetensors",
        &with(&|t| {
            t.to_dtype(DType::F32)
                .unwrap()
                .to_dtype(DType::I64)
                .unwrap()
        }),
    );
    save(
        "shape.safetensors",
        &with(&|t| Tensor::zeros(3, t.dtype(), &Device::Cpu).unwrap()),
    );
    let mut missing = demo.clone();
    missing.remove(&victim);
    save("missing.safetensors", &missing);
    let zeros: HashMap<String, Tensor> = demo
        .iter()
        .map(|(k, t)| (k.clone(), t.zeros_like().unwrap()))
        .collect();
    save("zeros.safetensors", &zeros);
    std::fs::write(dir.join("victim.txt"), &victim).unwrap();
}

fn bin() -> Command {
    let mut c = Command::cargo_bin("gradnorm-tui").unwrap();
    c.env("GRADNORM_LOG", "off").env_remove("RUST_LOG");
    c
}

/// A fresh output folder for one case.
fn out_dir(case: &str) -> PathBuf {
    let d = fx().join("out").join(case);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `eval` on the tiny sets with the demo model, plus `extra` (later flags
/// given twice are usage errors in clap, so the base leaves out what cases
/// vary: --ood, --out).
fn eval_args(case: &str) -> Vec<String> {
    let f = fx();
    [
        "eval",
        // Each case computes: no shared store in the checkout.
        "--no-store",
        "--checkpoint",
        DEMO,
        "--id",
        f.join("id.txt").to_str().unwrap(),
        "--device",
        "cpu",
        "--batch",
        "4",
        "--workers",
        "1",
        "--out",
        out_dir(case).to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn size() -> [&'static str; 2] {
    ["--image-size", "32"]
}

fn ood(name: &str, path: &str) -> [String; 2] {
    [
        "--ood".into(),
        format!("{name}={}", fx().join(path).display()),
    ]
}

/// Runs eval with the base flags, a default OOD set and size, and `extra`.
fn eval(case: &str, extra: &[&str]) -> Output {
    let mut args = eval_args(case);
    // A flag the case gives replaces the base one (clap refuses repeats).
    for flag in extra.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap();
        if let Some(i) = args.iter().position(|a| a == flag) {
            args.drain(i..i + 2);
        }
    }
    if !extra.contains(&"--ood") {
        args.extend(ood("ood", "ood"));
    }
    if !extra.iter().any(|a| a.starts_with("--image-size")) {
        args.extend(size().map(String::from));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    bin().args(&args).output().unwrap()
}

/// The exit status and that stderr says `needle` (case-insensitive).
#[track_caller]
fn expect(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "want exit {code}; stderr:\n{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "stderr lacks `{needle}`:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    assert!(!stderr.contains("(os error"), "a raw OS error:\n{stderr}");
}

/// summary.json of a case, and that scores.csv holds one row per image
/// it counts as evaluated (nothing computed is lost).
#[track_caller]
fn written(case: &str) -> serde_json::Value {
    let dir = fx().join("out").join(case);
    let text = std::fs::read_to_string(dir.join("summary.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let evaluated: u64 = summary["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["evaluated"].as_u64().unwrap())
        .sum();
    let rows = std::fs::read_to_string(dir.join("scores.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(rows as u64, evaluated, "scores.csv rows vs summary.json");
    summary
}

fn evaluated(summary: &serde_json::Value, dataset: usize) -> u64 {
    summary["datasets"][dataset]["evaluated"].as_u64().unwrap()
}

/// Checks a finished run's exit status and message, then returns what it
/// wrote (see `written`).
#[track_caller]
fn finished(case: &str, out: &Output, code: i32, needle: &str) -> serde_json::Value {
    expect(out, code, needle);
    written(case)
}

// ---- flags ----
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
/// The eval arguments of `case` with `flag`'s value set to `value`, plus an
/// OOD set.
fn args_with(case: &str, flag: &str, value: String) -> Vec<String> {
    let mut args = eval_args(case);
    let i = args.iter().position(|a| a == flag).unwrap();
    args[i + 1] = value;
    args.extend(ood("ood", "ood"));
    args
}

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

// ---- checkpoints ----
/// Eval of `case` at the small size with `flag` (a path flag) set to `path`.
fn with_path(case: &str, flag: &str, path: &Path, extra: &[&str]) -> Output {
    let mut args = args_with(case, flag, path.display().to_string());
    args.extend(size().map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    bin().args(&args).output().unwrap()
}

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
    let cases: [(&str, &[&str], &str); 6] = [
        ("model_mismatch", &["--model", "efficientnet-lite0"], "not the requested efficientnet-lite0"),
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

// ---- datasets and images ----
fn with_id(case: &str, id: &Path, extra: &[&str]) -> Output {
    with_path(case, "--id", id, extra)
}

/// Checkpoints, ID sets (exit 1) and config files (exit 2) that eval must
/// refuse: the case, the fixture the flag points at, what stderr says.
#[test]
fn bad_files() {
    #[rustfmt::skip] // one case a line
    let checkpoints = [
        ("ckpt_empty", "empty.bin", "not a checkpoint"),
        ("ckpt_random", "random.bin", "not a checkpoint"),
        ("ckpt_truncated", "truncated.safetensors", "truncated.safetensors: not a checkpoint"),
        ("ckpt_text", "file.txt", "not a checkpoint"),
        ("ckpt_folder", "id", "is a directory"),
        ("ckpt_inf", "inf.safetensors", "NaN or infinite value"),
    ];
    #[rustfmt::skip]
    let id_sets = [
        ("id_missing", "nope", "nope: No such file or directory"),
        ("id_empty", "empty", "no images found"),
        ("png_as_list", "id/0.png", "read as a list file"),
    ];
    #[rustfmt::skip]
    let configs = [
        ("config_not_toml", "id.txt", "config file"),
        ("config_not_text", "id/0.png", "must be UTF-8 TOML text"),
        ("config_missing", "nope.toml", "nope.toml: No such file or directory"),
    ];
    let groups = [
        ("--checkpoint", 1, &checkpoints[..]),
        ("--id", 1, &id_sets[..]),
        ("--config", 2, &configs[..]),
    ];
    for (flag, code, cases) in groups {
        for (case, file, msg) in cases {
            println!("case {case}");
            let path = fx().join(file);
            let out = match flag {
                "--config" => eval_config(case, &path),
                _ => with_path(case, flag, &path, &[]),
            };
            expect(&out, code, msg);
        }
    }
}

#[test]
fn id_images_beside_class_folders() {
    let out = with_id("id_mixed", &fx().join("mixed"), &[]);
    expect(&out, 1, "not both");
    expect(&out, 1, "1 image(s) at its top level");
}

/// OOD folders of odd content: the case, the folder, the exit status and
/// message, and how many images of which set count as evaluated. An empty
/// folder named like an image is no image; 16-bit grey (converted as PIL
/// does), 1 x 1 and a non-UTF-8 name are evaluated, not dropped; a set where
/// nothing decodes is an error, but what was computed is kept.
#[test]
fn odd_ood_folders() {
    let weird = if cfg!(unix) { 3 } else { 2 };
    #[rustfmt::skip] // one case a line
    let cases = [
        ("loose", "loose", 0, "loose", 1, 2),
        ("weird", "weird", 0, "weird", 1, weird),
        ("all_bad", "bad", 1, "nothing evaluated in `bad`", 0, 6),
    ];
    for (case, dir, code, msg, set, count) in cases {
        println!("case {case}");
        let out = eval(case, &["--ood", &ood(dir, dir)[1]]);
        let summary = finished(case, &out, code, msg);
        assert_eq!(evaluated(&summary, set), count);
        if case == "weird" {
            assert_eq!(summary["datasets"][1]["skipped_count"], 0);
        }
    }
}

#[test]
fn undecodable_files_are_skipped_and_counted_each_with_why() {
    let f = fx();
    let list = f.join("mixed-ood.txt");
    std::fs::write(
        &list,
        "ood/0.png\nood/1.png\nbad/empty.png\nbad/text.jpg\nbad/truncated.jpg\nbad/corrupt.jpg\nbad/huge.png\n",
    )
    .unwrap();
    let out = eval("some_bad", &["--ood", &format!("some={}", list.display())]);
    let summary = finished("some_bad", &out, 0, "skipped");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated.jpg: truncated JPEG"), "{stderr}");
    assert!(stderr.contains("corrupt.jpg: corrupt JPEG"), "{stderr}");
    assert!(stderr.contains("text.jpg"), "{stderr}");
    assert!(stderr.contains("huge.png"), "{stderr}");
    assert_eq!(evaluated(&summary, 1), 2);
    assert_eq!(summary["datasets"][1]["skipped_count"], 5);
}

#[test]
fn wrong_id_root_is_an_error() {
    let root = fx().join("empty").display().to_string();
    let out = eval("wrong_root", &["--id-root", &root]);
    expect(&out, 1, "nothing evaluated in `id`");
    expect(&out, 1, "cannot read");
}

fn list(name: &str, text: &str) -> PathBuf {
    let p = fx().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn label_beyond_the_model_is_left_out_of_the_accuracy_and_said() {
    let l = list("label10.txt", "id/0.png 0\nid/1.png 10\n");
    let out = with_id("label10", &l, &[]);
    let summary = finished("label10", &out, 0, "labels beyond the model's 10 classes");
    assert_eq!(summary["id_labelled"], 1);
}

#[test]
fn negative_label() {
    let l = list("labelneg.txt", "id/0.png -1\n");
    let out = with_id("labelneg", &l, &[]);
    expect(&out, 1, "non-negative");
}

#[test]
fn garbage_list_line() {
    let l = list("garbage.txt", "id/0.png 0\nthis is not a list line\n");
    let out = with_id("garbage", &l, &[]);
    expect(&out, 1, "line 2");
}

#[test]
fn more_class_folders_than_classes_is_said() {
    let out = with_id("eleven", &fx().join("eleven"), &[]);
    expect(
        &out,
        0,
        "1 ID image(s) have labels beyond the model's 10 classes",
    );
    let summary = written("eleven");
    assert_eq!(summary["id_labelled"], 10);
}

#[test]
fn limit_one_evaluates_one_per_set() {
    let out = eval("limit_one", &["--limit", "1"]);
    let summary = finished("limit_one", &out, 0, "");
    assert_eq!((evaluated(&summary, 0), evaluated(&summary, 1)), (1, 1));
}

// ---- configs ----
fn config(name: &str, body: &str) -> PathBuf {
    let f = fx();
    let text = format!(
        "batch = 4\nimage_size = 32\ndevice = \"cpu\"\nmethods = [{{ method = \"msp\" }}, {{ method = \"odin\", temperature = 1000.0, epsilon = 0.0 }}]\n{body}\n\
         [model]\ncheckpoint = \"{DEMO}\"\n\n[id]\nname = \"id\"\npath = \"{}\"\n\n[[ood]]\nname = \"ood\"\npath = \"{}\"\n",
        f.join("id.txt").display(),
        f.join("ood").display()
    );
    let p = f.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn eval_config(case: &str, cfg: &Path) -> Output {
    bin()
        .args(["eval", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out_dir(case))
        .output()
        .unwrap()
}

#[test]
fn config_written_by_the_old_form_still_runs() {
    // Strings for device and dtype, as before they were types.
    let cfg = config("old.toml", "dtype = \"fp32\"\nlimit = 2");
    let out = eval_config("old_config", &cfg);
    expect(&out, 0, "");
    let summary = written("old_config");
    assert_eq!(summary["dtype"], "f32");
    assert_eq!(evaluated(&summary, 0), 2);
}

/// Config edits eval must refuse (exit 2): the case (its file's name), the
/// line of a good config replaced and by what, what stderr says. The
/// message names the file, and the key where one was set.
#[test]
fn bad_config_values() {
    let good = std::fs::read_to_string(config("base.toml", "")).unwrap();
    #[rustfmt::skip] // one case a line
    let cases = [
        ("config_limit_zero", "batch = 4", "batch = 4\nlimit = 0", "the limit must be at least 1"),
        ("config_dtype_unknown", "batch = 4", "batch = 4\ndtype = \"int8\"", "expected f32, bf16 or f16"),
        ("config_workers_huge", "batch = 4", "batch = 4\nworkers = 100000", "between 1 and 1024"),
        ("config_negative_limit", "batch = 4", "batch = 4\nlimit = -3", "limit"),
        ("config_unknown_key_type", "batch = 4", "batch = 4\nlimit = \"many\"", "limit"),
        ("config_batch_zero", "batch = 4", "batch = 0", "between 1 and 4096"),
        ("config_device_unknown", "device = \"cpu\"", "device = \"gpu\"", "expected auto, cpu, cuda or cuda:N"),
        ("config_image_size", "image_size = 32", "image_size = 5", "between 32 and 2048"),
        ("config_epsilon_nan", "epsilon = 0.0", "epsilon = nan", "`epsilon`"),
        ("config_no_batch", "batch = 4", "", "missing field `batch`"),
    ];
    for (case, from, to, msg) in cases {
        println!("case {case}");
        let p = fx().join(format!("{case}.toml"));
        std::fs::write(&p, good.replace(from, to)).unwrap();
        let out = eval_config(case, &p);
        expect(&out, 2, msg);
        expect(&out, 2, &format!("{case}.toml"));
        if let Some(key) = to.lines().last() {
            expect(&out, 2, key.split(' ').next().unwrap());
        }
    }
}

#[test]
fn config_with_duplicate_set_names() {
    let cfg = config("dupe.toml", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let ood = &text[text.find("[[ood]]").unwrap()..];
    std::fs::write(&cfg, format!("{text}\n{ood}")).unwrap();
    let out = eval_config("config_dupe", &cfg);
    expect(&out, 2, "two datasets are named `ood`");
}

#[test]
fn tui_reports_a_bad_config_without_a_terminal_too() {
    let cfg = config("tui_bad.toml", "limit = 0");
    let out = bin().arg("--config").arg(&cfg).output().unwrap();
    expect(&out, 2, "the limit must be at least 1");
}

#[test]
fn tui_without_a_terminal() {
    let cfg = config("tui_good.toml", "");
    let out = bin().args(["tui", "--config"]).arg(&cfg).output().unwrap();
    expect(&out, 1, "the TUI needs a terminal");
}

// ---- other commands ----
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

#[test]
fn help_documents_the_exit_statuses() {
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for s in ["0 success", "1 error", "2 usage error", "130", "143"] {
        assert!(text.contains(s), "--help lacks `{s}`:\n{text}");
    }
}

// ---- terminals, pipes, logs ----
#[test]
fn dumb_terminal_gets_plain_progress() {
    let mut args = eval_args("dumb");
    args.extend(ood("ood", "ood"));
    args.extend(size().map(String::from));
    let out = bin().env("TERM", "dumb").args(&args).output().unwrap();
    expect(&out, 0, "images in");
    assert!(
        !out.stderr.contains(&0x1b),
        "escape codes on a dumb terminal"
    );
    assert!(
        !out.stdout.contains(&0x1b),
        "escape codes on a dumb terminal"
    );
    written("dumb");
}

#[test]
fn no_terminal_at_all_for_the_tui() {
    let dir = fx().join("cwd-notty");
    std::fs::create_dir_all(&dir).unwrap();
    let out = bin().current_dir(&dir).output().unwrap();
    expect(&out, 1, "the TUI needs a terminal");
}

#[cfg(unix)]
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let mut args = eval_args("pipe");
    args.extend(ood("ood", "ood"));
    args.extend(size().map(String::from));
    args.push("--json".into());
    let bin_path = assert_cmd::cargo::cargo_bin("gradnorm-tui");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "'{}' {} | true; '{}' predict --device cpu --image-size 32 --checkpoint '{DEMO}' '{}' '{}' | head -c 1 >/dev/null",
        bin_path.display(),
        quoted.join(" "),
        bin_path.display(),
        fx().join("id/0.png").display(),
        fx().join("id/1.png").display(),
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("GRADNORM_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    // The results were written before anything was printed.
    written("pipe");
}

#[test]
fn headless_eval_logs_to_the_state_folder_not_the_working_one() {
    let home = fx().join("home");
    let cwd = fx().join("cwd-log");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut args = eval_args("log");
    args.extend(ood("ood", "ood"));
    args.extend(size().map(String::from));
    let out = Command::cargo_bin("gradnorm-tui")
        .unwrap()
        .current_dir(&cwd)
        .env_remove("GRADNORM_LOG")
        .env_remove("XDG_STATE_HOME")
        .env("HOME", &home)
        .args(&args)
        .output()
        .unwrap();
    expect(&out, 0, "images in");
    assert!(!cwd.join("gradnorm-tui.log").exists());
    let log = if cfg!(target_os = "macos") {
        home.join("Library/Logs/gradnorm-tui/gradnorm-tui.log")
    } else {
        home.join(".local/state/gradnorm-tui/gradnorm-tui.log")
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("run finished"), "{text}");
}

// ---- signals ----
/// Starts eval on a long OOD list, waits for the first progress line,
/// sends `signals` (kill names) and returns the finished output.
#[cfg(unix)]
fn interrupted(case: &str, signals: &[&str]) -> (Option<i32>, String, String) {
    let mut args = eval_args(case);
    let i = args.iter().position(|a| a == "--batch").unwrap();
    args[i + 1] = "2".into();
    args.extend(ood("long", "long.txt"));
    args.extend(size().map(String::from));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("gradnorm-tui"))
        .args(&args)
        .env("GRADNORM_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut err = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        err.push_str(&line);
        if line.contains("img/s") {
            break;
        }
    }
    for sig in signals {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    stderr.read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    (status.code(), reader.join().unwrap(), err)
}

#[cfg(unix)]
#[track_caller]
fn check_interrupted(case: &str, signals: &[&str], code: i32, name: &str) {
    let (status, stdout, stderr) = interrupted(case, signals);
    assert_eq!(status, Some(code), "stderr:\n{stderr}");
    assert!(stderr.contains(name), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The partial table is printed and the partial results written.
    assert!(stdout.contains("| method"), "{stdout}");
    let summary = written(case);
    assert_eq!(summary["cancelled"], true);
    // The first progress line came after the first batch's records.
    // (Batches of the sets are interleaved: count over all of them.)
    assert!(evaluated(&summary, 0) + evaluated(&summary, 1) >= 2);
    assert!(evaluated(&summary, 1) < 20_000);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_cleanly_with_143() {
    check_interrupted("sigterm", &["TERM"], 143, "SIGTERM");
}

#[cfg(unix)]
#[test]
fn sigint_stops_cleanly_with_130() {
    check_interrupted("sigint", &["INT"], 130, "Ctrl-C");
}

#[cfg(unix)]
#[test]
fn sighup_stops_cleanly_with_129() {
    check_interrupted("sighup", &["HUP"], 129, "SIGHUP");
}

#[cfg(unix)]
#[test]
fn a_second_signal_still_keeps_what_was_computed() {
    check_interrupted("sigterm2", &["TERM", "TERM"], 143, "again");
}

#[cfg(unix)]
#[test]
fn ctrl_c_then_sigterm_keeps_the_first_status() {
    check_interrupted("sigint_term", &["INT", "TERM"], 130, "again");
}
