//! The engine's own pre-run checks (`engine::check`), as the Setup form's
//! Plan panel shows them: "Ready" only when they pass, each failure named;
//! a run they refuse is not started from the form, and one refused by the
//! engine is not recorded in the run store. On the demo's checkpoint and a
//! few of its images drawn into a temporary folder.

use super::*;
use gradnorm_core::run::{Batch, DType, Device, ImageSize, ModelSpec};
use gradnorm_engine::demo::{self, DataSpec};
use gradnorm_engine::engine::{self, OnStoreError, Run};
use gradnorm_engine::store::{Recorder, Store};
use std::path::PathBuf;

fn demo_checkpoint() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(demo::CHECKPOINT)
}

/// The demo model on a few of its own images, with two methods that need
/// nothing else: a run that starts.
pub(crate) fn demo_run(dir: &Path) -> (RunConfig, demo::DemoData) {
    let spec = DataSpec {
        seed: demo::SEED,
        id_per_class: 1,
        ood_count: 2,
    };
    let data = demo::ensure_data_with(&dir.join("demo"), &spec).unwrap();
    let config = RunConfig {
        model: ModelSpec {
            name: None,
            checkpoint: Some(demo_checkpoint()),
        },
        class_names: None,
        class_order: None,
        id: data.id_spec(),
        ood: data.ood_specs(),
        methods: ["msp", "energy"]
            .iter()
            .map(|k| Method::from_key(k).unwrap())
            .collect(),
        fit: None,
        image_size: Some(ImageSize::new(demo::IMAGE_SIZE).unwrap()),
        preprocess: None,
        batch: Batch::new(8).unwrap(),
        device: Device::Cpu,
        dtype: DType::F32,
        limit: None,
        workers: None,
    };
    (config, data)
}

#[test]
fn the_checks_pass_for_a_run_that_starts_and_name_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = demo_run(dir.path());
    assert_eq!(engine::check(&good), Vec::<String>::new());
    // Passing means starting: the same config runs to its end.
    let mut images = 0;
    Run::new(good.clone())
        .run(&mut |e| {
            if let Event::Records { records, .. } = e {
                images += records.len();
            }
        })
        .unwrap();
    assert_eq!(images, 10 + 3 * 2);

    // A missing checkpoint, named.
    let mut bad = good.clone();
    let missing = dir.path().join("no-such-model.safetensors");
    bad.model.checkpoint = Some(missing.clone());
    let problems = engine::check(&bad);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("no-such-model.safetensors"),
        "{problems:?}"
    );
    // Every failure listed, not only the first: an unreadable OOD set too.
    bad.ood[1].path = dir.path().join("no-such-set");
    let problems = engine::check(&bad);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("no-such-set"), "{problems:?}");

    // Three class names for the model's ten classes.
    let names = dir.path().join("names.txt");
    std::fs::write(&names, "a\nb\nc\n").unwrap();
    let mut bad = good.clone();
    bad.class_names = Some(names);
    let problems = engine::check(&bad);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("names.txt"), "{problems:?}");

    // A method that needs a fit, given none.
    let mut bad = good.clone();
    bad.methods.push(Method::from_key("knn").unwrap());
    let problems = engine::check(&bad);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].to_lowercase().contains("fit"), "{problems:?}");
}

#[test]
fn the_checks_hold_a_fit_to_its_model_and_each_method_to_its_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (good, data) = demo_run(dir.path());
    // The demo model's fit: KNN runs on it.
    let fit = demo::fit::ensure_fit(&data.root, &demo_checkpoint(), demo::SEED).unwrap();
    let mut fitted = good.clone();
    fitted.fit = Some(fit.clone());
    fitted.methods.push(Method::from_key("knn").unwrap());
    assert_eq!(engine::check(&fitted), Vec::<String>::new());
    // The same fit for another model (EfficientNet-Lite0, random weights).
    let mut other = fitted.clone();
    other.model = ModelSpec {
        name: Some("efficientnet-lite0".into()),
        checkpoint: None,
    };
    let problems = engine::check(&other);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("fit"), "{problems:?}");

    // MDS on a fit of one image per class (the small ID set: 1 per class).
    let device = candle_core::Device::Cpu;
    let model = gradnorm_engine::model::load_checkpoint(
        &demo_checkpoint(),
        None,
        &device,
        candle_core::DType::F32,
    )
    .unwrap();
    let items = gradnorm_engine::data::dataset::Dataset::open(&data.id, None)
        .unwrap()
        .items;
    let options = gradnorm_engine::score::fit::FitOptions {
        input: gradnorm_core::run::InputSpec {
            size: demo::IMAGE_SIZE,
            ..model.info().input
        },
        batch: 10,
        workers: 1,
        bank: gradnorm_engine::score::fit::DEFAULT_BANK,
        nac_rows: 0,
    };
    let (one_each, _) = gradnorm_engine::score::fit::fit_images(
        model.as_ref(),
        items,
        options,
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
        &mut |_, _| {},
    )
    .unwrap();
    let one_each_file = dir.path().join("one-each.safetensors");
    one_each.save(&one_each_file).unwrap();
    let mut mds = good.clone();
    mds.fit = Some(one_each_file);
    mds.methods.push(Method::from_key("mds").unwrap());
    let problems = engine::check(&mds);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("needs at least two fit images in some class"),
        "{problems:?}"
    );
}

#[test]
fn a_run_refused_before_it_starts_is_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = demo_run(dir.path());
    let store_dir = dir.path().join("runs");
    let mut bad = good.clone();
    bad.model.checkpoint = Some(dir.path().join("no-such-model.safetensors"));
    for _ in 0..2 {
        let recorder = Recorder::new(Store::open(&store_dir).unwrap(), &bad, None).unwrap();
        let err = Run::new(bad.clone())
            .record(recorder, OnStoreError::Stop)
            .run(&mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("no-such-model"), "{err}");
    }
    assert_eq!(Store::open(&store_dir).unwrap().list().unwrap().len(), 0);
    // A run that starts is recorded, once.
    let recorder = Recorder::new(Store::open(&store_dir).unwrap(), &good, None).unwrap();
    Run::new(good.clone())
        .record(recorder, OnStoreError::Stop)
        .run(&mut |_| {})
        .unwrap();
    let runs = Store::open(&store_dir).unwrap().list().unwrap();
    assert_eq!(runs.len(), 1);
}

#[test]
fn the_plan_says_ready_only_when_the_checks_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = demo_run(dir.path());
    let s = SetupState::from_config(&good, vec![], vec![]);
    // The launcher panics: no run may start here.
    let mut app = App::new(s, "x.toml".into(), no_launch(), Previews::off());
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("Ready to start (s)"), "{screen}");
    assert_eq!(app.setup().problems(), Some(&[][..]));

    // A checkpoint that is not there: the Plan names it, and s refuses.
    assert!(app.setup_mut().select(Row::Checkpoint));
    press(&mut app, &[key(KeyCode::Enter)]);
    let missing = dir.path().join("no-such-model.safetensors");
    typed(&mut app, &missing.display().to_string());
    press(&mut app, &[key(KeyCode::Enter)]);
    let screen = draw(&mut app, 120, 40);
    assert!(!screen.contains("Ready to start"), "{screen}");
    assert!(screen.contains("Cannot start:"), "{screen}");
    assert!(screen.contains("no-such-model.safetensors"), "{screen}");
    press(&mut app, &[ch('s')]);
    assert_eq!(app.screen(), Screen::Setup);
    let said = app.message().map(|m| m.0.clone()).unwrap_or_default();
    assert!(
        said.starts_with("cannot start:") && said.contains("no-such-model"),
        "{said}"
    );
    // The file made while away from the form: seen on coming back.
    std::os::unix::fs::symlink(demo_checkpoint(), &missing).unwrap();
    press(&mut app, &[ch('2'), ch('1')]);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("Ready to start (s)"), "{screen}");
    // Back to the demo's checkpoint: ready too.
    assert!(app.setup_mut().select(Row::Checkpoint));
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(&mut app, &demo_checkpoint().display().to_string());
    press(&mut app, &[key(KeyCode::Enter)]);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("Ready to start (s)"), "{screen}");
}

/// The checks list the model's weight layers (what `gradnorm-tui layers`
/// prints), and GradNorm's `layer` row picks from them: the head first,
/// then the model's weights; typing filters, Enter sets the parameter. Before
/// any check has answered a name can still be typed.
#[test]
fn the_layer_row_picks_from_the_models_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = demo_run(dir.path());
    config.methods.push(Method::from_key("gradnorm").unwrap());
    let found = engine::inspect(&config);
    assert_eq!(found.problems, Vec::<String>::new());
    let model = gradnorm_engine::model::load(
        &config.model,
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    let listed: Vec<String> = gradnorm_engine::model::probe::weight_layers(model.as_ref())
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(found.layers, listed);
    assert_eq!(found.layers.last().map(String::as_str), Some("head.conv"));

    let gradnorm = gradnorm_core::method::registry::METHODS
        .iter()
        .position(|d| d.key == "gradnorm")
        .unwrap();
    let layer_param = gradnorm_core::method::registry::find("gradnorm")
        .unwrap()
        .params
        .iter()
        .position(|p| p.name == "layer")
        .unwrap();
    let row = Row::Param(gradnorm, layer_param);
    let layer_of = |s: &SetupState| {
        let c = s.to_config().unwrap();
        let m = c.methods.iter().find(|m| m.key() == "gradnorm").unwrap();
        m.text("layer").unwrap().to_string()
    };

    // No check yet: the picker asks for a typed name.
    let mut s = SetupState::from_config(&config, vec![], vec![]);
    assert!(s.select(row), "{row:?}");
    s.on_key(key(KeyCode::Enter));
    let p = s.picker.as_ref().expect("the layer row opens a picker");
    assert_eq!(p.items, ["head"]);
    assert!(p.title.contains("type a name"), "{}", p.title);
    for c in "body.block1.unit01.conv1".chars() {
        s.on_key(ch(c));
    }
    s.on_key(key(KeyCode::Enter));
    assert_eq!(layer_of(&s), "body.block1.unit01.conv1");

    // The check answered: the head, then every weight in forward order.
    let form_config = s.to_config().unwrap();
    s.set_checked((form_config, found.clone()));
    s.on_key(key(KeyCode::Enter));
    let p = s.picker.as_ref().unwrap();
    assert_eq!(p.items[0], "head");
    assert_eq!(&p.items[1..], found.layers.as_slice());
    let last_conv3 = found
        .layers
        .iter()
        .rev()
        .find(|n| n.ends_with("conv3"))
        .unwrap()
        .clone();
    // Typing the name narrows the list to it.
    for c in last_conv3.chars() {
        s.on_key(ch(c));
    }
    s.on_key(key(KeyCode::Enter));
    assert!(s.picker.is_none());
    assert_eq!(layer_of(&s), last_conv3);
    // The first item is the head again.
    s.on_key(key(KeyCode::Enter));
    for c in "head".chars() {
        s.on_key(ch(c));
    }
    s.on_key(key(KeyCode::Enter));
    assert_eq!(layer_of(&s), "head");
}
