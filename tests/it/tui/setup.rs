//! The setup form builds the run config and writes it back; discovery of
//! checkpoints and datasets.

use super::*;

#[test]
fn setup_builds_the_config_and_writes_it_back() {
    let mut s = setup();
    let cfg = s.to_config().unwrap();
    assert_eq!(
        cfg.model.checkpoint.as_deref(),
        Some(Path::new("checkpoints/BiT-S-R101x1-flat-finetune.pth.tar"))
    );
    assert_eq!(cfg.id.name, "imagenet-val");
    let names: Vec<&str> = cfg.ood.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["textures", "scenes", "cifar10"]);
    // The registry's default set, as `eval` runs it.
    assert_eq!(
        cfg.methods.iter().map(|m| m.key()).collect::<Vec<_>>(),
        gradnorm_core::method::registry::DEFAULT_METHODS
    );

    // Menus: next checkpoint, Entropy on, GradNorm at T = 2, batch halved,
    // limit 25, image size 64, scenes off.
    let edit = |s: &mut SetupState, row: Row, text: &str| {
        assert!(s.select(row), "{row:?}");
        s.on_key(key(KeyCode::Enter));
        s.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        for c in text.chars() {
            s.on_key(ch(c));
        }
        s.on_key(key(KeyCode::Enter));
    };
    s.select(Row::Checkpoint);
    s.on_key(key(KeyCode::Right));
    s.select(Row::Method(6));
    s.on_key(ch(' '));
    edit(
        &mut s,
        // GradNorm's first parameter, its temperature.
        Row::Param(4, 0),
        "2",
    );
    s.select(Row::Batch);
    s.on_key(key(KeyCode::Left));
    edit(&mut s, Row::Limit, "25");
    edit(&mut s, Row::ImageSize, "64");
    s.select(Row::Ood(2));
    s.on_key(ch(' '));
    // A bad value is refused with a message and changes nothing.
    assert!(s.select(Row::Batch));
    s.on_key(key(KeyCode::Enter));
    s.on_key(ch('x'));
    assert!(matches!(
        s.on_key(key(KeyCode::Enter)),
        gradnorm_tui::tui::setup::SetupAction::Message(_)
    ));

    let cfg = s.to_config().unwrap();
    assert_eq!(
        cfg.model.checkpoint.as_deref(),
        Some(Path::new("checkpoints/tiny.pth.tar"))
    );
    assert!(cfg
        .methods
        .contains(&Method::with_params("gradnorm", &[("temperature", 2.0)]).unwrap()));
    assert!(cfg.methods.contains(&Method::from_key("entropy").unwrap()));
    assert_eq!(
        (
            cfg.batch.get(),
            cfg.limit.map(|l| l.get()),
            cfg.image_size.map(|s| s.get())
        ),
        (32, Some(25), Some(64))
    );
    assert_eq!(
        cfg.ood.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["textures", "cifar10"]
    );

    // w writes it; the file reads back to the same config, and a form built
    // from it gives it again.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gradnorm-tui.toml");
    let mut app = App::new(s, path.clone(), no_launch(), Previews::off());
    press(&mut app, &[ch('w')]);
    let back = gradnorm_core::run::file::load(&path).unwrap();
    assert_eq!(back, cfg);
    let again = SetupState::from_config(&back, vec![], candidates());
    assert_eq!(again.to_config().unwrap(), cfg);
    // A config naming paths not on disk adds them to the menus.
    let again = SetupState::from_config(&back, vec![], vec![]);
    assert_eq!(again.to_config().unwrap(), cfg);
    // The config's order of OOD sets is kept, whatever the disk's order.
    let mut swapped = cfg.clone();
    swapped.ood.reverse();
    let again = SetupState::from_config(&swapped, vec![], candidates());
    assert_eq!(again.to_config().unwrap(), swapped);
}

#[test]
fn discovery_finds_checkpoints_and_datasets_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let touch = |p: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    };
    touch("checkpoints/a.pth.tar");
    touch("checkpoints/sub/b.safetensors");
    touch("checkpoints/notes.md");
    for i in 0..3 {
        touch(&format!("dataset/textures/banded/{i}.jpg"));
        touch(&format!("dataset/textures/dotted/{i}.JPEG"));
    }
    touch("dataset/textures/readme.md");
    std::fs::create_dir_all(root.join("dataset/val")).unwrap();
    std::fs::write(
        root.join("dataset/val/list.txt"),
        "a.jpg 0\nb.jpg 1\n\nc.jpg 2\n",
    )
    .unwrap();

    let ck = discover::checkpoints(&root.join("checkpoints"));
    assert_eq!(
        ck,
        [
            root.join("checkpoints/a.pth.tar"),
            root.join("checkpoints/sub/b.safetensors")
        ]
    );
    let ds = discover::datasets(&root.join("dataset"));
    let names: Vec<&str> = ds.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["textures", "val"]);
    assert_eq!(ds[1].path, root.join("dataset/val/list.txt"));
    assert_eq!(discover::count(&ds[0].path, None).unwrap(), 6);
    assert_eq!(discover::count(&ds[1].path, None).unwrap(), 3);
    let e = discover::count(&root.join("absent"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent"), "{e}");
}
