//! The embedded demo: its generator, its training, and its committed
//! checkpoint as a fresh clone sees it.

use gradnorm_engine::demo::{self, generate, train, DataSpec};
use gradnorm_engine::model::{self, Classifier};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// FNV-1a, 64 bits: an independent fingerprint of each file's bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Relative path -> hash of every file under `root`.
fn hashes(root: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fnv1a(&std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn pngs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    v.sort();
    v
}

const SMALL: DataSpec = DataSpec {
    seed: 7,
    id_per_class: 4,
    ood_count: 16,
};

#[test]
fn generator_is_deterministic_balanced_and_sized() {
    let tmp = tempfile::tempdir().unwrap();
    let a = demo::ensure_data_with(&tmp.path().join("a"), &SMALL).unwrap();
    let b = demo::ensure_data_with(&tmp.path().join("b"), &SMALL).unwrap();
    let other = DataSpec { seed: 8, ..SMALL };
    let c = demo::ensure_data_with(&tmp.path().join("c"), &other).unwrap();
    let (ha, hb, hc) = (hashes(&a.root), hashes(&b.root), hashes(&c.root));
    assert_eq!(ha, hb, "same seed, different bytes");
    let images = ha
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "png"));
    let changed = images.clone().filter(|p| ha[*p] != hc[*p]).count();
    assert_eq!(
        changed,
        images.count(),
        "another seed must change every image"
    );

    // Balanced classes in sorted (label) order, and the class file agrees.
    let mut folders: Vec<String> = std::fs::read_dir(&a.id)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders.len(), 10);
    let listed: Vec<String> = std::fs::read_to_string(&a.classes)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(listed, folders);
    let mut files: Vec<PathBuf> = Vec::new();
    for f in &folders {
        let in_class = pngs(&a.id.join(f));
        assert_eq!(in_class.len(), SMALL.id_per_class, "class {f}");
        files.extend(in_class);
    }
    assert_eq!(a.ood.len(), 3);
    for (name, dir) in &a.ood {
        let set = pngs(dir);
        assert_eq!(set.len(), SMALL.ood_count, "{name}");
        files.extend(set);
    }
    for path in &files {
        let img = image::open(path).unwrap();
        assert_eq!((img.width(), img.height()), (64, 64), "{}", path.display());
        assert_eq!(img.color(), image::ColorType::Rgb8, "{}", path.display());
    }
    // The OOD sets hold every variant in turn.
    for kind in generate::OodKind::ALL {
        let names: Vec<String> = pngs(&a.root.join(kind.name()))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for v in kind.variants() {
            assert!(
                names.iter().any(|n| n.ends_with(&format!("-{v}.png"))),
                "{v}"
            );
        }
    }
}

#[test]
fn stale_folders_are_redrawn_and_foreign_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("demo");
    let first = hashes(&demo::ensure_data_with(&root, &SMALL).unwrap().root);
    // A manifest from another generator version marks the folder stale.
    let manifest = root.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let stale = text.replace("\"generator_version\": ", "\"generator_version\": 1000");
    assert_ne!(stale, text);
    std::fs::write(&manifest, stale).unwrap();
    std::fs::remove_file(root.join("id/star/0001.png")).unwrap();
    let again = hashes(&demo::ensure_data_with(&root, &SMALL).unwrap().root);
    assert_eq!(first, again);
    // Counts are part of the manifest: more images means a new folder.
    let bigger = DataSpec {
        id_per_class: 5,
        ..SMALL
    };
    demo::ensure_data_with(&root, &bigger).unwrap();
    assert_eq!(pngs(&root.join("id/star")).len(), 5);

    // A folder that is not the demo's is never deleted.
    let foreign = tmp.path().join("mine");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    let err = demo::ensure_data_with(&foreign, &SMALL).unwrap_err();
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert!(foreign.join("notes.txt").is_file());
}

#[test]
fn train_demo_learns_on_a_tiny_budget() {
    // 200 images seen three times: too few to learn the shapes in general
    // (that takes tens of thousands), enough to show that the loop fits
    // what it is shown.
    let cfg = train::TrainConfig {
        train_per_class: 20,
        fresh_each_epoch: false,
        heldout_per_class: 5,
        epochs: 3,
        batch: 20,
        lr: 3e-3,
        seed: 3,
        ..train::TrainConfig::default()
    };
    let device = candle_core::Device::Cpu;
    let trained = train::train(&cfg, &device, &mut |_| {}).unwrap();
    let losses = &trained.step_losses;
    assert_eq!(losses.len(), 3 * 200 / 20);
    // The head starts at zero: the first loss is ln(10) exactly.
    assert!((losses[0] - 10f32.ln()).abs() < 1e-4, "{}", losses[0]);
    let head: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let tail: f32 = losses[losses.len() - 5..].iter().sum::<f32>() / 5.0;
    assert!(tail < 0.8 * head, "loss {head} -> {tail}");
    let (images, labels) = train::split(cfg.seed, "train", cfg.train_per_class);
    let acc = train::accuracy(&trained.model, &images, &labels, 50).unwrap();
    // Chance is 10%; 200 images make 30% far beyond luck.
    assert!(acc > 0.3, "accuracy {acc} on the training images");

    // The saved file loads as a BiT checkpoint and gives the same logits
    // (up to f16 storage).
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny.safetensors");
    train::save(&trained.varmap, &path).unwrap();
    let loaded = model::load_checkpoint(&path, None, &device, candle_core::DType::F32).unwrap();
    assert_eq!(loaded.info().num_classes, 10);
    let (images, _) = train::split(99, "probe", 1);
    let idx: Vec<usize> = (0..images.len()).collect();
    let x = train::batch_tensor(&images, &idx, &device).unwrap();
    let want = trained.model.forward(&x).unwrap().logits;
    let got = loaded.forward(&x).unwrap().logits;
    let diff: f32 = (want - got)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff < 0.05, "logits differ by {diff}");
}

/// A `git clone` of this checkout's committed state, or None (and why).
fn fresh_clone(into: &Path) -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let head = Command::new("git")
        .args(["-C", &here.to_string_lossy(), "rev-parse", "HEAD"])
        .output();
    let head = match head {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            eprintln!(
                "SKIPPED: no git, or {} is not a git checkout",
                here.display()
            );
            return None;
        }
    };
    let dir = into.join("clone");
    let ok = Command::new("git")
        .args(["clone", "--quiet", "--no-checkout"])
        .arg(here)
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("git")
            .args([
                "-C",
                &dir.to_string_lossy(),
                "checkout",
                "--quiet",
                "--detach",
                &head,
            ])
            .status()
            .is_ok_and(|s| s.success());
    assert!(ok, "git clone of {} failed", here.display());
    Some(dir)
}

#[test]
fn a_fresh_clone_runs_the_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(clone) = fresh_clone(tmp.path()) else {
        return;
    };
    let ckpt = clone.join(demo::CHECKPOINT);
    assert!(ckpt.is_file(), "{} is not committed", demo::CHECKPOINT);
    let size = std::fs::metadata(&ckpt).unwrap().len();
    assert!(size < 8_000_000, "checkpoint of {size} bytes");
    let device = candle_core::Device::Cpu;
    let model = model::load_checkpoint(&ckpt, None, &device, candle_core::DType::F32).unwrap();
    assert_eq!(model.info().num_classes, generate::CLASSES.len());

    // The committed weights classify fresh shapes (a split no run used).
    let (images, labels) = train::split(12345, "fresh-clone", 10);
    let acc = train::accuracy(model.as_ref(), &images, &labels, 50).unwrap();
    assert!(acc >= 0.9, "accuracy {acc} on 100 new shapes");

    // The run configuration draws the data and names every set and method.
    let cfg = demo::run_config(&clone).unwrap();
    assert_eq!(cfg.ood.len(), 3);
    assert!(cfg.id.path.join("circle").is_dir());
    assert_eq!(cfg.methods, demo::methods());

    // `eval --demo` from the clone prints the paper's table.
    let out = Command::new(env!("CARGO_BIN_EXE_gradnorm-tui"))
        .args(["eval", "--demo", "--limit", "40"])
        .current_dir(&clone)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "eval --demo failed:\n{stdout}\n{stderr}"
    );
    for word in ["textures", "novel-shapes", "near-shapes"]
        .into_iter()
        .chain(demo::methods().iter().map(|m| m.label()))
    {
        assert!(stdout.contains(word), "no `{word}` in:\n{stdout}");
    }
}
