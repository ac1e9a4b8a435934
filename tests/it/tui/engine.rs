//! The real engine behind the app: interleaved batches give metrics for
//! every set from the first batch.

use crate::tui::{app, ch, draw, press};
use gradnorm_core::run::{Event, Role, RunConfig};
use gradnorm_engine::demo::{self, DataSpec};
use gradnorm_engine::model::ModelSpec;
use std::path::{Path, PathBuf};

/// The demo's checkpoint in this checkout, or None (printed as a skip).
fn demo_checkpoint() -> Option<PathBuf> {
    let ckpt = Path::new(env!("CARGO_MANIFEST_DIR")).join(demo::CHECKPOINT);
    if ckpt.is_file() {
        Some(ckpt)
    } else {
        eprintln!("SKIPPED: {} is absent", ckpt.display());
        None
    }
}

#[test]
fn the_real_engine_gives_metrics_for_every_set_after_the_first_batch() {
    let Some(checkpoint) = demo_checkpoint() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let spec = DataSpec {
        seed: 7,
        id_per_class: 6,
        ood_count: 20,
    };
    let data = demo::ensure_data_with(tmp.path(), &spec).unwrap();
    let config = RunConfig {
        model: ModelSpec {
            name: None,
            checkpoint: Some(checkpoint),
        },
        class_names: Some(data.classes.clone()),
        class_order: None,
        id: data.id_spec(),
        ood: data.ood_specs(),
        // The methods that need no fit file (this test makes none).
        methods: demo::methods()
            .into_iter()
            .filter(|m| !m.needs_fit())
            .collect(),
        fit: None,
        preprocess: None,
        image_size: Some(demo::IMAGE_SIZE.to_string().parse().unwrap()),
        batch: "12".parse().unwrap(),
        device: "cpu".parse().unwrap(),
        dtype: "f32".parse().unwrap(),
        limit: None,
        workers: Some("1".parse().unwrap()),
    };
    let mut events = Vec::new();
    gradnorm_engine::engine::Run::new(config.clone())
        .run(&mut |e| events.push(e))
        .unwrap();
    // Everything up to the first batch's progress reports.
    let first_progress = events
        .iter()
        .position(|e| matches!(e, Event::Progress(_)))
        .unwrap();
    let mut app = app();
    for e in events.iter().take(first_progress + 1).cloned() {
        app.apply(e);
    }
    app.tick();
    let info = app.results().info.clone().unwrap();
    let n_sets = info.datasets.len();
    assert!(n_sets >= 3, "{n_sets} sets");
    let in_first: Vec<usize> = app.results().records.iter().map(Vec::len).collect();
    assert_eq!(in_first.iter().sum::<usize>(), 12);
    // Every set is in the first batch, in proportion to its size (60 ID
    // images, 20 per OOD set: 12 = 6 + 2 + 2 + 2).
    let total: usize = info.datasets.iter().map(|d| d.count).sum();
    for (d, ds) in info.datasets.iter().enumerate() {
        let share = 12.0 * ds.count as f64 / total as f64;
        assert!(
            (in_first[d] as f64 - share).abs() <= 1.0,
            "{}: {} of the first 12 ({in_first:?})",
            ds.name,
            in_first[d]
        );
        if ds.role == Role::Ood {
            for m in 0..info.methods.len() {
                assert!(
                    app.analysis().measures(m, d).is_some(),
                    "method {m} set {d}"
                );
            }
        }
    }
    // On screen: no empty cells in the metrics table, and the caveat of
    // few images.
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("± one standard error"), "{screen}");
    let msp = screen.lines().find(|l| l.contains("▶ MSP")).unwrap();
    assert!(!msp.contains(" - "), "{msp}");
    // The whole run: every set finished, each record once.
    let mut all = crate::tui::app();
    for e in events {
        all.apply(e);
    }
    for (d, ds) in info.datasets.iter().enumerate() {
        assert_eq!(all.results().records[d].len(), ds.count);
    }
}
