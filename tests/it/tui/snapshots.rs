//! Snapshots of every screen at two sizes (ratatui's TestBackend + insta);
//! the .snap files keep their `it__tui__` names (see `super::snap`).

use super::*;

#[test]
fn snapshot_setup() {
    let mut app = app();
    checks_fail_on_the_checkpoint(&mut app);
    snap("setup", &mut app);
    // Editing a value shows the text being typed.
    app.setup_mut().select(Row::Limit);
    press(&mut app, &[key(KeyCode::Enter), ch('2'), ch('0')]);
    let text = draw(&mut app, 120, 40);
    snap_text("setup_editing_120x40", text);
    // A short terminal scrolls the form to keep the cursor in view.
    press(&mut app, &[key(KeyCode::Esc), ch('G')]);
    let text = draw(&mut app, 80, 24);
    assert!(text.contains("[ Write config file ]"), "{text}");
    snap_text("setup_scrolled_80x24", text);
}

#[test]
fn snapshot_dashboard_mid_run_and_finished() {
    let mut events = run_events();
    // Mid-run: all ID batches and two OOD batches in.
    let mid = 1 + 2 * 8 + 2 * 2;
    // The run is "going": a session whose sender is still alive.
    let (tx, rx) = mpsc::channel();
    let mut app = app_launching(RunSession::new(rx, Arc::new(Default::default())));
    press(&mut app, &[ch('s')]);
    assert_eq!(app.screen(), Screen::Dashboard);
    for e in events.drain(..mid) {
        tx.send(e).unwrap();
    }
    app.tick();
    app.clear_message();
    snap("dashboard_running", &mut app);
    for e in events {
        tx.send(e).unwrap();
    }
    app.tick();
    app.clear_message();
    assert_eq!(app.status(), Status::Finished);
    // GradNorm against scenes: the view re-plots at once.
    press(&mut app, &[ch('m'), ch('m'), ch('m'), key(KeyCode::Right)]);
    snap("dashboard_finished", &mut app);
}

/// Issue 29 item 5: at 80x24 the running dashboard keeps a progress line,
/// and the metrics table scrolls to the method selected, the last of all.
#[test]
fn snapshot_80x24_progress_line_and_table_scrolled_to_the_last_method() {
    let mut events = crate::tui::synthetic::run_events_every_method();
    let mid = 1 + 2 * 8 + 2 * 2;
    let (tx, rx) = mpsc::channel();
    let mut app = app_launching(RunSession::new(rx, Arc::new(Default::default())));
    press(&mut app, &[ch('s')]);
    for e in events.drain(..mid) {
        tx.send(e).unwrap();
    }
    app.tick();
    app.clear_message();
    let text = draw(&mut app, 80, 24);
    // Progress: the run's images so far, its rate and ETA, on one line.
    let progress = text.lines().nth(1).unwrap();
    assert!(
        progress.contains("152/260 images") && progress.contains("ETA"),
        "{text}"
    );
    assert!(text.contains("methods 1-"), "{text}");
    snap_text("dashboard_running_every_method_80x24", text);
    for e in events {
        tx.send(e).unwrap();
    }
    app.tick();
    app.clear_message();
    // ↑ from the first method wraps to the last: the table shows it.
    press(&mut app, &[key(KeyCode::Up)]);
    let n = app.n_methods();
    let all = gradnorm_core::method::registry::METHODS.len();
    assert_eq!((n, app.method()), (all, all - 1));
    let last = app.results().methods()[all - 1].label();
    // The table cuts long labels to its column ("LowDim-…").
    let cut: String = last.chars().take(7).collect();
    let text = draw(&mut app, 80, 24);
    assert!(text.contains(&format!("▶ {cut}")), "{text}");
    assert!(text.contains(&format!("-{all} of {all} (↑↓)")), "{text}");
    snap_text("dashboard_last_method_80x24", text);
    // The browser's details show the method in view among all of them.
    press(&mut app, &[ch('4')]);
    let text = draw(&mut app, 80, 24);
    assert!(
        text.contains(&format!("methods {}-{all}/{all}", all - 2)),
        "{text}"
    );
    assert!(text.contains(&format!("{last} ")), "{text}");
    press(&mut app, &[ch('2')]);
    // Every method is reachable, each shown when selected.
    for m in 0..n {
        app.set_view(m, 0);
        // Long labels are cut to the column ("Mahalan…").
        let label: String = app.results().methods()[m].label().chars().take(7).collect();
        let text = draw(&mut app, 80, 24);
        assert!(text.contains(&format!("▶ {label}")), "{m} {label}\n{text}");
    }
}

#[test]
fn snapshot_anatomy() {
    let mut app = finished_app();
    press(&mut app, &[ch('3')]);
    snap("anatomy", &mut app);
}

#[test]
fn snapshot_browser() {
    enter_scratch();
    let mut app = finished_app();
    // GradNorm, sorted by score, misdetections against textures.
    press(
        &mut app,
        &[ch('4'), ch('m'), ch('m'), ch('m'), ch('s'), ch('x')],
    );
    snap("browser_misdetections", &mut app);
    press(&mut app, &[key(KeyCode::Esc), ch('d'), ch('d')]);
    snap("browser_textures", &mut app);
    // Enter: the image in full.
    press(&mut app, &[key(KeyCode::Enter)]);
    snap("browser_image", &mut app);
}

#[test]
fn snapshot_help_and_too_small() {
    let mut app = finished_app();
    press(&mut app, &[ch('2'), ch('?')]);
    assert_eq!(app.overlay(), Some(Overlay::Help));
    snap("help", &mut app);
    press(&mut app, &[key(KeyCode::Esc)]);
    assert_eq!(app.overlay(), None);
    let text = draw(&mut app, 50, 12);
    snap_text("too_small_50x12", text);
}
