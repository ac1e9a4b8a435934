//! The browser: search of file names, jump to a number, one top-1 class kept.

use crate::tui::{ch, draw, enter_scratch, finished_app, key, press, snap, typed};
use crossterm::event::KeyCode;
use gradnorm_tui::tui::browser::display_path;

#[test]
fn the_browser_searches_file_names_jumps_and_keeps_one_class() {
    enter_scratch();
    let mut app = finished_app();
    press(&mut app, &[ch('4'), ch('/')]);
    typed(&mut app, "_0001");
    let info = app.results().info.clone().unwrap();
    let want: Vec<(usize, usize)> = (0..app.results().records.len())
        .flat_map(|d| (0..app.results().records[d].len()).map(move |i| (d, i)))
        .filter(|&(d, i)| display_path(&info, &app.results().records[d][i]).contains("_0001"))
        .collect();
    // Applied as typed, against the names as listed (counted above).
    assert!(!want.is_empty());
    assert_eq!(app.browser().rows, want);
    snap("browser_search", &mut app);
    // Esc puts back the search before it; Enter keeps it.
    press(&mut app, &[key(KeyCode::Esc)]);
    assert!(app.browser().query.is_empty());
    assert_eq!(app.browser().rows.len(), 260);
    press(&mut app, &[ch('/')]);
    typed(&mut app, "SUN_");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.browser().rows.len(), 60, "any case: the 60 scenes");
    assert_eq!(app.mode(), gradnorm_tui::tui::keymap::Mode::Browser);
    // : jumps to a number in the list (from 1, as the position shows).
    press(&mut app, &[ch(':')]);
    typed(&mut app, "17");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.browser().selected, 16);
    press(
        &mut app,
        &[ch(':'), ch('9'), ch('9'), ch('9'), key(KeyCode::Enter)],
    );
    assert_eq!(app.browser().selected, 59);
    // p: a list of top-1 classes; "goldfish" keeps that class only.
    press(&mut app, &[key(KeyCode::Esc), ch('p')]);
    assert!(app.browser().class_picker.is_some());
    typed(&mut app, "goldf");
    snap("browser_class_picker", &mut app);
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.browser().class, Some(1));
    let goldfish = app
        .results()
        .records
        .iter()
        .flatten()
        .filter(|r| r.top[0].0 == 1)
        .count();
    assert!(goldfish > 0);
    assert_eq!(app.browser().rows.len(), goldfish);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("top-1 goldfish"), "{screen}");
    // Esc clears every filter.
    press(&mut app, &[key(KeyCode::Esc)]);
    assert_eq!((app.browser().class, app.browser().rows.len()), (None, 260));
}
