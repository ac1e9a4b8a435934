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

/// Item 7 of issue 29: the threshold moved on the dashboard is the one
/// Dashboard Enter, the Browser's `x` and Inspect judge by, per method and
/// OOD set; every other pair stays at its 95%-TPR one.
#[test]
fn one_moved_threshold_per_method_and_set_is_read_by_every_screen() {
    let mut app = finished_app();
    // ODIN against textures, its threshold lowered five steps.
    press(&mut app, &[ch('2'), key(KeyCode::Down)]);
    let (m, d) = (app.method(), app.ood_dataset().unwrap());
    assert_eq!(m, 1);
    let t95 = app.analysis().point(m, d).unwrap().threshold;
    press(&mut app, &[ch('['); 5]);
    let t = app.current_threshold().unwrap();
    assert!(t < t95, "{t} !< {t95}");
    assert_eq!(app.threshold(), Some(t));
    // Another method shows its own 95%-TPR one; coming back keeps the move.
    press(&mut app, &[key(KeyCode::Down)]);
    let other = app.analysis().point(m + 1, d).unwrap().threshold;
    assert_eq!(app.current_threshold(), Some(other));
    assert_eq!(app.threshold(), None);
    press(
        &mut app,
        &[key(KeyCode::Right), key(KeyCode::Left), key(KeyCode::Up)],
    );
    assert_eq!(app.current_threshold(), Some(t));
    assert!(draw(&mut app, 120, 40).contains("moved · t resets"));

    // Dashboard Enter: exactly the textures scored at or above t.
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.screen(), Screen::Browser);
    let mut got: Vec<(usize, usize)> = app.browser().rows.clone();
    got.sort();
    let sd = app.results().scores(d, m);
    let want: Vec<(usize, usize)> = (0..sd.len())
        .filter(|&i| sd[i] >= t)
        .map(|i| (d, i))
        .collect();
    assert!(want.len() > sd.len() / 20);
    assert_eq!(got, want);

    // The Browser's x, every set: ID images below t (textures in view),
    // textures at or above t, the other OOD set at its own 95%-TPR one.
    press(&mut app, &[key(KeyCode::Esc), ch('x')]);
    assert!(app.browser().misdetections && app.browser().dataset.is_none());
    let mut got: Vec<(usize, usize)> = app.browser().rows.clone();
    got.sort();
    let mut want = Vec::new();
    for dd in 0..app.results().records.len() {
        let cut = if dd == d {
            t
        } else if dd > 0 {
            app.analysis().point(m, dd).unwrap().threshold
        } else {
            t
        };
        for (i, &s) in app.results().scores(dd, m).iter().enumerate() {
            if (dd == 0 && s < cut) || (dd > 0 && s >= cut) {
                want.push((dd, i));
            }
        }
    }
    want.sort();
    assert_eq!(got, want);

    // Inspect: the false positives absorbed are those at t.
    press(&mut app, &[ch('5')]);
    assert_eq!(app.screen(), Screen::Inspect);
    let n = app
        .results()
        .scores(d, m)
        .iter()
        .filter(|&&s| s >= t)
        .count();
    let screen = draw(&mut app, 120, 40);
    let shown = format!("{n} false positives");
    assert!(screen.contains(&shown), "{shown}\n{screen}");

    // t on the dashboard resets the pair: Enter then counts at 95% TPR.
    press(&mut app, &[ch('2'), ch('t'), key(KeyCode::Enter)]);
    let n95 = app
        .results()
        .scores(d, m)
        .iter()
        .filter(|&&s| s >= t95)
        .count();
    assert_eq!(app.browser().rows.len(), n95);
    assert!(n95 < want_len(&want, d));

    // The Anatomy draws GradNorm's threshold in use: moved, it says so.
    press(&mut app, &[ch('3')]);
    assert!(draw(&mut app, 120, 40).contains("threshold at 95% TPR"));
    press(&mut app, &[ch('2'), ch('m'), ch('m'), ch(']'), ch('3')]);
    assert_eq!(app.method(), 3);
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("threshold (moved on the dashboard)"),
        "{screen}"
    );
}

fn want_len(rows: &[(usize, usize)], d: usize) -> usize {
    rows.iter().filter(|r| r.0 == d).count()
}
