//! Keys from the one keymap: Tab in the form, digits for screens, help per
//! screen, and a new start asking before it replaces results.

use crate::tui::{app, ch, draw, finished_app, key, press, setup, snap};
use crossterm::event::KeyCode;
use gradnorm_core::run::{Event, RunConfig};
use gradnorm_tui::tui::preview::Previews;
use gradnorm_tui::tui::session::RunSession;
use gradnorm_tui::tui::setup::Row;
use gradnorm_tui::tui::{App, Overlay, Screen};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

#[test]
fn tab_moves_in_the_form_and_digits_switch_screens() {
    let mut app = app();
    let first = app.setup().current();
    press(&mut app, &[key(KeyCode::Tab), key(KeyCode::Tab)]);
    assert_eq!(app.screen(), Screen::Setup);
    assert_eq!(app.setup().cursor, 2);
    press(&mut app, &[key(KeyCode::BackTab), key(KeyCode::BackTab)]);
    assert_eq!(app.setup().current(), first);
    // Shift-Tab from the first field wraps to the last.
    press(&mut app, &[key(KeyCode::BackTab)]);
    assert_eq!(app.setup().current(), Row::Save);
    press(&mut app, &[ch('3')]);
    assert_eq!(app.screen(), Screen::Anatomy);
    press(&mut app, &[key(KeyCode::Tab)]);
    assert_eq!(app.screen(), Screen::Browser);
}

#[test]
fn help_is_per_screen_and_scrolls() {
    let mut app = finished_app();
    press(&mut app, &[ch('3'), ch('?')]);
    assert_eq!(app.overlay(), Some(Overlay::Help));
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
    assert_eq!(app.overlay(), None);
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
    let n: usize = app.results().records.iter().map(Vec::len).sum();
    crate::tui::checks_pass(&mut app);
    press(&mut app, &[ch('1'), ch('s')]);
    assert_eq!(app.overlay(), Some(Overlay::ConfirmReplace));
    snap("confirm_replace", &mut app);
    // n (or any other key) keeps them.
    press(&mut app, &[ch('n')]);
    assert_eq!(app.overlay(), None);
    assert!(!app.running());
    assert_eq!(app.results().records.iter().map(Vec::len).sum::<usize>(), n);
    // y replaces them.
    press(&mut app, &[ch('s'), ch('y')]);
    assert!(app.running());
    assert!(app.results().info.is_none());
}
