//! The setup form's editing: pickers, the file browser, the image size
//! following the model, class names, renames, long names when wide.

use crate::common;
use crate::tui::{app, app_on_setup, ch, click, draw, find, key, press, setup, snap, typed};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use gradnorm_tui::tui::preview::Previews;
use gradnorm_tui::tui::setup::Row;
use gradnorm_tui::tui::{App, SetupState};
use std::path::PathBuf;

#[test]
fn the_image_size_follows_the_model_unless_typed() {
    assert_eq!(
        gradnorm_engine::model::default_input("efficientnet-lite0").map(|i| i.size),
        Some(224)
    );
    assert_eq!(
        gradnorm_engine::model::default_input("BiT-S-R101x1").map(|i| i.size),
        Some(480)
    );
    // A config's size (the demo's 64) is for its model.
    let mut cfg = setup().to_config().unwrap();
    cfg.image_size = Some("64".parse().unwrap());
    let s = SetupState::from_config(&cfg, vec![], vec![]);
    let mut app = App::new(s, "x.toml".into(), crate::tui::no_launch(), Previews::off());
    assert!(app.setup_mut().select(Row::Model));
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(&mut app, "lite0");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.setup().image_size, None);
    assert_eq!(
        app.setup().default_size(),
        Some((224, "efficientnet-lite0".to_string()))
    );
    assert!(app.setup_mut().select(Row::ImageSize));
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("224 x 224 (efficientnet-lite0's default)"),
        "{screen}"
    );
    assert!(app
        .message()
        .as_ref()
        .is_some_and(|m| m.0.contains("image size 64")));
    // The checkpoint's file name names the model when "auto".
    let s = SetupState::new(vec!["ckpt/BiT-S-R101x1.npz".into()], vec![]);
    assert_eq!(s.default_size(), Some((480, "BiT-S-R101x1".to_string())));
    // A size typed here stays when the model changes.
    assert!(app.setup_mut().select(Row::ImageSize));
    press(&mut app, &[key(KeyCode::Enter)]);
    press(
        &mut app,
        &[KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)],
    );
    typed(&mut app, "300");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.setup_mut().select(Row::Model));
    press(&mut app, &[key(KeyCode::Right)]);
    assert_eq!(
        app.setup().image_size.map(|s| s.to_string()),
        Some("300".into())
    );
}

#[test]
fn the_file_browser_picks_checkpoints_and_dataset_folders() {
    let dir = common::temp_tree(&[
        "models/a.safetensors",
        "models/b.safetensors",
        "data/id/circle/a.png",
        "data/id/notes.md",
        "data/ood.txt",
        "data/empty/",
    ]);
    let root = dir.path();
    let mut app = app_on_setup();
    // A checkpoint typed, then f browses from its folder.
    assert!(app.setup_mut().select(Row::Checkpoint));
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(
        &mut app,
        &root.join("models/a.safetensors").display().to_string(),
    );
    press(&mut app, &[key(KeyCode::Enter), ch('f')]);
    let files = app.setup().files.clone().expect("f opens the file browser");
    assert_eq!(files.dir, root.join("models"));
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("▶ ../") && screen.contains("  b.safetensors"),
        "{screen}"
    );
    // Typing filters; Enter picks.
    typed(&mut app, "b.");
    press(&mut app, &[key(KeyCode::Down), key(KeyCode::Enter)]);
    assert!(app.setup().files.is_none());
    let cfg = app.setup().to_config().unwrap();
    assert_eq!(
        cfg.model.checkpoint,
        Some(root.join("models/b.safetensors"))
    );
    // A dataset folder: from the ID set's folder, up one, pick "./".
    assert!(app.setup_mut().select(Row::Id));
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(&mut app, &root.join("data/id").display().to_string());
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.setup_mut().select(Row::AddDataset));
    press(&mut app, &[ch('f')]);
    assert_eq!(
        app.setup().files.as_ref().unwrap().dir,
        root.join("data/id")
    );
    press(&mut app, &[key(KeyCode::Backspace)]);
    let f = app.setup().files.as_ref().unwrap();
    assert_eq!(f.dir, root.join("data"));
    assert_eq!(f.label(f.items()[f.selected]), "id/");
    // A click on an item is Enter on it: into id/ again.
    let screen = draw(&mut app, 120, 40);
    let (x, y) = find(&screen, "▶ id/").unwrap();
    click(&mut app, x + 2, y);
    assert_eq!(
        app.setup().files.as_ref().unwrap().dir,
        root.join("data/id")
    );
    // A dataset row offers list files, not any file: notes.md is left out.
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("./  (pick this folder)")
            && screen.contains("circle/")
            && !screen.contains("notes.md")
            && screen.contains("1 other file(s) not shown"),
        "{screen}"
    );
    press(&mut app, &[key(KeyCode::Left), key(KeyCode::Home)]);
    // Home is not bound here: the selection is still on id/; go to ./.
    press(&mut app, &[key(KeyCode::PageUp), key(KeyCode::Enter)]);
    assert!(app.setup().files.is_none());
    let added = app
        .setup()
        .datasets
        .iter()
        .find(|d| d.path == root.join("data"));
    assert!(added.is_some_and(|d| d.ood), "{:?}", app.setup().datasets);
    // A folder without images is not offered as a dataset.
    assert!(app.setup_mut().select(Row::AddDataset));
    press(&mut app, &[ch('f'), key(KeyCode::Backspace)]);
    assert_eq!(app.setup().files.as_ref().unwrap().dir, root.join("data"));
    typed(&mut app, "empty");
    press(&mut app, &[key(KeyCode::Enter)]);
    let f = app.setup().files.as_ref().unwrap();
    assert_eq!(f.dir, root.join("data/empty"));
    assert!(!f.label(f.items()[0]).contains("pick this folder"));
    press(&mut app, &[key(KeyCode::Backspace)]);
    let f = app.setup().files.as_ref().unwrap();
    let labels: Vec<String> = f.items().into_iter().map(|i| f.label(i)).collect();
    assert!(labels.contains(&"ood.txt".to_string()), "{labels:?}");
    press(&mut app, &[key(KeyCode::Esc)]);
    // Esc closes it, changing nothing.
    press(&mut app, &[ch('f'), key(KeyCode::Esc)]);
    assert!(app.setup().files.is_none());
    // A row with no path of its own opens where the last pick was.
    assert!(app.setup_mut().select(Row::ClassNames));
    press(&mut app, &[ch('f')]);
    assert_eq!(app.setup().files.as_ref().unwrap().dir, root.join("data"));
}

#[test]
fn setup_shows_long_set_names_whole_when_wide() {
    let mut s = setup();
    s.datasets[1].name = "describable-textures-dtd".into();
    let mut app = App::new(s, "x.toml".into(), crate::tui::no_launch(), Previews::off());
    let wide = draw(&mut app, 200, 60);
    assert!(wide.contains("[x] describable-textures-dtd "), "{wide}");
    // 80 columns: a quarter of the form, cut with an ellipsis.
    let narrow = draw(&mut app, 80, 24);
    assert!(narrow.contains("[x] describable-textur… "), "{narrow}");
}

#[test]
fn class_names_are_shown_editable_and_follow_the_model() {
    // A config with the demo's ten class names, as `w` wrote it.
    let mut cfg = setup().to_config().unwrap();
    cfg.class_names = Some(PathBuf::from("dataset/demo/classes.txt"));
    let mut s = SetupState::from_config(&cfg, vec!["checkpoints/other.safetensors".into()], vec![]);
    assert_eq!(s.to_config().unwrap().class_names, cfg.class_names);
    // The row shows them.
    let mut app = App::new(
        s.clone(),
        "x.toml".into(),
        crate::tui::no_launch(),
        Previews::off(),
    );
    let text = draw(&mut app, 120, 40);
    assert!(
        text.contains("class names") && text.contains("dataset/demo/classes.txt"),
        "{text}"
    );
    // Another checkpoint drops them, saying so.
    assert!(s.select(Row::Checkpoint));
    let out = s.on_key(key(KeyCode::Left));
    assert!(
        matches!(out, gradnorm_tui::tui::setup::SetupAction::Message(m) if m.contains("cleared"))
    );
    assert_eq!(s.to_config().unwrap().class_names, None);
    // Typed and cleared by hand.
    assert!(s.select(Row::ClassNames));
    s.on_key(key(KeyCode::Enter));
    for c in "names.txt".chars() {
        s.on_key(ch(c));
    }
    s.on_key(key(KeyCode::Enter));
    assert_eq!(s.to_config().unwrap().class_names, Some("names.txt".into()));
    s.on_key(key(KeyCode::Enter));
    s.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    s.on_key(key(KeyCode::Enter));
    assert_eq!(s.to_config().unwrap().class_names, None);
}

#[test]
fn a_picker_filters_models_and_takes_typed_paths() {
    let mut app = app();
    assert!(app.setup_mut().select(Row::Model));
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.setup().picker.is_some());
    for c in "lite0".chars() {
        press(&mut app, &[ch(c)]);
    }
    let p = app.setup().picker.clone().unwrap();
    let m = p.matches();
    assert_eq!(m.len(), 1, "{:?}", p.items);
    crate::tui::checks_fail_on_the_checkpoint(&mut app);
    snap("setup_picker", &mut app);
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.setup().picker.is_none());
    assert_eq!(app.setup().model.as_deref(), Some("efficientnet-lite0"));
    // The ID set: a path typed (not in the list) becomes a new entry.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("flowers/rose")).unwrap();
    assert!(app.setup_mut().select(Row::Id));
    press(&mut app, &[key(KeyCode::Enter)]);
    let typed = format!("{}/flo", dir.path().display());
    for c in typed.chars() {
        press(&mut app, &[ch(c)]);
    }
    press(&mut app, &[key(KeyCode::Tab)]);
    let p = app.setup().picker.clone().unwrap();
    assert_eq!(p.filter, format!("{}/flowers/", dir.path().display()));
    press(&mut app, &[key(KeyCode::Enter)]);
    let id = app.setup().id_entry().unwrap();
    assert_eq!(id.path, dir.path().join("flowers/"));
    // Esc closes a list, changing nothing.
    assert!(app.setup_mut().select(Row::Device));
    press(
        &mut app,
        &[key(KeyCode::Enter), ch('c'), ch('u'), key(KeyCode::Esc)],
    );
    assert_eq!(app.setup().device.to_string(), "auto");
    press(
        &mut app,
        &[key(KeyCode::Enter), ch('c'), ch('u'), key(KeyCode::Enter)],
    );
    assert!(app.setup().device.to_string().starts_with("cuda"));
}

#[test]
fn a_class_names_file_is_not_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("demo/id/circle")).unwrap();
    std::fs::write(root.join("demo/classes.txt"), "circle\nsquare\n").unwrap();
    std::fs::write(root.join("demo/id/circle/0.png"), b"x").unwrap();
    let found = gradnorm_tui::tui::discover::datasets(root);
    let paths: Vec<_> = found.iter().map(|c| c.path.clone()).collect();
    assert_eq!(paths, [root.join("demo")]);
}

#[test]
fn datasets_are_renamed_with_r_and_names_stay_unique() {
    let mut app = app();
    assert!(app.setup_mut().select(Row::Ood(1)));
    let ctrl_u = KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL);
    let rename_to_dtd = [
        ch('r'),
        ctrl_u,
        ch('d'),
        ch('t'),
        ch('d'),
        key(KeyCode::Enter),
    ];
    press(&mut app, &rename_to_dtd);
    let names: Vec<String> = app
        .setup()
        .to_config()
        .unwrap()
        .ood
        .iter()
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(names, ["dtd", "scenes", "cifar10"]);
    // A name taken by another set is refused.
    assert!(app.setup_mut().select(Row::Ood(2)));
    press(&mut app, &rename_to_dtd);
    assert!(app
        .message()
        .as_ref()
        .is_some_and(|(m, _)| m.contains("another dataset")));
    assert_eq!(app.setup().datasets[2].name, "scenes");
}

#[test]
fn picking_efficientnet_lite0s_checkpoint_takes_its_class_names_and_size() {
    let Some(shared) = common::shared() else {
        return;
    };
    let effnet = shared.join("models/efficientnet-lite0/efficientnet-lite0.safetensors");
    if !effnet.is_file() {
        eprintln!("SKIPPED: {} is absent", effnet.display());
        return;
    }
    // The demo as its config has it: its ten class names, 64 px.
    let dir = tempfile::tempdir().unwrap();
    let (mut cfg, data) = crate::tui::checks::demo_run(dir.path());
    cfg.class_names = Some(data.classes.clone());
    // Both checkpoints in one folder, as a checkpoints/ folder holds them.
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let demo = models.join("bit-demo.safetensors");
    std::os::unix::fs::symlink(cfg.model.checkpoint.as_ref().unwrap(), &demo).unwrap();
    std::os::unix::fs::symlink(&effnet, models.join("efficientnet-lite0.safetensors")).unwrap();
    cfg.model.checkpoint = Some(demo.clone());
    let s = SetupState::from_config(&cfg, vec![], vec![]);
    let mut app = App::new(s, "x.toml".into(), crate::tui::no_launch(), Previews::off());
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("Ready to start (s)"), "{screen}");
    assert_eq!(app.setup().image_size.map(|s| s.get()), Some(64));

    // The file browser opens in the demo's folder; the other file is picked.
    assert!(app.setup_mut().select(Row::Checkpoint));
    press(&mut app, &[ch('f')]);
    typed(&mut app, "efficientnet");
    press(&mut app, &[key(KeyCode::Down), key(KeyCode::Enter)]);
    assert!(app.setup().files.is_none());
    let picked = app.setup().to_config().unwrap();
    assert_eq!(
        picked.model.checkpoint,
        Some(models.join("efficientnet-lite0.safetensors"))
    );
    // Its own class names (ImageNet's) and size, from the engine's model
    // table, without typing.
    assert_eq!(picked.class_names, None);
    assert_eq!(picked.image_size, None);
    let own = gradnorm_engine::model::default_input("efficientnet-lite0").unwrap();
    assert_eq!(own.size, 224);
    assert_eq!(
        app.setup().default_size(),
        Some((own.size, "efficientnet-lite0".to_string()))
    );
    let said = app.message().map(|m| m.0.clone()).unwrap_or_default();
    assert!(
        said.contains("classes.txt cleared") && said.contains("image size 64 -> 224"),
        "{said}"
    );
    let screen = draw(&mut app, 120, 60);
    assert!(
        screen.contains("class names   ImageNet's (or the ID set's folders)"),
        "{screen}"
    );
    assert!(
        screen.contains("224 x 224 (efficientnet-lite0's default)"),
        "{screen}"
    );
    // The engine's checks pass for it: 1,000 classes, ImageNet's names.
    assert!(screen.contains("Ready to start (s)"), "{screen}");

    // Back to the demo's checkpoint, typed: the size it was trained at.
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(&mut app, &demo.display().to_string());
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(
        app.setup().default_size(),
        Some((64, "the demo model".to_string()))
    );
    assert_eq!(
        app.setup().to_config().unwrap().image_size.map(|s| s.get()),
        Some(64)
    );
}

#[test]
fn a_size_far_from_the_models_own_is_asked_about() {
    let mut app = app();
    assert!(app.setup_mut().select(Row::Model));
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(&mut app, "lite0");
    press(&mut app, &[key(KeyCode::Enter)]);
    let own = |m: &str| gradnorm_engine::model::default_input(m).unwrap().size;
    let type_size = |app: &mut App, size: &str| {
        assert!(app.setup_mut().select(Row::ImageSize));
        press(app, &[key(KeyCode::Enter)]);
        press(
            app,
            &[KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)],
        );
        typed(app, size);
        press(app, &[key(KeyCode::Enter)]);
    };
    // 64 for efficientnet-lite0 (224): asked; n takes the model's own.
    type_size(&mut app, "64");
    assert_eq!(app.overlay(), Some(gradnorm_tui::tui::Overlay::ConfirmSize));
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("Keep this image size?"), "{screen}");
    assert!(
        screen.contains("64 x 64 is far from efficientnet-lite0's own")
            && screen.contains(&format!("takes {}.", own("efficientnet-lite0"))),
        "{screen}"
    );
    press(&mut app, &[ch('n')]);
    assert_eq!(app.overlay(), None);
    assert_eq!(app.setup().image_size, None);
    // y keeps it.
    type_size(&mut app, "64");
    press(&mut app, &[ch('y')]);
    assert_eq!(app.overlay(), None);
    assert_eq!(app.setup().image_size.map(|s| s.get()), Some(64));
    // The next model (efficientnet-lite1): the typed 64 is far from its own
    // too, so it is asked again.
    assert!(app.setup_mut().select(Row::Model));
    press(&mut app, &[key(KeyCode::Right)]);
    assert_eq!(app.setup().model.as_deref(), Some("efficientnet-lite1"));
    assert!(own("efficientnet-lite1") > 2 * 64);
    assert_eq!(app.overlay(), Some(gradnorm_tui::tui::Overlay::ConfirmSize));
    press(&mut app, &[ch('y')]);
    assert_eq!(app.setup().image_size.map(|s| s.get()), Some(64));
    // A size near the model's own is taken without a question.
    type_size(&mut app, "200");
    assert_eq!(app.overlay(), None);
    assert_eq!(app.setup().image_size.map(|s| s.get()), Some(200));
}

/// `d` on an OOD set removes it from the form (not from the disk); the ID
/// set stays whatever its index was, and `d` elsewhere removes nothing.
#[test]
fn an_ood_set_is_removed_from_the_form_with_d() {
    let mut app = app_on_setup();
    let names = |app: &App| -> Vec<String> {
        let c = app.setup().to_config().unwrap();
        c.ood.iter().map(|d| d.name.clone()).collect()
    };
    assert_eq!(names(&app), ["textures", "scenes", "cifar10"]);
    let n = app.setup().datasets.len();
    assert!(app.setup_mut().select(Row::Id));
    press(&mut app, &[ch('d')]);
    assert_eq!(app.setup().datasets.len(), n);
    let scenes = app
        .setup()
        .datasets
        .iter()
        .position(|d| d.name == "scenes")
        .unwrap();
    assert!(app.setup_mut().select(Row::Ood(scenes)));
    press(&mut app, &[ch('d')]);
    let (said, _) = app.message().cloned().unwrap();
    assert!(said.starts_with("removed scenes"), "{said}");
    assert_eq!(names(&app), ["textures", "cifar10"]);
    assert_eq!(app.setup().datasets.len(), n - 1);
    assert_eq!(app.setup().to_config().unwrap().id.name, "imagenet-val");
}
