//! The Inspect screen: absorbing classes and the methods that disagree.

use crate::tui::{ch, finished_app, press, snap};
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
    // Disagreements: the largest gaps of ID percentiles, largest first.
    let top = disagreements(app.results(), app.analysis(), 0, 3, d, 5);
    assert_eq!(top.len(), 5);
    let gap = |x: &gradnorm_tui::tui::inspect::Disagreement| (x.first - x.second).abs();
    assert!(top.windows(2).all(|w| gap(&w[0]) >= gap(&w[1])));
    let pct = |m: usize, s: f32| app.analysis().id_percentile(m, s as f64).unwrap();
    let mut max_gap: f64 = 0.0;
    for dd in [0, d] {
        for r in &app.results().records[dd] {
            max_gap = max_gap.max((pct(0, r.scores[0]) - pct(3, r.scores[3])).abs());
        }
    }
    assert_eq!(gap(&top[0]), max_gap);
    // n changes the second method.
    let before = app.second_method();
    press(&mut app, &[ch('n')]);
    assert_ne!(app.second_method(), before);
}
