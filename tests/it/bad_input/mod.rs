//! Bad input and faults (issue 17), as a careful new user would try them:
//! images, datasets, checkpoints, flags, configs, signals and terminals.
//! Every case runs the binary and asserts its exit status and its message;
//! a run that stops early must still write and print what it computed.
//! Inputs are tiny: images drawn here, the committed demo checkpoint at
//! 32 x 32, so the whole module runs in seconds. Here: the fixtures and
//! the helpers that run the binary on them.

mod checkpoints;
mod configs;
mod datasets;
mod flags;
mod terminals;

use crate::common;

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

/// The eval arguments of `case` with `flag`'s value set to `value`, plus an
/// OOD set.
fn args_with(case: &str, flag: &str, value: String) -> Vec<String> {
    let mut args = eval_args(case);
    let i = args.iter().position(|a| a == flag).unwrap();
    args[i + 1] = value;
    args.extend(ood("ood", "ood"));
    args
}

/// Eval of `case` at the small size with `flag` (a path flag) set to `path`.
fn with_path(case: &str, flag: &str, path: &Path, extra: &[&str]) -> Output {
    let mut args = args_with(case, flag, path.display().to_string());
    args.extend(size().map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    bin().args(&args).output().unwrap()
}

/// A file `name` holding `text` among the fixtures (list files).
fn list(name: &str, text: &str) -> PathBuf {
    common::write_file(fx(), name, text)
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
