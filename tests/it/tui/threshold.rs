//! The threshold: moved by keys and the mouse with the counts following, and
//! the OOD set's false positives at it opened in the browser.

use crate::tui::{ch, draw, finished_app, key, mouse, press, snap};
use crossterm::event::{KeyCode, MouseButton, MouseEventKind};
use gradnorm_tui::tui::analysis::Split;
use gradnorm_tui::tui::browser::Sort;
use gradnorm_tui::tui::{App, Screen};

#[test]
fn dashboard_enter_opens_the_ood_sets_false_positives_most_confident_first() {
    let mut app = finished_app();
    // GradNorm against scenes (the second OOD set).
    press(
        &mut app,
        &[ch('2'), ch('m'), ch('m'), ch('m'), key(KeyCode::Right)],
    );
    let d = app.ood_dataset().unwrap();
    let t = app.analysis().point(3, d).unwrap().threshold;
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.screen(), Screen::Browser);
    assert_eq!(app.browser().dataset, Some(d));
    assert_eq!(app.browser().sort, Sort::Descending);
    let scores: Vec<f32> = app
        .browser()
        .rows
        .iter()
        .map(|&(dd, i)| {
            assert_eq!(dd, d);
            app.results().records[dd][i].scores[3]
        })
        .collect();
    let want = app
        .results()
        .scores(d, 3)
        .iter()
        .filter(|&&s| s >= t)
        .count();
    assert_eq!(scores.len(), want);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(app.browser().selected, 0);
}

#[test]
fn the_threshold_moves_with_keys_and_the_mouse_and_counts_follow() {
    let mut app = finished_app();
    press(&mut app, &[ch('2')]);
    let d = app.ood_dataset().unwrap();
    let start = app.current_threshold().unwrap();
    let counts = |app: &App| {
        let t = app.current_threshold().unwrap();
        Split::at(app.analysis().sorted(0, 0), app.analysis().sorted(d, 0), t)
    };
    let before = counts(&app);
    // ] raises it: fewer images on the ID side, never more.
    press(&mut app, &[ch(']'), ch(']')]);
    let up = counts(&app);
    assert!(app.current_threshold().unwrap() > start);
    assert!(up.id_kept + up.ood_accepted < before.id_kept + before.ood_accepted);
    // The counts on screen are the split's (independently counted here).
    let t = app.current_threshold().unwrap();
    let id_kept = app
        .results()
        .scores(0, 0)
        .iter()
        .filter(|&&s| s >= t)
        .count();
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
    let (plot, lo, _) = app.plot();
    assert!(plot.width > 10, "{plot:?}");
    mouse(
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
    mouse(
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
    assert_eq!(app.screen(), Screen::Browser);
    let sel = app.browser().selected;
    let score = |i: usize| {
        let (d, k) = app.browser().rows[i];
        app.results().records[d][k].scores[0] as f64
    };
    assert!(score(sel) < t && sel > 0 && score(sel - 1) >= t);
}
