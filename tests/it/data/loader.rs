//! The loader: every image in order, corrupt files recorded (never
//! replaced), cancellation; and a throughput measurement.

use super::{encode, noise};
use crate::common;

use gradnorm_engine::data::image::{load_rgb, to_input};
use gradnorm_engine::data::{batches, Batch, Dataset, Item, LoaderConfig};
use gradnorm_engine::model::InputSpec;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn config(size: usize, batch: usize, workers: usize) -> LoaderConfig {
    LoaderConfig {
        input: InputSpec::half(size),
        batch,
        workers,
        prefetch: 2,
    }
}

fn collect(items: &[Item], cfg: LoaderConfig) -> Vec<Batch> {
    batches(items.to_vec().into(), cfg, Arc::new(AtomicBool::new(false))).collect()
}

/// Writes `n` small images of different sizes and formats.
fn write_images(dir: &Path, n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let img =
                image::DynamicImage::ImageRgb8(noise(9 + i as u32 % 7, 5 + i as u32 % 4, i as u32));
            let (ext, format) = if i % 2 == 0 {
                ("png", image::ImageFormat::Png)
            } else {
                ("jpg", image::ImageFormat::Jpeg)
            };
            let path = dir.join(format!("{i:03}.{ext}"));
            std::fs::write(&path, encode(&img, format)).unwrap();
            Item {
                path,
                label: Some(i),
            }
        })
        .collect()
}

#[test]
fn loader_delivers_every_image_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let items = write_images(tmp.path(), 23);
    let size = 12;
    let per = 3 * size * size;
    let check = |out: &[Batch], batch: usize| {
        assert_eq!(out.len(), items.len().div_ceil(batch));
        let indices: Vec<usize> = out.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(indices, (0..items.len()).collect::<Vec<_>>());
        for b in out {
            assert!(b.failures.is_empty());
            assert_eq!(b.data.len(), b.indices.len() * per);
            for (j, &i) in b.indices.iter().enumerate() {
                let want = to_input(&load_rgb(&items[i].path).unwrap(), &InputSpec::half(size));
                assert!(b.data[j * per..(j + 1) * per] == want[..], "item {i}");
            }
        }
    };
    for (batch, workers) in [(5, 3), (1, 2), (64, 0)] {
        check(&collect(&items, config(size, batch, workers)), batch);
    }
    // Handing buffers back (which later batches then reuse) changes nothing.
    let cancel = Arc::new(AtomicBool::new(false));
    let mut loader = batches(items.clone().into(), config(size, 1, 2), cancel);
    let mut out = Vec::new();
    while let Some(b) = loader.next() {
        out.push(b.clone());
        loader.recycle(b.data);
    }
    check(&out, 1);
}

#[test]
fn corrupt_files_are_recorded_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let mut items = write_images(tmp.path(), 4);
    let jpeg = encode(
        &image::DynamicImage::ImageRgb8(noise(64, 64, 9)),
        image::ImageFormat::Jpeg,
    );
    let bad = [
        (
            "truncated.jpg",
            jpeg[..jpeg.len() / 2].to_vec(),
            "truncated",
        ),
        ("no_eoi.jpg", jpeg[..jpeg.len() - 2].to_vec(), "truncated"),
        ("empty.jpg", Vec::new(), "not an image"),
        (
            "text.jpg",
            b"hello, I am not a JPEG\n".to_vec(),
            "not an image",
        ),
        (
            "broken.png",
            encode(
                &image::DynamicImage::ImageRgb8(noise(8, 8, 3)),
                image::ImageFormat::Png,
            )[..40]
                .to_vec(),
            "decode",
        ),
    ];
    // Interleave: good, bad, good, bad, ..., then a missing file.
    let mut all = Vec::new();
    let mut expected_failures = Vec::new();
    for (k, (name, bytes, why)) in bad.iter().enumerate() {
        if let Some(good) = items.pop() {
            all.push(good);
        }
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        expected_failures.push((all.len(), *why));
        all.push(Item {
            path,
            label: Some(k),
        });
    }
    expected_failures.push((all.len(), "cannot read"));
    all.push(Item {
        path: tmp.path().join("missing.jpg"),
        label: None,
    });
    let good: Vec<usize> = (0..all.len())
        .filter(|i| !expected_failures.iter().any(|f| f.0 == *i))
        .collect();
    assert_eq!(good.len(), 4);

    let size = 8;
    let out = collect(&all, config(size, 3, 2));
    assert_eq!(out.len(), all.len().div_ceil(3));
    let indices: Vec<usize> = out.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(indices, good);
    let failures: Vec<(usize, String)> = out.iter().flat_map(|b| b.failures.clone()).collect();
    assert_eq!(failures.len(), expected_failures.len());
    for ((i, reason), (want_i, want_why)) in failures.iter().zip(&expected_failures) {
        assert_eq!(i, want_i);
        assert!(
            reason.contains(want_why),
            "item {i}: `{reason}` lacks `{want_why}`"
        );
    }
    for b in &out {
        let per = 3 * size * size;
        assert_eq!(b.data.len(), b.indices.len() * per);
        for (j, &i) in b.indices.iter().enumerate() {
            let want = to_input(&load_rgb(&all[i].path).unwrap(), &InputSpec::half(size));
            assert!(b.data[j * per..(j + 1) * per] == want[..], "item {i}");
        }
    }
    // A batch whose every file failed still arrives, empty.
    let only_bad: Vec<Item> = all
        .iter()
        .filter(|i| i.path.to_string_lossy().contains("missing"))
        .cloned()
        .collect();
    let out = collect(&only_bad, config(size, 4, 1));
    assert_eq!(out.len(), 1);
    assert!(out[0].indices.is_empty() && out[0].data.is_empty() && out[0].failures.len() == 1);

    // load_rgb's errors name the file and the reason.
    let err = load_rgb(&tmp.path().join("truncated.jpg"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated.jpg") && err.contains("truncated JPEG"),
        "{err}"
    );
    let err = load_rgb(&tmp.path().join("missing.jpg"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.jpg"), "{err}");
}

#[test]
fn cancel_and_drop_stop_the_loader() {
    let tmp = tempfile::tempdir().unwrap();
    let few = write_images(tmp.path(), 3);
    // Many items (the same few files) so that loading would take long.
    let items: Arc<[Item]> = few
        .iter()
        .cycle()
        .take(20_000)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let cancel = Arc::new(AtomicBool::new(false));
    let mut loader = batches(items.clone(), config(64, 4, 2), cancel.clone());
    let first = loader.next().unwrap();
    assert_eq!(first.indices, [0, 1, 2, 3]);
    cancel.store(true, Ordering::Relaxed);
    assert!(loader.next().is_none());
    assert!(loader.next().is_none());
    drop(loader);

    // Dropping mid-way returns (the producer is joined) without draining.
    let mut loader = batches(items, config(64, 4, 2), Arc::new(AtomicBool::new(false)));
    assert!(loader.next().is_some());
    drop(loader);
}

// ---------------------------------------------------------------------------
// Throughput (a measurement, not a test):
// cargo test --test it data::loader::throughput -- --ignored --nocapture

#[test]
#[ignore]
fn throughput() {
    let Some(shared) = common::shared() else {
        return;
    };
    let ds = Dataset::open(&shared.join("data/imagenet-val/val_list.txt"), None).unwrap();
    let items: Arc<[Item]> = ds.items.into();
    for size in [480, 224] {
        let t = std::time::Instant::now();
        let mut n = 0;
        let cancel = Arc::new(AtomicBool::new(false));
        let mut loader = batches(items.clone(), config(size, 32, 0), cancel);
        while let Some(b) = loader.next() {
            assert!(b.failures.is_empty());
            n += b.indices.len();
            // As a consumer that copies batches to the device would.
            loader.recycle(b.data);
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "imagenet-val at {size}: {n} images in {secs:.2} s = {:.1} img/s on {} threads",
            n as f64 / secs,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }
}
