//! The TUI as a workbench (issue 16): keys from one keymap, the threshold
//! moved by keys and the mouse, the dashboard's misdetections, results kept
//! until the user agrees to replace them, class names that follow the
//! model, and the real engine's interleaved batches giving metrics for
//! every set from the first batch.

use crate::tui::{app, ch, draw, finished_app, key, press, setup, snap};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use gradnorm_core::run::{Event, Role, RunConfig};
use gradnorm_engine::demo::{self, DataSpec};
use gradnorm_engine::model::ModelSpec;
use gradnorm_tui::tui::analysis::Split;
use gradnorm_tui::tui::browser::Sort;
use gradnorm_tui::tui::preview::Previews;
use gradnorm_tui::tui::session::RunSession;
use gradnorm_tui::tui::setup::Row;
use gradnorm_tui::tui::{App, Overlay, Screen, SetupState};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

fn click(app: &mut App, kind: MouseEventKind, column: u16, row: u16) {
    app.handle_mouse(MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    });
}

#[test]
fn dashboard_enter_opens_the_ood_sets_false_positives_most_confident_first() {
    let mut app = finished_app();
    // GradNorm against scenes (the second OOD set).
    press(
        &mut app,
        &[ch('2'), ch('m'), ch('m'), ch('m'), key(KeyCode::Right)],
    );
    let d = app.ood_dataset().unwrap();
    let t = app.analysis.point(3, d).unwrap().threshold;
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.screen, Screen::Browser);
    assert_eq!(app.browser.dataset, Some(d));
    assert_eq!(app.browser.sort, Sort::Descending);
    let scores: Vec<f32> = app
        .browser
        .rows
        .iter()
        .map(|&(dd, i)| {
            assert_eq!(dd, d);
            app.results.records[dd][i].scores[3]
        })
        .collect();
    let want = app.results.scores(d, 3).iter().filter(|&&s| s >= t).count();
    assert_eq!(scores.len(), want);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(app.browser.selected, 0);
}

#[test]
fn the_threshold_moves_with_keys_and_the_mouse_and_counts_follow() {
    let mut app = finished_app();
    press(&mut app, &[ch('2')]);
    let d = app.ood_dataset().unwrap();
    let start = app.current_threshold().unwrap();
    let counts = |app: &App| {
        let t = app.current_threshold().unwrap();
        Split::at(app.analysis.sorted(0, 0), app.analysis.sorted(d, 0), t)
    };
    let before = counts(&app);
    // ] raises it: fewer images on the ID side, never more.
    press(&mut app, &[ch(']'), ch(']')]);
    let up = counts(&app);
    assert!(app.current_threshold().unwrap() > start);
    assert!(up.id_kept + up.ood_accepted < before.id_kept + before.ood_accepted);
    // The counts on screen are the split's (independently counted here).
    let t = app.current_threshold().unwrap();
    let id_kept = app.results.scores(0, 0).iter().filter(|&&s| s >= t).count();
    assert_eq!(up.id_kept, id_kept);
    let screen = draw(&mut app, 120, 40);
    let shown = format!("ID kept {}/{}", up.id_kept, up.id_total);
    assert!(screen.contains(&shown), "{shown}\n{screen}");
    snap("dashboard_threshold_moved", &mut app);
    // t goes back to the 95%-TPR one.
    press(&mut app, &[ch('t')]);
    assert_eq!(app.current_threshold(), Some(start));
    // A click on the plot's left edge puts it at the lowest score: every
    // image is on the ID side.
    draw(&mut app, 120, 40);
    let (plot, lo, _) = app.plot.get();
    assert!(plot.width > 10, "{plot:?}");
    click(
        &mut app,
        MouseEventKind::Down(MouseButton::Left),
        plot.x,
        plot.y + 1,
    );
    assert_eq!(app.current_threshold(), Some(lo));
    let all = counts(&app);
    assert_eq!(
        (all.id_kept, all.ood_accepted),
        (all.id_total, all.ood_total)
    );
    // Dragging right raises it.
    click(
        &mut app,
        MouseEventKind::Drag(MouseButton::Left),
        plot.x + plot.width / 2,
        plot.y + 1,
    );
    assert!(app.current_threshold().unwrap() > lo);
    // v: every image sorted by score, the selection on the first one below
    // the threshold and the one above it just before.
    let t = app.current_threshold().unwrap();
    press(&mut app, &[ch('v')]);
    assert_eq!(app.screen, Screen::Browser);
    let sel = app.browser.selected;
    let score = |i: usize| {
        let (d, k) = app.browser.rows[i];
        app.results.records[d][k].scores[0] as f64
    };
    assert!(score(sel) < t && sel > 0 && score(sel - 1) >= t);
}

#[test]
fn mouse_clicks_tabs_and_scrolls_lists() {
    let mut app = finished_app();
    draw(&mut app, 120, 40);
    let tabs = app.tabs.get();
    click(
        &mut app,
        MouseEventKind::Down(MouseButton::Left),
        tabs[2].0 + 1,
        0,
    );
    assert_eq!(app.screen, Screen::Anatomy);
    click(
        &mut app,
        MouseEventKind::Down(MouseButton::Left),
        tabs[3].1,
        0,
    );
    assert_eq!(app.screen, Screen::Browser);
    click(&mut app, MouseEventKind::ScrollDown, 10, 10);
    click(&mut app, MouseEventKind::ScrollDown, 10, 10);
    assert_eq!(app.browser.selected, 2);
    click(&mut app, MouseEventKind::ScrollUp, 10, 10);
    assert_eq!(app.browser.selected, 1);
}

#[test]
fn tab_moves_in_the_form_and_digits_switch_screens() {
    let mut app = app();
    let first = app.setup.current();
    press(&mut app, &[key(KeyCode::Tab), key(KeyCode::Tab)]);
    assert_eq!(app.screen, Screen::Setup);
    assert_eq!(app.setup.cursor, 2);
    press(&mut app, &[key(KeyCode::BackTab), key(KeyCode::BackTab)]);
    assert_eq!(app.setup.current(), first);
    // Shift-Tab from the first field wraps to the last.
    press(&mut app, &[key(KeyCode::BackTab)]);
    assert_eq!(app.setup.current(), Row::Save);
    press(&mut app, &[ch('3')]);
    assert_eq!(app.screen, Screen::Anatomy);
    press(&mut app, &[key(KeyCode::Tab)]);
    assert_eq!(app.screen, Screen::Browser);
}

#[test]
fn help_is_per_screen_and_scrolls() {
    let mut app = finished_app();
    press(&mut app, &[ch('3'), ch('?')]);
    assert_eq!(app.overlay, Some(Overlay::Help));
    let text = draw(&mut app, 80, 24);
    // The screen in view comes first: Anatomy's keys, then everywhere's.
    let anatomy = text.find("│Anatomy").unwrap();
    let everywhere = text.find("│Everywhere").unwrap();
    assert!(anatomy < everywhere, "{text}");
    snap("help_anatomy", &mut app);
    press(&mut app, &[key(KeyCode::PageDown)]);
    let scrolled = draw(&mut app, 80, 24);
    assert_ne!(scrolled, text);
    press(&mut app, &[key(KeyCode::Esc)]);
    assert_eq!(app.overlay, None);
}

#[test]
fn a_new_start_asks_before_replacing_results() {
    // A finished run on screen; the launcher would start a second one.
    let (_tx, rx) = mpsc::channel::<Event>();
    let mut pending = Some(RunSession::new(rx, Arc::new(AtomicBool::new(false))));
    let mut app = App::new(
        setup(),
        "gradnorm-tui.toml".into(),
        Box::new(move |_cfg: RunConfig| pending.take().expect("one launch")),
        Previews::off(),
    );
    for e in crate::tui::run_events() {
        app.apply(e);
    }
    app.tick();
    let n: usize = app.results.records.iter().map(Vec::len).sum();
    press(&mut app, &[ch('1'), ch('s')]);
    assert_eq!(app.overlay, Some(Overlay::ConfirmReplace));
    snap("confirm_replace", &mut app);
    // n (or any other key) keeps them.
    press(&mut app, &[ch('n')]);
    assert_eq!(app.overlay, None);
    assert!(!app.running());
    assert_eq!(app.results.records.iter().map(Vec::len).sum::<usize>(), n);
    // y replaces them.
    press(&mut app, &[ch('s'), ch('y')]);
    assert!(app.running());
    assert!(app.results.info.is_none());
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
    let info = app.results.info.clone().unwrap();
    let n_sets = info.datasets.len();
    assert!(n_sets >= 3, "{n_sets} sets");
    let in_first: Vec<usize> = app.results.records.iter().map(Vec::len).collect();
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
                assert!(app.analysis.measures(m, d).is_some(), "method {m} set {d}");
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
        assert_eq!(all.results.records[d].len(), ds.count);
    }
}

#[test]
fn inspect_shows_absorbing_classes_and_disagreements() {
    use gradnorm_tui::tui::inspect::{absorbing_classes, disagreements};
    let mut app = finished_app();
    press(&mut app, &[ch('5')]);
    assert_eq!(app.screen, Screen::Inspect);
    snap("inspect", &mut app);
    // Absorbing classes: the top-1 classes of the textures accepted at the
    // 95%-TPR threshold, counted here by hand.
    let d = app.ood_dataset().unwrap();
    let t = app.current_threshold().unwrap();
    let mut want = std::collections::HashMap::new();
    for r in &app.results.records[d] {
        if r.scores[0] as f64 >= t {
            *want.entry(r.top[0].0).or_insert(0usize) += 1;
        }
    }
    let got = absorbing_classes(&app.results, 0, d, t);
    assert_eq!(got.len(), want.len());
    for (c, n) in &got {
        assert_eq!(want[c], *n);
    }
    assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
    // Disagreements: the largest gaps of ID percentiles, largest first.
    let top = disagreements(&app.results, &app.analysis, 0, 3, d, 5);
    assert_eq!(top.len(), 5);
    let gap = |x: &gradnorm_tui::tui::inspect::Disagreement| (x.first - x.second).abs();
    assert!(top.windows(2).all(|w| gap(&w[0]) >= gap(&w[1])));
    let pct = |m: usize, s: f32| app.analysis.id_percentile(m, s as f64).unwrap();
    let mut max_gap: f64 = 0.0;
    for dd in [0, d] {
        for r in &app.results.records[dd] {
            max_gap = max_gap.max((pct(0, r.scores[0]) - pct(3, r.scores[3])).abs());
        }
    }
    assert_eq!(gap(&top[0]), max_gap);
    // n changes the second method.
    let before = app.second_method();
    press(&mut app, &[ch('n')]);
    assert_ne!(app.second_method(), before);
}

#[test]
fn a_picker_filters_models_and_takes_typed_paths() {
    let mut app = app();
    assert!(app.setup.select(Row::Model));
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.setup.picker.is_some());
    for c in "lite0".chars() {
        press(&mut app, &[ch(c)]);
    }
    let p = app.setup.picker.clone().unwrap();
    let m = p.matches();
    assert_eq!(m.len(), 1, "{:?}", p.items);
    snap("setup_picker", &mut app);
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.setup.picker.is_none());
    assert_eq!(app.setup.model.as_deref(), Some("efficientnet-lite0"));
    // The ID set: a path typed (not in the list) becomes a new entry.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("flowers/rose")).unwrap();
    assert!(app.setup.select(Row::Id));
    press(&mut app, &[key(KeyCode::Enter)]);
    let typed = format!("{}/flo", dir.path().display());
    for c in typed.chars() {
        press(&mut app, &[ch(c)]);
    }
    press(&mut app, &[key(KeyCode::Tab)]);
    let p = app.setup.picker.clone().unwrap();
    assert_eq!(p.filter, format!("{}/flowers/", dir.path().display()));
    press(&mut app, &[key(KeyCode::Enter)]);
    let id = app.setup.id_entry().unwrap();
    assert_eq!(id.path, dir.path().join("flowers/"));
    // Esc closes a list, changing nothing.
    assert!(app.setup.select(Row::Device));
    press(
        &mut app,
        &[key(KeyCode::Enter), ch('c'), ch('u'), key(KeyCode::Esc)],
    );
    assert_eq!(app.setup.device.to_string(), "auto");
    press(
        &mut app,
        &[key(KeyCode::Enter), ch('c'), ch('u'), key(KeyCode::Enter)],
    );
    assert!(app.setup.device.to_string().starts_with("cuda"));
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
    assert!(app.setup.select(Row::Ood(1)));
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
        .setup
        .to_config()
        .unwrap()
        .ood
        .iter()
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(names, ["dtd", "scenes", "cifar10"]);
    // A name taken by another set is refused.
    assert!(app.setup.select(Row::Ood(2)));
    press(&mut app, &rename_to_dtd);
    assert!(app
        .message
        .as_ref()
        .is_some_and(|(m, _)| m.contains("another dataset")));
    assert_eq!(app.setup.datasets[2].name, "scenes");
}
