//! The Inspect screen: absorbing classes and the methods that disagree.

use crate::tui::{ch, draw, finished_app, key, press, snap};
use crossterm::event::KeyCode;
use gradnorm_tui::tui::Screen;

#[test]
fn inspect_shows_absorbing_classes_and_disagreements() {
    use gradnorm_tui::tui::inspect::{absorbing_classes, disagreements};
    let mut app = finished_app();
    press(&mut app, &[ch('5')]);
    assert_eq!(app.screen(), Screen::Inspect);
    snap("inspect", &mut app);
    // Absorbing classes: the top-1 classes of the textures accepted at the
    // 95%-TPR threshold, counted here by hand.
    let d = app.ood_dataset().unwrap();
    let t = app.current_threshold().unwrap();
    let mut want = std::collections::HashMap::new();
    for r in &app.results().records[d] {
        if r.scores[0] as f64 >= t {
            *want.entry(r.top[0].0).or_insert(0usize) += 1;
        }
    }
    let got = absorbing_classes(app.results(), 0, d, t);
    assert_eq!(got.len(), want.len());
    for (c, n) in &got {
        assert_eq!(want[c], *n);
    }
    assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
    // Disagreements of MSP and GradNorm: the images one accepts and the
    // other rejects at their 95%-TPR thresholds, found here by hand.
    let a = app.analysis();
    let (ta, tb) = (
        a.point(0, d).unwrap().threshold,
        a.point(3, d).unwrap().threshold,
    );
    let top = disagreements(app.results(), a, app.thresholds(), 0, 3, d);
    let mut want = Vec::new();
    for dd in [0, d] {
        for (i, r) in app.results().records[dd].iter().enumerate() {
            let (sa, sb) = (r.scores[0] as f64, r.scores[3] as f64);
            if (sa >= ta) != (sb >= tb) {
                want.push((dd, i, sa >= ta));
            }
        }
    }
    let mut got: Vec<_> = top
        .iter()
        .map(|x| (x.dataset, x.index, x.first_accepts))
        .collect();
    got.sort();
    assert!(want.len() > 5, "{}", want.len());
    assert_eq!(got, want);
    // Strongest first: the distances to the two thresholds in ID
    // percentiles, summed.
    assert!(top.windows(2).all(|w| w[0].strength >= w[1].strength));
    let pct = |m: usize, s: f64| a.id_percentile(m, s).unwrap();
    let r = &app.results().records[top[0].dataset][top[0].index];
    let strength = (pct(0, r.scores[0] as f64) - pct(0, ta)).abs()
        + (pct(3, r.scores[3] as f64) - pct(3, tb)).abs();
    assert!((top[0].strength - strength).abs() < 1e-12);
    // n changes the second method.
    let before = app.second_method();
    press(&mut app, &[ch('n')]);
    assert_ne!(app.second_method(), before);
}

/// Issue 29 item 8: the disagreements have a cursor, Enter opens the image
/// in the browser, Enter there shows it in full; a moved threshold changes
/// which images disagree.
#[test]
fn the_disagreements_open_the_image_and_follow_the_threshold() {
    use gradnorm_tui::tui::inspect::disagreements;
    let mut app = finished_app();
    // MSP against GradNorm, textures in view.
    press(&mut app, &[ch('5'), ch('n'), ch('n')]);
    assert_eq!((app.method(), app.second_method()), (0, 3));
    let d = app.ood_dataset().unwrap();
    let found = |app: &gradnorm_tui::tui::App| {
        disagreements(app.results(), app.analysis(), app.thresholds(), 0, 3, d)
    };
    let before = found(&app);
    press(&mut app, &[key(KeyCode::Down), key(KeyCode::Down)]);
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains(&format!("{} images called ID by one", before.len())),
        "{screen}"
    );
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.screen(), Screen::Browser);
    let x = before[2];
    assert_eq!(app.browser().current(), Some((x.dataset, x.index)));
    // Enter: the image in full, every method's score and the whole top-5.
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.browser().detail);
    let screen = draw(&mut app, 120, 40);
    for m in app.results().methods() {
        assert!(screen.contains(m.label()), "{}\n{screen}", m.label());
    }
    let rec = &app.results().records[x.dataset][x.index];
    let top5 = screen.lines().filter(|l| l.contains('%')).count();
    assert!(top5 >= 5 + app.n_methods(), "{screen}");
    assert!(rec.top.len() == 5 && screen.contains("top-5"));
    assert!(screen.contains("Esc back"), "{screen}");
    // Down: the next image, still in full; Esc: the list as it was.
    press(&mut app, &[key(KeyCode::Down)]);
    assert!(app.browser().detail);
    press(&mut app, &[key(KeyCode::Esc)]);
    assert!(!app.browser().detail);
    assert_eq!(app.browser().dataset, Some(x.dataset));
    // MSP's threshold raised on the dashboard: more ID images rejected by
    // MSP alone, so the list changes to the one at the moved threshold.
    press(&mut app, &[ch('2'), ch(']'), ch(']'), ch(']'), ch('5')]);
    let t = app.current_threshold().unwrap();
    let after = found(&app);
    assert_ne!(after, before);
    let tb = app.analysis().point(3, d).unwrap().threshold;
    let mut want = 0;
    for dd in [0, d] {
        for r in &app.results().records[dd] {
            want += usize::from((r.scores[0] as f64 >= t) != (r.scores[3] as f64 >= tb));
        }
    }
    assert_eq!(after.len(), want);
    snap("inspect_moved_threshold", &mut app);
    // A click selects a row, a second one opens it.
    let screen = draw(&mut app, 120, 40);
    let x = after[1];
    let name = app.results().records[x.dataset][x.index]
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let (col, row) = crate::tui::find(&screen, &name).expect("the second row drawn");
    crate::tui::click(&mut app, col, row);
    assert_eq!(app.screen(), Screen::Inspect);
    crate::tui::click(&mut app, col, row);
    assert_eq!(app.screen(), Screen::Browser);
    assert_eq!(app.browser().current(), Some((x.dataset, x.index)));
}
