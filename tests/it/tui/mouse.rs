//! The mouse: clicks on rows, table cells, list items, buttons and tabs; the
//! wheel over lists.

use crate::tui::{
    app_on_setup, ch, checks_pass, click, draw, enter_scratch, find, finished_app, key, mouse,
    press,
};
use crossterm::event::{KeyCode, MouseButton, MouseEventKind};
use gradnorm_tui::tui::setup::Row;
use gradnorm_tui::tui::{Overlay, Screen};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

#[test]
fn clicks_select_rows_pick_items_and_press_buttons() {
    enter_scratch();
    let mut app = finished_app();
    // The browser: a click on the fourth row selects it.
    press(&mut app, &[ch('4')]);
    let screen = draw(&mut app, 120, 40);
    let (_, y) = find(&screen, "00000004.png").unwrap();
    click(&mut app, 20, y);
    assert_eq!(app.browser().selected, 3);
    // The dashboard's table: a method's row, a set's name.
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 120, 40);
    let (_, y) = find(&screen, "Energy").unwrap();
    click(&mut app, 5, y);
    assert_eq!(app.method(), 2);
    // The table's header line (the progress panel names the sets too).
    let (_, y) = find(&screen, "average").unwrap();
    let header = screen.lines().nth(y as usize).unwrap();
    let x = header.find("scenes").unwrap();
    let x = header[..x].chars().count() as u16 - 1;
    click(&mut app, x + 1, y);
    assert_eq!(app.ood(), 1);
    // A key hint is a button: "? help" opens the help.
    let screen = draw(&mut app, 120, 40);
    let (x, y) = find(&screen, " help ").unwrap();
    click(&mut app, x + 1, y);
    assert_eq!(app.overlay(), Some(Overlay::Help));
    press(&mut app, &[key(KeyCode::Esc)]);
    // The form: one click selects a row, a second toggles it; a list item
    // clicked is picked.
    let mut app = app_on_setup();
    let screen = draw(&mut app, 120, 40);
    let (x, y) = find(&screen, "Mahalanobis").unwrap();
    click(&mut app, x, y);
    let row = app.setup().current();
    assert!(matches!(row, Row::Method(_)), "{row:?}");
    let Row::Method(i) = row else { unreachable!() };
    let before = app.setup().methods[i].enabled;
    click(&mut app, x, y);
    assert_ne!(app.setup().methods[i].enabled, before);
    assert!(app.setup_mut().select(Row::Model));
    press(&mut app, &[key(KeyCode::Enter)]);
    let screen = draw(&mut app, 120, 40);
    let (x, y) = find(&screen, "efficientnet-lite2").unwrap();
    click(&mut app, x, y);
    assert!(app.setup().picker.is_none());
    assert_eq!(app.setup().model.as_deref(), Some("efficientnet-lite2"));
    // A question's buttons: "n" keeps the results.
    let mut app = finished_app();
    checks_pass(&mut app);
    press(&mut app, &[ch('1'), ch('s')]);
    assert_eq!(app.overlay(), Some(Overlay::ConfirmReplace));
    let screen = draw(&mut app, 80, 24);
    let (x, y) = find(&screen, " n  no").unwrap();
    // Clicks outside the question do nothing.
    click(&mut app, 0, 0);
    assert_eq!(app.overlay(), Some(Overlay::ConfirmReplace));
    click(&mut app, x + 1, y);
    assert_eq!(app.overlay(), None);
    assert!(!app.running());
}

#[test]
fn mouse_clicks_tabs_and_scrolls_lists() {
    let mut app = finished_app();
    draw(&mut app, 120, 40);
    let tabs = app.tabs().to_vec();
    mouse(
        &mut app,
        MouseEventKind::Down(MouseButton::Left),
        tabs[2].0 + 1,
        0,
    );
    assert_eq!(app.screen(), Screen::Anatomy);
    mouse(
        &mut app,
        MouseEventKind::Down(MouseButton::Left),
        tabs[3].1,
        0,
    );
    assert_eq!(app.screen(), Screen::Browser);
    mouse(&mut app, MouseEventKind::ScrollDown, 10, 10);
    mouse(&mut app, MouseEventKind::ScrollDown, 10, 10);
    assert_eq!(app.browser().selected, 2);
    mouse(&mut app, MouseEventKind::ScrollUp, 10, 10);
    assert_eq!(app.browser().selected, 1);
}

/// Drawing reads the app and returns where things landed: the same app
/// drawn twice gives the same frame and the same click targets, and the
/// mouse acts on what `App::draw` kept of the last frame.
#[test]
fn drawing_returns_what_clicks_reach_and_changes_nothing() {
    let mut app = finished_app();
    press(&mut app, &[ch('2')]);
    let area = Rect::new(0, 0, 120, 40);
    let (mut a, mut b) = (Buffer::empty(area), Buffer::empty(area));
    let first = gradnorm_tui::tui::render(&app, area, &mut a);
    let second = gradnorm_tui::tui::render(&app, area, &mut b);
    assert_eq!(a, b);
    assert_eq!(first, second);
    assert_eq!(first.tabs.len(), Screen::ALL.len());
    assert!(first.plot.area.width > 0 && first.plot.hi > first.plot.lo);
    assert!(!first.targets.is_empty());
    // Only a kept frame answers the mouse.
    assert!(app.tabs().is_empty());
    let (x, _) = first.tabs[2];
    click(&mut app, x + 1, 0);
    assert_eq!(app.screen(), Screen::Dashboard);
    draw(&mut app, 120, 40);
    assert_eq!(app.tabs(), &first.tabs[..]);
    click(&mut app, x + 1, 0);
    assert_eq!(app.screen(), Screen::Anatomy);
}
