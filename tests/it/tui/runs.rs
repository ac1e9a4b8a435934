//! Running from the app: quit and cancel keep the results, a run goes off
//! the UI thread.

use super::synthetic::{BATCH, SETS};
use super::*;

#[test]
fn quit_cancel_and_keep_results() {
    let (tx, rx) = mpsc::channel();
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut app = app_launching(RunSession::new(rx, cancel.clone()));
    press(&mut app, &[ch('s')]);
    assert!(app.running());
    let events = run_events();
    for e in events.iter().take(12).cloned() {
        tx.send(e).unwrap();
    }
    app.tick();
    // q asks while running; n keeps going.
    press(&mut app, &[ch('q')]);
    assert_eq!(app.overlay(), Some(Overlay::ConfirmQuit));
    press(&mut app, &[ch('n')]);
    assert!(!app.should_quit() && app.overlay().is_none());
    // c asks, y cancels: the engine sees the flag, finishes, results stay.
    press(&mut app, &[ch('c')]);
    assert_eq!(app.overlay(), Some(Overlay::ConfirmCancel));
    press(&mut app, &[ch('y')]);
    assert!(cancel.load(Ordering::Relaxed));
    tx.send(Event::Finished {
        cancelled: true,
        elapsed_secs: 1.0,
    })
    .unwrap();
    app.tick();
    assert_eq!(app.status(), Status::Cancelled);
    let kept: usize = app.results().records.iter().map(Vec::len).sum();
    assert_eq!(kept, 5 * BATCH + (120 - 5 * BATCH).min(BATCH));
    press(&mut app, &[ch('4')]);
    assert_eq!(app.browser().rows.len(), kept);
    // Without a run q quits at once.
    press(&mut app, &[ch('q')]);
    assert!(app.should_quit());
    // Ctrl-C always quits.
    let mut app = finished_app();
    press(&mut app, &[ch('?')]);
    app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.should_quit());
}

#[test]
fn start_runs_off_the_ui_thread() {
    // A launcher whose "engine" is a thread sending the synthetic run.
    let launcher = |cfg: RunConfig| {
        assert_eq!(cfg.ood.len(), 2);
        session::spawn_with(move |cancel, emit| {
            for e in run_events() {
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                emit(e);
            }
        })
    };
    let mut app = App::new(
        setup(),
        "gradnorm-tui.toml".into(),
        Box::new(launcher),
        Previews::inline(picker()),
    );
    // Drop cifar10 (unreadable) from the OOD sets, then start.
    assert!(app.setup_mut().select(Row::Ood(3)));
    press(&mut app, &[ch(' ')]);
    checks_pass(&mut app);
    press(&mut app, &[ch('s')]);
    assert_eq!(app.screen(), Screen::Dashboard);
    let start = std::time::Instant::now();
    while app.status() == Status::Running {
        app.tick();
        std::thread::yield_now();
        assert!(start.elapsed().as_secs() < 60, "the run never finished");
    }
    assert_eq!(app.status(), Status::Finished);
    app.tick();
    let total: usize = SETS.iter().map(|s| s.4).sum();
    assert_eq!(app.analysis().total(), total);
}
