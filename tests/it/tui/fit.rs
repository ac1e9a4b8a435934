//! The fit in the Setup form: the fits found, each with the model it was
//! made for and whether that is the form's; a model change drops a fit
//! made for another model; a fit made from the form is the fit `fit` makes
//! headless (EfficientNet-Lite0 on the shared ImageNet images); and the
//! run's fit is recorded (summary.json, report.json, the run store).

use super::*;
use crate::tui::checks::demo_run;
use gradnorm_core::run::{DatasetSpec, Device};
use gradnorm_engine::engine::fit::{make_fit, FitJob};
use gradnorm_engine::engine::{OnStoreError, Run};
use gradnorm_engine::score::fit::{Fit, FitInfo};
use gradnorm_engine::score::mahalanobis::ModelStamp;
use gradnorm_engine::store::{export, Recorder, Store};
use gradnorm_tui::tui::discover::FoundFit;
use std::path::PathBuf;

fn stamp(name: &str, classes: usize, head: &str) -> ModelStamp {
    ModelStamp {
        name: name.into(),
        num_classes: classes,
        tap_dims: vec![256, 512, 1024, 2048],
        image_size: 480,
        head_fingerprint: head.into(),
    }
}

fn found(path: &str, model: ModelStamp, images: u64) -> FoundFit {
    FoundFit {
        path: path.into(),
        info: FitInfo {
            model,
            feature_dim: 2048,
            images,
            classes: 10,
        },
    }
}

/// The BiT checkpoint's stamp (the fixture's first checkpoint) and the
/// tiny one's.
fn bit() -> ModelStamp {
    stamp("BiT-S-R101x1", 1000, "fnv1a64:00000000000000b1")
}

fn tiny() -> ModelStamp {
    stamp("BiT-tiny", 10, "fnv1a64:000000000000071e")
}

/// The fixture form with two fits found: one for each checkpoint.
fn setup_with_fits() -> SetupState {
    setup().with_fits(
        vec![
            found(
                "fits/BiT-S-R101x1-imagenet-train.safetensors",
                bit(),
                50_000,
            ),
            found("fits/tiny-imagenet-val.safetensors", tiny(), 1300),
        ],
        "fits".into(),
    )
}

#[test]
fn snapshot_setup_fit_row_and_picker() {
    let mut app = App::new(
        setup_with_fits(),
        "gradnorm-tui.toml".into(),
        no_launch(),
        Previews::inline(picker()),
    );
    checks_fail_on_the_checkpoint(&mut app);
    // The checks loaded the form's model: which fit is for it is known.
    let spec = app.setup().model_spec();
    assert_eq!(app.setup_mut().model_loaded(spec, bit()), None);
    app.setup_mut().select(Row::Fit);
    press(&mut app, &[key(KeyCode::Right)]);
    // The form's run changed: its checks fixed again (see the helper).
    checks_fail_on_the_checkpoint(&mut app);
    assert_eq!(
        app.setup().fit_path(),
        Some(Path::new("fits/BiT-S-R101x1-imagenet-train.safetensors"))
    );
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("for this model, 50,000 images"), "{screen}");
    // The list: each fit with its model, which one is this model's, none,
    // and making one.
    press(&mut app, &[key(KeyCode::Enter)]);
    let screen = draw(&mut app, 120, 40);
    for text in [
        "this model · BiT-S-R101x1, 50,000 images · ",
        "other model · BiT-tiny, 1,300 images · ",
        "none",
        "make a fit from a labelled set…",
    ] {
        assert!(screen.contains(text), "{text}: {screen}");
    }
    snap("setup_fit_picker", &mut app);
    // Making one asks for the labelled set: the form's sets, or a path.
    typed(&mut app, "make");
    press(&mut app, &[key(KeyCode::Enter)]);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("make a fit from"), "{screen}");
    snap_text("setup_fit_set_picker_120x40", screen);
    press(&mut app, &[key(KeyCode::Esc)]);
    assert!(app.setup().picker.is_none());
    assert!(!app.fitting());
}

#[test]
fn a_model_change_drops_a_fit_made_for_another_model() {
    let mut s = setup_with_fits();
    let before = s.model_spec();
    s.select(Row::Fit);
    s.on_key(key(KeyCode::Right));
    assert_eq!(
        s.fit_path(),
        Some(Path::new("fits/BiT-S-R101x1-imagenet-train.safetensors"))
    );
    assert_eq!(s.model_loaded(before.clone(), bit()), None);
    assert_eq!(
        (s.fit_matches(0), s.fit_matches(1)),
        (Some(true), Some(false))
    );
    // Another checkpoint: the fit stays until the checks have loaded it...
    s.select(Row::Checkpoint);
    s.on_key(key(KeyCode::Right));
    let after = s.model_spec();
    assert_ne!(before, after);
    assert_eq!(s.fit_matches(0), None);
    // ...an answer about the previous model changes nothing...
    assert_eq!(s.model_loaded(before, bit()), None);
    assert!(s.fit_path().is_some());
    // ...and the new model's stamp drops it, naming the fit that matches.
    let said = s.model_loaded(after.clone(), tiny()).expect("a message");
    assert!(said.contains("BiT-S-R101x1-imagenet-train"), "{said}");
    assert!(said.contains("1 found fit(s) match it"), "{said}");
    assert_eq!(s.fit_path(), None);
    assert_eq!(s.to_config().unwrap().fit, None);
    // A fit made for the new model is kept across a check of it.
    s.select(Row::Fit);
    s.on_key(key(KeyCode::Left));
    assert_eq!(
        s.fit_path(),
        Some(Path::new("fits/tiny-imagenet-val.safetensors"))
    );
    assert_eq!(s.model_loaded(after, tiny()), None);
    assert_eq!(
        s.to_config().unwrap().fit,
        Some(PathBuf::from("fits/tiny-imagenet-val.safetensors"))
    );
}

/// Field by field, exactly: the same code on the same images.
fn assert_same_fit(a: &Fit, b: &Fit) {
    assert_eq!(a.model, b.model);
    assert_eq!(
        (a.feature_dim, a.images, a.bank_rows),
        (b.feature_dim, b.images, b.bank_rows)
    );
    assert_eq!(a.by_class.classes, b.by_class.classes);
    assert_eq!(a.by_class.means, b.by_class.means);
    assert_eq!(a.by_class.covariance, b.by_class.covariance);
    assert_eq!(a.overall.means, b.overall.means);
    assert_eq!(a.overall.covariance, b.overall.covariance);
    assert_eq!(a.max_logit_mean.to_bits(), b.max_logit_mean.to_bits());
    assert_eq!(a.klm, b.klm);
    assert_eq!(a.bank, b.bank);
}

#[test]
fn a_fit_made_in_the_form_is_the_fit_made_headless() {
    let Some(shared) = common::shared() else {
        return;
    };
    let ckpt = shared.join("models/efficientnet-lite0/efficientnet-lite0.safetensors");
    let val = shared.join("data/imagenet-val/val_list.txt");
    let textures = shared.join("data/ood/textures");
    for p in [&ckpt, &val, &textures] {
        if !p.exists() {
            eprintln!("SKIPPED: {} is absent", p.display());
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    // Headless: 24 of the 1,300 validation images, evenly spaced.
    let headless = tmp.path().join("headless.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gradnorm-tui"))
        .arg("fit")
        .arg("--checkpoint")
        .arg(&ckpt)
        .args([
            "--device", "cpu", "--batch", "8", "--limit", "24", "--train",
        ])
        .arg(&val)
        .arg("--out")
        .arg(&headless)
        .output()
        .unwrap();
    common::assert_success(&out);

    // The form: the same checkpoint, set, batch and limit.
    let sets = vec![
        Candidate {
            name: "imagenet-val".into(),
            path: val.clone(),
            root: None,
        },
        Candidate {
            name: "textures".into(),
            path: textures,
            root: None,
        },
    ];
    let fits_dir = tmp.path().join("fits");
    let mut s = SetupState::new(vec![ckpt.clone()], sets).with_fits(Vec::new(), fits_dir.clone());
    s.device = Device::Cpu;
    for m in &mut s.methods {
        m.enabled = matches!(m.method.key(), "msp" | "react" | "vim");
    }
    let mut app = App::new(s, tmp.path().join("x.toml"), no_launch(), Previews::off());
    let ctrl_u = KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL);
    app.setup_mut().select(Row::Batch);
    press(
        &mut app,
        &[key(KeyCode::Enter), ctrl_u, ch('8'), key(KeyCode::Enter)],
    );
    app.setup_mut().select(Row::Limit);
    press(
        &mut app,
        &[key(KeyCode::Enter), ch('2'), ch('4'), key(KeyCode::Enter)],
    );
    // The fit row: the list, "make a fit", the ImageNet set.
    app.setup_mut().select(Row::Fit);
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(&mut app, "make");
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(&mut app, "imagenet");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.fitting(), "{:?}", app.message());
    // Off the UI thread: the form draws while it goes.
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("c cancels"), "{screen}");
    while app.fitting() {
        std::thread::sleep(std::time::Duration::from_millis(20));
        app.tick();
    }
    let (said, _) = app.message().cloned().unwrap();
    assert!(said.starts_with("fit written"), "{said}");
    let made = fits_dir.join("efficientnet-lite0-imagenet-val.safetensors");
    assert_eq!(app.setup().fit_path(), Some(made.as_path()));
    assert_same_fit(&Fit::read(&made).unwrap(), &Fit::read(&headless).unwrap());
    assert_eq!(Fit::read(&made).unwrap().images, 24);

    // The checks, asked again, load the model: the fit is this model's,
    // and the run the form describes would start with it.
    app.tick();
    let i = app.setup().fit.unwrap();
    assert_eq!(app.setup().fit_matches(i), Some(true));
    assert_eq!(app.setup().problems(), Some(&[][..]));
    assert_eq!(app.setup().to_config().unwrap().fit, Some(made));
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("for this model, 24 images"), "{screen}");
    assert!(screen.contains("Ready to start"), "{screen}");
}

#[test]
fn a_fit_made_in_the_form_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = demo_run(dir.path());
    let s = SetupState::from_config(&config, Vec::new(), Vec::new())
        .with_fits(Vec::new(), dir.path().join("fits"));
    let mut app = App::new(s, dir.path().join("x.toml"), no_launch(), Previews::off());
    let job = app
        .setup()
        .fit_job(DatasetSpec {
            name: "shapes".into(),
            path: data.id.clone(),
            root: None,
            format: None,
            group: None,
        })
        .unwrap();
    let out = job.out.clone();
    app.make_fit(job);
    assert!(app.fitting());
    // `c` stops it between batches: nothing is written or chosen.
    press(&mut app, &[ch('c')]);
    while app.fitting() {
        std::thread::sleep(std::time::Duration::from_millis(20));
        app.tick();
    }
    let (said, _) = app.message().cloned().unwrap();
    assert!(said.contains("cancelled"), "{said}");
    assert!(!out.exists());
    assert_eq!(app.setup().fit_path(), None);
    assert_eq!(app.setup().fitting, None);
}

#[test]
fn the_run_records_its_fit_in_summary_report_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, data) = demo_run(dir.path());
    let fit = dir.path().join("fits/demo-shapes.safetensors");
    let job = FitJob {
        model: config.model.clone(),
        device: Device::Cpu,
        dtype: config.dtype,
        image_size: config.image_size.map(|s| s.get()),
        preprocess: None,
        sets: vec![data.id_spec()],
        limit: None,
        bank: gradnorm_engine::score::fit::DEFAULT_BANK,
        nac_rows: 0,
        batch: 8,
        workers: 1,
        out: fit.clone(),
    };
    make_fit(&job, Default::default(), &mut |_| {}).unwrap();
    config.fit = Some(fit.clone());
    config.methods.push(Method::from_key("react").unwrap());
    let store_dir = dir.path().join("runs");
    let recorder = Recorder::new(Store::open(&store_dir).unwrap(), &config, None).unwrap();
    let mut results = gradnorm_core::run::RunResults::new();
    let mut events = Vec::new();
    Run::new(config)
        .record(recorder, OnStoreError::Stop)
        .run(&mut |e| {
            events.push(e.clone());
            results.apply(e)
        })
        .unwrap();
    let want = serde_json::json!(fit);

    // summary.json, as `eval` writes it.
    let out = dir.path().join("out");
    gradnorm_core::run::write_run(&out, &results).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["fit"], want);

    // The run store: its row, and report.json of the stored run.
    let store = Store::open(&store_dir).unwrap();
    let rows = store.list().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].fit.as_ref(), Some(&fit));
    let stored = store.load(rows[0].id).unwrap().summary().unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&export::summary(&stored, export::Format::Json)).unwrap();
    assert_eq!(report["fit"], want);
    let md = export::summary(&stored, export::Format::Md);
    assert!(md.contains(&format!("fit: {}", fit.display())), "{md}");

    // The TUI: the Run panel of the dashboard, and the Runs screen's detail.
    let mut app = app();
    *app.runs_mut() = gradnorm_tui::tui::runs::RunsState::new(store_dir);
    for e in events {
        app.apply(e);
    }
    app.tick();
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 200, 50);
    assert!(screen.contains("fit demo-shapes.safetensors"), "{screen}");
    press(&mut app, &[ch('6')]);
    let screen = draw(&mut app, 200, 50);
    assert!(
        screen.contains(&format!("fit: {}", fit.display())),
        "{screen}"
    );
}

/// The scores of `config`'s run, per dataset, recorded in `store` when given.
fn scores_of(config: &RunConfig, store: Option<&Path>) -> Vec<Vec<Vec<f32>>> {
    let mut results = gradnorm_core::run::RunResults::new();
    let run = Run::new(config.clone());
    let run = match store {
        Some(dir) => run.record(
            Recorder::new(Store::open(dir).unwrap(), config, None).unwrap(),
            OnStoreError::Stop,
        ),
        None => run,
    };
    run.run(&mut |e| results.apply(e)).unwrap();
    results
        .records
        .iter()
        .map(|rs| rs.iter().map(|r| r.scores.clone()).collect())
        .collect()
}

#[test]
fn a_run_with_another_fit_reuses_no_stored_score() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, data) = demo_run(dir.path());
    // Two fits of the demo model: 5 and 10 of its labelled shapes.
    let fit = |limit: Option<usize>, name: &str| {
        let out = dir.path().join(name);
        let job = FitJob {
            model: config.model.clone(),
            device: Device::Cpu,
            dtype: config.dtype,
            image_size: config.image_size.map(|s| s.get()),
            preprocess: None,
            sets: vec![data.id_spec()],
            limit,
            bank: gradnorm_engine::score::fit::DEFAULT_BANK,
            nac_rows: 0,
            batch: 8,
            workers: 1,
            out: out.clone(),
        };
        make_fit(&job, Default::default(), &mut |_| {}).unwrap();
        out
    };
    let (a, b) = (fit(Some(5), "a.safetensors"), fit(None, "b.safetensors"));
    config.methods.push(Method::from_key("react").unwrap());
    let store = dir.path().join("runs");
    config.fit = Some(a.clone());
    let first = scores_of(&config, Some(&store));
    // The same images with the other fit: ReAct's scores are the fresh
    // ones of that fit, not those stored with the first.
    config.fit = Some(b);
    let second = scores_of(&config, Some(&store));
    let fresh = scores_of(&config, None);
    assert_eq!(second, fresh);
    assert_ne!(second, first);
    // The first fit again: its stored scores, unchanged by the second run.
    config.fit = Some(a);
    assert_eq!(scores_of(&config, Some(&store)), first);
}
