//! The TUI without a terminal: snapshots of every screen at two sizes
//! (ratatui's TestBackend + insta), fed by a deterministic synthetic run,
//! and tests of the app state (filters, sorting, thresholds, metric
//! updates as batches arrive, keys, the config file). Here: the helpers the
//! other TUI test modules share.

mod browser;
mod checks;
mod dashboard;
mod engine;
mod fit;
mod form;
mod inspect;
mod keys;
mod mouse;
mod notices;
mod run_store;
mod runs;
mod setup;
mod snapshots;
mod state;
pub(crate) mod synthetic;
mod threshold;
mod tmux;

pub(crate) use synthetic::{enter_scratch, info, methods, run_events};

use crate::common;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use gradnorm_core::run::{Event, ImageRecord, RunConfig, RunInfo};
use gradnorm_engine::engine::Checks;
use gradnorm_engine::score::Method;
use gradnorm_tui::tui::browser::Sort;
use gradnorm_tui::tui::discover::{self, Candidate, Count};
use gradnorm_tui::tui::preview::Previews;
use gradnorm_tui::tui::session::{self, RunSession};
use gradnorm_tui::tui::setup::Row;
use gradnorm_tui::tui::{App, Overlay, Screen, SetupState, Status};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

// ---------------------------------------------------------------- helpers

pub(crate) fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

pub(crate) fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

pub(crate) fn press(app: &mut App, keys: &[KeyEvent]) {
    for k in keys {
        app.handle_key(*k);
    }
}

pub(crate) fn no_launch() -> Box<dyn gradnorm_tui::tui::Launcher> {
    Box::new(|_cfg: RunConfig| -> RunSession { panic!("no run expected") })
}

pub(crate) fn candidates() -> Vec<Candidate> {
    vec![
        Candidate {
            name: "imagenet-val".into(),
            path: "dataset/imagenet-val/val_list.txt".into(),
            root: None,
        },
        Candidate {
            name: "textures".into(),
            path: "dataset/textures".into(),
            root: None,
        },
        Candidate {
            name: "scenes".into(),
            path: "dataset/scenes".into(),
            root: None,
        },
        Candidate {
            name: "cifar10".into(),
            path: "dataset/cifar10".into(),
            root: None,
        },
    ]
}

pub(crate) fn setup() -> SetupState {
    let mut s = SetupState::new(
        vec![
            "checkpoints/BiT-S-R101x1-flat-finetune.pth.tar".into(),
            "checkpoints/tiny.pth.tar".into(),
        ],
        candidates(),
    );
    for (p, n) in [
        ("dataset/imagenet-val/val_list.txt", 1300),
        ("dataset/textures", 1200),
        ("dataset/scenes", 1100),
    ] {
        s.set_count(Path::new(p), Count::Images(n));
    }
    s.set_count(
        Path::new("dataset/cifar10"),
        Count::Error("dataset/cifar10: permission denied".into()),
    );
    s
}

pub(crate) fn picker() -> ratatui_image::picker::Picker {
    // Fixed protocol and font size: frames are the same on every terminal.
    let mut p = ratatui_image::picker::Picker::halfblocks();
    p.set_protocol_type(ratatui_image::picker::ProtocolType::Halfblocks);
    p
}

pub(crate) fn app() -> App {
    App::new(
        setup(),
        "gradnorm-tui.toml".into(),
        no_launch(),
        Previews::inline(picker()),
    )
}

/// The engine's pre-run checks taken as passed for the form's run: the
/// fixture's paths are made up, and the launchers of these tests run no
/// engine (a run the checks refuse is not started: see `form.rs`).
pub(crate) fn checks_pass(app: &mut App) {
    let config = app.setup().to_config().unwrap();
    app.setup_mut().set_checked((config, Checks::default()));
}

/// The engine's checks of the fixture's run, fixed for snapshots: what they
/// find depends on the folder the tests run in (a checkout may hold its
/// own `dataset/textures`); `form.rs` tests what they really say.
pub(crate) fn checks_fail_on_the_checkpoint(app: &mut App) {
    let config = app.setup().to_config().unwrap();
    let problem = format!(
        "{}: No such file or directory (os error 2)",
        config.model.checkpoint.as_ref().unwrap().display()
    );
    app.setup_mut().set_checked((
        config,
        Checks {
            problems: vec![problem],
            ..Checks::default()
        },
    ));
}

/// An app whose first launch starts `session`.
pub(crate) fn app_launching(session: RunSession) -> App {
    let mut pending = Some(session);
    App::new(
        setup(),
        "gradnorm-tui.toml".into(),
        Box::new(move |_cfg: RunConfig| pending.take().unwrap()),
        Previews::inline(picker()),
    )
}

/// An app that has folded the first `n` events of the synthetic run.
pub(crate) fn app_after(n: usize) -> App {
    let mut app = app();
    for e in run_events().into_iter().take(n) {
        app.apply(e);
    }
    app.tick();
    app
}

pub(crate) fn finished_app() -> App {
    app_after(usize::MAX)
}

pub(crate) fn draw(app: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.draw(f)).unwrap();
    // The first frame places the preview; the second shows it.
    app.after_draw();
    t.draw(|f| app.draw(f)).unwrap();
    t.backend().to_string()
}

const SIZES: [(u16, u16); 2] = [(120, 40), (80, 24)];

/// `app` drawn at each of SIZES, against the snapshots `NAME_WxH`.
pub(crate) fn snap(name: &str, app: &mut App) {
    for (w, h) in SIZES {
        let text = draw(app, w, h);
        snap_text(&format!("{name}_{w}x{h}"), text);
    }
}

/// `text` against the snapshot `name`. Every TUI snapshot is asserted here,
/// so that all keep the `it__tui__` names and tests/it/snapshots/ whichever
/// module draws them (insta names a snapshot after the module asserting
/// it, and looks for it beside the asserting file).
pub(crate) fn snap_text(name: &str, text: String) {
    insta::with_settings!({snapshot_path => "../snapshots"}, {
        insta::assert_snapshot!(name, text);
    });
}

pub(crate) fn click(app: &mut App, column: u16, row: u16) {
    app.handle_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    });
}

/// Where `text` first appears on the screen `draw` returned: (column, row).
pub(crate) fn find(screen: &str, text: &str) -> Option<(u16, u16)> {
    screen.lines().enumerate().find_map(|(y, line)| {
        // TestBackend's lines are quoted: drop the leading quote.
        let line = line.strip_prefix('"').unwrap_or(line);
        line.find(text)
            .map(|b| (line[..b].chars().count() as u16, y as u16))
    })
}

pub(crate) fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, &[ch(c)]);
    }
}

/// The synthetic run with its info changed by `f`.
pub(crate) fn app_with_info(f: impl Fn(&mut RunInfo)) -> App {
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

pub(crate) fn app_on_setup() -> App {
    App::new(
        setup(),
        "x.toml".into(),
        crate::tui::no_launch(),
        Previews::off(),
    )
}

pub(crate) fn mouse(app: &mut App, kind: MouseEventKind, column: u16, row: u16) {
    app.handle_mouse(MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    });
}
