//! The TUI's remaining workbench points (issue 16): the browser's search,
//! jump and top-1 class filter; clicks on rows, table cells, list items and
//! buttons; the image size following the model; the hidden-columns marker,
//! names as wide as the terminal allows, the class count said once, and
//! histograms that read without colour.

use crate::common;
use crate::tui::{app, ch, draw, enter_scratch, finished_app, key, press, run_events, setup, snap};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use gradnorm_core::run::{Event, RunInfo};
use gradnorm_tui::tui::browser::display_path;
use gradnorm_tui::tui::preview::Previews;
use gradnorm_tui::tui::setup::Row;
use gradnorm_tui::tui::{App, Overlay, SetupState};
use std::sync::Arc;

fn click(app: &mut App, column: u16, row: u16) {
    app.handle_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    });
}

/// Where `text` first appears on the screen `draw` returned: (column, row).
fn find(screen: &str, text: &str) -> Option<(u16, u16)> {
    screen.lines().enumerate().find_map(|(y, line)| {
        // TestBackend's lines are quoted: drop the leading quote.
        let line = line.strip_prefix('"').unwrap_or(line);
        line.find(text)
            .map(|b| (line[..b].chars().count() as u16, y as u16))
    })
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, &[ch(c)]);
    }
}

/// The synthetic run with its info changed by `f`.
fn app_with_info(f: impl Fn(&mut RunInfo)) -> App {
    let mut app = app();
    for e in run_events() {
        let e = match e {
            Event::Started(info) => {
                let mut info = (*info).clone();
                f(&mut info);
                Event::Started(Arc::new(info))
            }
            e => e,
        };
        app.apply(e);
    }
    app.tick();
    app
}

#[test]
fn the_browser_searches_file_names_jumps_and_keeps_one_class() {
    enter_scratch();
    let mut app = finished_app();
    press(&mut app, &[ch('4'), ch('/')]);
    typed(&mut app, "_0001");
    let info = app.results.info.clone().unwrap();
    let want: Vec<(usize, usize)> = (0..app.results.records.len())
        .flat_map(|d| (0..app.results.records[d].len()).map(move |i| (d, i)))
        .filter(|&(d, i)| display_path(&info, &app.results.records[d][i]).contains("_0001"))
        .collect();
    // Applied as typed, against the names as listed (counted above).
    assert!(!want.is_empty());
    assert_eq!(app.browser.rows, want);
    snap("browser_search", &mut app);
    // Esc puts back the search before it; Enter keeps it.
    press(&mut app, &[key(KeyCode::Esc)]);
    assert!(app.browser.query.is_empty());
    assert_eq!(app.browser.rows.len(), 260);
    press(&mut app, &[ch('/')]);
    typed(&mut app, "SUN_");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.browser.rows.len(), 60, "any case: the 60 scenes");
    assert_eq!(app.mode(), gradnorm_tui::tui::keymap::Mode::Browser);
    // : jumps to a number in the list (from 1, as the position shows).
    press(&mut app, &[ch(':')]);
    typed(&mut app, "17");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.browser.selected, 16);
    press(
        &mut app,
        &[ch(':'), ch('9'), ch('9'), ch('9'), key(KeyCode::Enter)],
    );
    assert_eq!(app.browser.selected, 59);
    // p: a list of top-1 classes; "goldfish" keeps that class only.
    press(&mut app, &[key(KeyCode::Esc), ch('p')]);
    assert!(app.browser.class_picker.is_some());
    typed(&mut app, "goldf");
    snap("browser_class_picker", &mut app);
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.browser.class, Some(1));
    let goldfish = app
        .results
        .records
        .iter()
        .flatten()
        .filter(|r| r.top[0].0 == 1)
        .count();
    assert!(goldfish > 0);
    assert_eq!(app.browser.rows.len(), goldfish);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("top-1 goldfish"), "{screen}");
    // Esc clears every filter.
    press(&mut app, &[key(KeyCode::Esc)]);
    assert_eq!((app.browser.class, app.browser.rows.len()), (None, 260));
}

#[test]
fn clicks_select_rows_pick_items_and_press_buttons() {
    enter_scratch();
    let mut app = finished_app();
    // The browser: a click on the fourth row selects it.
    press(&mut app, &[ch('4')]);
    let screen = draw(&mut app, 120, 40);
    let (_, y) = find(&screen, "00000004.png").unwrap();
    click(&mut app, 20, y);
    assert_eq!(app.browser.selected, 3);
    // The dashboard's table: a method's row, a set's name.
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 120, 40);
    let (_, y) = find(&screen, "Energy").unwrap();
    click(&mut app, 5, y);
    assert_eq!(app.method, 2);
    // The table's header line (the progress panel names the sets too).
    let (_, y) = find(&screen, "average").unwrap();
    let header = screen.lines().nth(y as usize).unwrap();
    let x = header.find("scenes").unwrap();
    let x = header[..x].chars().count() as u16 - 1;
    click(&mut app, x + 1, y);
    assert_eq!(app.ood, 1);
    // A key hint is a button: "? help" opens the help.
    let screen = draw(&mut app, 120, 40);
    let (x, y) = find(&screen, " help ").unwrap();
    click(&mut app, x + 1, y);
    assert_eq!(app.overlay, Some(Overlay::Help));
    press(&mut app, &[key(KeyCode::Esc)]);
    // The form: one click selects a row, a second toggles it; a list item
    // clicked is picked.
    let mut app = app_on_setup();
    let screen = draw(&mut app, 120, 40);
    let (x, y) = find(&screen, "Mahalanobis").unwrap();
    click(&mut app, x, y);
    let row = app.setup.current();
    assert!(matches!(row, Row::Method(_)), "{row:?}");
    let Row::Method(i) = row else { unreachable!() };
    let before = app.setup.methods[i].enabled;
    click(&mut app, x, y);
    assert_ne!(app.setup.methods[i].enabled, before);
    assert!(app.setup.select(Row::Model));
    press(&mut app, &[key(KeyCode::Enter)]);
    let screen = draw(&mut app, 120, 40);
    let (x, y) = find(&screen, "efficientnet-lite2").unwrap();
    click(&mut app, x, y);
    assert!(app.setup.picker.is_none());
    assert_eq!(app.setup.model.as_deref(), Some("efficientnet-lite2"));
    // A question's buttons: "n" keeps the results.
    let mut app = finished_app();
    press(&mut app, &[ch('1'), ch('s')]);
    assert_eq!(app.overlay, Some(Overlay::ConfirmReplace));
    let screen = draw(&mut app, 80, 24);
    let (x, y) = find(&screen, " n  no").unwrap();
    // Clicks outside the question do nothing.
    click(&mut app, 0, 0);
    assert_eq!(app.overlay, Some(Overlay::ConfirmReplace));
    click(&mut app, x + 1, y);
    assert_eq!(app.overlay, None);
    assert!(!app.running());
}

fn app_on_setup() -> App {
    App::new(
        setup(),
        "x.toml".into(),
        crate::tui::no_launch(),
        Previews::off(),
    )
}

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
    assert!(app.setup.select(Row::Model));
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(&mut app, "lite0");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.setup.image_size, None);
    assert_eq!(
        app.setup.default_size(),
        Some((224, "efficientnet-lite0".to_string()))
    );
    assert!(app.setup.select(Row::ImageSize));
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("224 x 224 (efficientnet-lite0's default)"),
        "{screen}"
    );
    assert!(app
        .message
        .as_ref()
        .is_some_and(|m| m.0.contains("image size 64")));
    // The checkpoint's file name names the model when "auto".
    let s = SetupState::new(vec!["ckpt/BiT-S-R101x1.npz".into()], vec![]);
    assert_eq!(s.default_size(), Some((480, "BiT-S-R101x1".to_string())));
    // A size typed here stays when the model changes.
    assert!(app.setup.select(Row::ImageSize));
    press(&mut app, &[key(KeyCode::Enter)]);
    press(
        &mut app,
        &[KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)],
    );
    typed(&mut app, "300");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.setup.select(Row::Model));
    press(&mut app, &[key(KeyCode::Right)]);
    assert_eq!(
        app.setup.image_size.map(|s| s.to_string()),
        Some("300".into())
    );
}

#[test]
fn hidden_ood_columns_are_marked_and_names_use_the_width() {
    // 80 columns hold one OOD set and the average: scenes is off the right.
    let mut app = finished_app();
    press(&mut app, &[ch('2')]);
    let narrow = draw(&mut app, 80, 24);
    assert!(narrow.contains("+1 set → (←→)"), "{narrow}");
    let wide = draw(&mut app, 120, 40);
    assert!(!wide.contains("set →"), "{wide}");
    press(&mut app, &[key(KeyCode::Right)]);
    let narrow = draw(&mut app, 80, 24);
    assert!(narrow.contains("← +1 set"), "{narrow}");
    // Long names whole at 200 columns, cut with an ellipsis at 80.
    let long = [
        "imagenet-val-2012-full",
        "describable-textures",
        "sun-scenes-places",
    ];
    let mut app = app_with_info(|info| {
        for (d, name) in info.datasets.iter_mut().zip(long) {
            d.name = name.to_string();
        }
    });
    press(&mut app, &[ch('2')]);
    let wide = draw(&mut app, 200, 60);
    for name in long {
        assert!(
            wide.contains(&format!("OOD {name}")) || wide.contains(&format!("ID  {name}")),
            "{name}\n{wide}"
        );
    }
    press(&mut app, &[ch('4')]);
    let wide = draw(&mut app, 200, 60);
    assert!(
        wide.contains("imagenet-val-2012-full images/ILSVRC"),
        "{wide}"
    );
    let narrow = draw(&mut app, 80, 24);
    assert!(narrow.contains('…'), "{narrow}");
    snap("browser_long_names", &mut app);
}

#[test]
fn the_run_panel_says_the_class_count_once() {
    let mut app = app_with_info(|info| {
        info.model.name = "EfficientNet-Lite0, 1000 classes".into();
        info.model.num_classes = 1000;
    });
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 120, 40);
    assert_eq!(screen.matches("1000 classes").count(), 1, "{screen}");
    assert_eq!(screen.matches("1,000 classes").count(), 0, "{screen}");
    // A name without the count gets it.
    let mut app = app_with_info(|info| info.model.name = "tiny".into());
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("tiny, 10 classes"), "{screen}");
}

#[test]
fn histograms_read_without_colour() {
    let mut app = finished_app();
    app.no_color = true;
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 120, 40);
    for legend in ["█ ID ▒ OOD ▓ both", "█ ID imagenet-val", "▒ OOD textures"] {
        assert!(screen.contains(legend), "{legend}\n{screen}");
    }
    // Both fills and their overlap are drawn in the plot.
    let plot: String = screen.lines().skip(8).take(20).collect();
    for g in ['▒', '▓'] {
        assert!(plot.contains(g), "{g}\n{screen}");
    }
    snap("dashboard_monochrome", &mut app);
    press(&mut app, &[ch('3')]);
    snap("anatomy_monochrome", &mut app);
}

#[test]
fn the_file_browser_picks_checkpoints_and_dataset_folders() {
    let dir = common::temp_tree(&[
        "models/a.safetensors",
        "models/b.safetensors",
        "data/id/circle/",
    ]);
    let root = dir.path();
    let mut app = app_on_setup();
    // A checkpoint typed, then f browses from its folder.
    assert!(app.setup.select(Row::Checkpoint));
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(
        &mut app,
        &root.join("models/a.safetensors").display().to_string(),
    );
    press(&mut app, &[key(KeyCode::Enter), ch('f')]);
    let files = app.setup.files.clone().expect("f opens the file browser");
    assert_eq!(files.dir, root.join("models"));
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("▶ ../") && screen.contains("  b.safetensors"),
        "{screen}"
    );
    // Typing filters; Enter picks.
    typed(&mut app, "b.");
    press(&mut app, &[key(KeyCode::Down), key(KeyCode::Enter)]);
    assert!(app.setup.files.is_none());
    let cfg = app.setup.to_config().unwrap();
    assert_eq!(
        cfg.model.checkpoint,
        Some(root.join("models/b.safetensors"))
    );
    // A dataset folder: from the ID set's folder, up one, pick "./".
    assert!(app.setup.select(Row::Id));
    press(&mut app, &[key(KeyCode::Enter)]);
    typed(&mut app, &root.join("data/id").display().to_string());
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.setup.select(Row::AddDataset));
    press(&mut app, &[ch('f')]);
    assert_eq!(app.setup.files.as_ref().unwrap().dir, root.join("data/id"));
    press(&mut app, &[key(KeyCode::Backspace)]);
    let f = app.setup.files.as_ref().unwrap();
    assert_eq!(f.dir, root.join("data"));
    assert_eq!(f.label(f.items()[f.selected]), "id/");
    // A click on an item is Enter on it: into id/ again.
    let screen = draw(&mut app, 120, 40);
    let (x, y) = find(&screen, "▶ id/").unwrap();
    click(&mut app, x + 2, y);
    assert_eq!(app.setup.files.as_ref().unwrap().dir, root.join("data/id"));
    press(&mut app, &[key(KeyCode::Left), key(KeyCode::Home)]);
    // Home is not bound here: the selection is still on id/; go to ./.
    press(&mut app, &[key(KeyCode::PageUp), key(KeyCode::Enter)]);
    assert!(app.setup.files.is_none());
    let added = app
        .setup
        .datasets
        .iter()
        .find(|d| d.path == root.join("data"));
    assert!(added.is_some_and(|d| d.ood), "{:?}", app.setup.datasets);
    // Esc closes it, changing nothing.
    press(&mut app, &[ch('f'), key(KeyCode::Esc)]);
    assert!(app.setup.files.is_none());
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
