//! What the TUI says about a run beside its numbers: the unreadable files
//! it skipped (named), what a new run does to the one on screen, and the
//! cancel question of a run that ends while it is asked.

use super::*;

/// Skipped files are named in the progress panel, as many as fit, then
/// "and N more"; the count stays whatever the width.
#[test]
fn skipped_files_are_named() {
    let mut app = finished_app();
    for i in 0..7 {
        app.apply(Event::Skipped {
            dataset: 1,
            path: format!("/data/ood/broken-{i}.jpg").into(),
            reason: "truncated JPEG".into(),
        });
    }
    app.tick();
    press(&mut app, &[ch('2')]);
    let wide = draw(&mut app, 200, 50);
    assert!(
        wide.contains("7 unreadable, skipped: broken-0.jpg, broken-1.jpg"),
        "{wide}"
    );
    // Seven names do not fit: the rest are counted.
    let shown = (0..7)
        .filter(|i| wide.contains(&format!("broken-{i}.jpg")))
        .count();
    assert!((2..7).contains(&shown), "{wide}");
    assert!(wide.contains(&format!("and {} more", 7 - shown)), "{wide}");
    // A short terminal keeps the count.
    let short = draw(&mut app, 80, 24);
    assert!(short.contains("7 unreadable"), "{short}");
}

#[test]
fn skipped_names_fit_their_room() {
    use gradnorm_core::run::Skipped;
    use gradnorm_tui::tui::dashboard::skipped_names;
    let sets = vec![
        vec![],
        ["a.jpg", "bb.png", "c.gif"]
            .map(|p| Skipped {
                path: format!("/x/{p}").into(),
                reason: "r".into(),
            })
            .to_vec(),
    ];
    assert_eq!(skipped_names(&sets, 100), ": a.jpg, bb.png, c.gif");
    assert_eq!(skipped_names(&sets, 21), ": a.jpg and 2 more");
    assert_eq!(skipped_names(&sets, 22), ": a.jpg, bb.png, c.gif");
    assert_eq!(skipped_names(&sets, 10), "");
}

/// The replace question says what happens now: the run shown stays in the
/// store, and where to reopen it.
#[test]
fn the_replace_question_says_the_run_shown_is_kept() {
    let mut app = finished_app();
    checks_pass(&mut app);
    press(&mut app, &[ch('1'), ch('s')]);
    assert_eq!(app.overlay(), Some(Overlay::ConfirmReplace));
    let s = draw(&mut app, 120, 40);
    // (The text wraps: short needles.)
    for needle in [
        "Start a new run?",
        "The run shown stays",
        "store (runs)",
        "reopens it",
    ] {
        assert!(s.contains(needle), "lacks {needle}:\n{s}");
    }
    assert!(!s.contains("eval --out"), "{s}");
}

/// The run goes on while the cancel question is open (the question says
/// so); when it ends first, the question closes, saying there was nothing
/// left to cancel, and a late `y` cancels nothing.
#[test]
fn a_run_that_ends_while_asked_closes_the_cancel_question() {
    let (tx, rx) = mpsc::channel();
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut app = app_launching(RunSession::new(rx, cancel.clone()));
    press(&mut app, &[ch('s')]);
    let events = run_events();
    let n = events.len();
    for e in events.iter().take(n - 1).cloned() {
        tx.send(e).unwrap();
    }
    app.tick();
    press(&mut app, &[ch('c')]);
    assert_eq!(app.overlay(), Some(Overlay::ConfirmCancel));
    let s = draw(&mut app, 120, 40);
    assert!(s.contains("The run goes on while you answer"), "{s}");
    tx.send(events[n - 1].clone()).unwrap();
    app.tick();
    assert_eq!(app.status(), Status::Finished);
    assert_eq!(app.overlay(), None);
    let (said, _) = app.message().cloned().unwrap();
    assert!(said.contains("nothing to cancel"), "{said}");
    press(&mut app, &[ch('y')]);
    assert!(!cancel.load(Ordering::Relaxed));
    assert_eq!(app.status(), Status::Finished);
}
