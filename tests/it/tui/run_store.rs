//! The TUI's Runs screen on a real run store: two runs recorded through
//! the store's own recorder from the synthetic run's events, listed,
//! compared, exported and reopened; store work off the UI thread.

use crate::tui::{app, ch, draw, key, press, run_events, snap};

use crossterm::event::KeyCode;
use gradnorm_core::run::{DatasetSpec, Event, RunConfig, RunResults};
use gradnorm_engine::model::ModelSpec;
use gradnorm_engine::store::{self, Recorder, Store};
use gradnorm_tui::tui::runs::RunsState;
use gradnorm_tui::tui::wake::Wake;
use gradnorm_tui::tui::{App, Screen, Status};
use std::path::Path;

/// The config the synthetic run stands for (its sets and methods); `batch`
/// tells two runs apart.
fn config(batch: &str) -> RunConfig {
    let info = crate::tui::info();
    let spec = |d: &gradnorm_core::run::DatasetInfo| DatasetSpec {
        name: d.name.clone(),
        path: d.path.clone(),
        root: None,
        format: None,
        group: d.group.clone(),
    };
    RunConfig {
        model: ModelSpec {
            name: Some(info.model.name.clone()),
            checkpoint: info.setup.checkpoint.clone(),
        },
        class_names: None,
        class_order: None,
        id: spec(&info.datasets[0]),
        ood: info.datasets[1..].iter().map(spec).collect(),
        methods: info.methods.clone(),
        fit: None,
        preprocess: None,
        image_size: None,
        batch: batch.parse().unwrap(),
        device: "cpu".parse().unwrap(),
        dtype: "f32".parse().unwrap(),
        limit: None,
        workers: None,
    }
}

/// The synthetic run's events, GradNorm's OOD scores halved in the second
/// run (so only GradNorm's rows change between the two).
fn events(second: bool) -> Vec<Event> {
    let mut events = run_events();
    if second {
        for e in &mut events {
            if let Event::Records { dataset, records } = e {
                if *dataset > 0 {
                    for r in records {
                        r.scores[3] *= 0.5;
                    }
                }
            }
        }
    }
    events
}

/// A store in `dir` holding the two runs.
fn record_two(dir: &Path) -> [RunResults; 2] {
    [false, true].map(|second| {
        let store = Store::open(dir).unwrap();
        let config = config(if second { "32" } else { "16" });
        let mut recorder = Recorder::new(store, &config, None).unwrap();
        let mut results = RunResults::new();
        for e in events(second) {
            recorder.on(&e).unwrap();
            results.apply(e);
        }
        results
    })
}

/// Two JSON values equal but for the last bits of their numbers: the store
/// orders each set's records by path, the synthetic run by index, and the
/// metrics' sums round differently in another order.
fn assert_close_json(got: &serde_json::Value, want: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-12, "{at}: {a} != {b}");
        }
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in a {
                assert_close_json(v, &b[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close_json(x, y, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

fn app_on(dir: &Path) -> App {
    let mut app = app();
    *app.runs_mut() = RunsState::new(dir.to_path_buf());
    app
}

#[test]
fn runs_are_listed_compared_exported_and_reopened() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    let [first, second] = record_two(&dir);
    let mut app = app_on(&dir);
    press(&mut app, &[ch('6')]);
    assert_eq!(app.screen(), Screen::Runs);
    let rows = &app.runs().rows;
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
    for r in rows {
        assert_eq!(r.state, "finished");
        assert_eq!(r.images, 260);
        assert_eq!(r.model, "BiT-tiny");
        assert_eq!(r.sets, ["imagenet-val", "textures", "scenes"]);
        assert_eq!(r.methods, ["msp", "odin", "energy", "gradnorm", "maxlogit"]);
    }
    // Fixed times and folder for the snapshots (the rows' own are now's).
    app.runs_mut().dir = "runs".into();
    for (r, t) in app.runs_mut().rows.iter_mut().zip(["09:15", "10:42"]) {
        r.created = format!("2026-11-30 {t}:00");
    }
    snap("runs", &mut app);

    // Two marked: the deltas of `report 1 2`, GradNorm's rows only.
    app.runs_mut().dir = dir.clone();
    press(&mut app, &[ch(' '), key(KeyCode::Down), ch(' ')]);
    let (a, b, c) = app.runs().comparison.clone().expect("a comparison");
    assert_eq!((a, b), (1, 2));
    let want = store::compare(&first.summary().unwrap(), &second.summary().unwrap());
    assert_close_json(
        &serde_json::to_value(&c).unwrap(),
        &serde_json::to_value(&want).unwrap(),
        "comparison",
    );
    let changed: Vec<&str> = c
        .deltas
        .iter()
        .filter(|d| d.diff().auroc != 0.0 || d.diff().fpr95 != 0.0)
        .map(|d| d.method.as_str())
        .collect();
    assert!(!changed.is_empty() && changed.iter().all(|m| *m == "gradnorm"));
    app.runs_mut().dir = "runs".into();
    for (r, t) in app.runs_mut().rows.iter_mut().zip(["09:15", "10:42"]) {
        r.created = format!("2026-11-30 {t}:00");
    }
    snap("runs_compare", &mut app);
    app.runs_mut().dir = dir.clone();

    // Export run 2: the report in three formats, scores.csv and the plots.
    press(&mut app, &[ch('e')]);
    let out = dir.join("export-2");
    let (said, _) = app.message().cloned().unwrap();
    assert!(said.contains(&out.display().to_string()), "{said}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let want = second.summary().unwrap().to_json();
    assert_close_json(&json["methods"], &want["methods"], "report.json");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| GradNorm"), "{md}");
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    assert!(csv.starts_with("method,set,fpr95,auroc,aupr_in,aupr_out\n"));
    let scores = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 1 + 260);
    // ... and the plots `report --plots` writes, one ROC per OOD set.
    let plots: Vec<String> = std::fs::read_dir(out.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for want in ["anatomy.png", "anatomy.svg", "hist-gradnorm.png"] {
        assert!(plots.iter().any(|p| p == want), "{want} not in {plots:?}");
    }
    assert!(plots.iter().any(|p| p.starts_with("roc-")), "{plots:?}");

    // Enter reopens run 1: the dashboard on its records, finished.
    press(&mut app, &[key(KeyCode::Up), key(KeyCode::Enter)]);
    assert_eq!(app.screen(), Screen::Dashboard);
    assert_eq!(app.status(), Status::Finished);
    app.tick();
    let reopened = app.results().summary().unwrap().to_json();
    let want = first.summary().unwrap().to_json();
    assert_close_json(&reopened["methods"], &want["methods"], "reopened");
    let mut got: Vec<_> = app.results().records.concat();
    let mut want: Vec<_> = first.records.concat();
    got.sort_by(|x, y| x.path.cmp(&y.path));
    want.sort_by(|x, y| x.path.cmp(&y.path));
    assert_eq!(got, want);
    assert!(draw(&mut app, 120, 40).contains("run 1 reopened"));
}

#[test]
fn an_empty_store_says_how_runs_get_there() {
    let tmp = tempfile::tempdir().unwrap();
    let mut app = app_on(&tmp.path().join("runs"));
    press(&mut app, &[ch('6')]);
    assert!(app.runs().rows.is_empty());
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("no runs recorded in"), "{screen}");
    // Enter, Space and e do nothing without runs.
    press(&mut app, &[key(KeyCode::Enter), ch(' '), ch('e')]);
    assert_eq!(app.screen(), Screen::Runs);
}

#[test]
fn the_store_is_read_off_the_ui_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    record_two(&dir);
    let mut app = app_on(&dir);
    app.runs_mut().threaded(Wake::none());
    press(&mut app, &[ch('6')]);
    // The key returns before the store is read: the list comes later.
    assert!(app.runs().rows.is_empty());
    assert_eq!(app.runs().pending, 1);
    assert!(draw(&mut app, 120, 40).contains("reading the run store"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while app.runs().rows.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        app.tick();
    }
    assert_eq!(app.runs().rows.len(), 2);
    assert_eq!(app.runs().pending, 0);
}

/// Issue 29 item 4: the Runs screen follows the store without a key: a run
/// recorded by another process appears at the next tick, "running" while
/// it goes and "finished" once done, and each answer asks for a frame.
#[test]
fn the_runs_screen_follows_the_store_without_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    let mut app = app_on(&dir);
    press(&mut app, &[ch('6')]);
    assert!(app.runs().rows.is_empty());
    assert!(draw(&mut app, 120, 40).contains("no runs recorded in"));
    assert!(!app.dirty());
    // Nothing changed: a tick reads nothing and draws nothing.
    app.tick();
    assert!(!app.dirty());
    // Another process records a run, half of it so far.
    let store = Store::open(&dir).unwrap();
    let mut recorder = Recorder::new(store, &config("16"), None).unwrap();
    let events = events(false);
    let half = events.len() / 2;
    for e in &events[..half] {
        recorder.on(e).unwrap();
    }
    app.tick();
    assert!(app.dirty(), "the new list must be drawn");
    let row = |app: &App| app.runs().rows.first().cloned().expect("a run listed");
    let r = row(&app);
    assert_eq!(r.state, "running");
    assert!(r.images > 0 && r.images < 260, "{}", r.images);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("running"), "{screen}");
    // It finishes: the next tick shows it finished, all its images in.
    for e in &events[half..] {
        recorder.on(e).unwrap();
    }
    drop(recorder);
    app.tick();
    assert!(app.dirty());
    let r = row(&app);
    assert_eq!((r.state.as_str(), r.images), ("finished", 260));
    assert!(draw(&mut app, 120, 40).contains("finished"));
}

/// The same on the worker thread: the screen is drawn again when the
/// worker's answer arrives, not at the next key.
#[test]
fn the_runs_screen_redraws_when_its_worker_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    record_two(&dir);
    let mut app = app_on(&dir);
    app.runs_mut().threaded(Wake::none());
    press(&mut app, &[ch('6')]);
    let wait_for = |app: &mut App, n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while app.runs().rows.len() != n && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            app.tick();
        }
        assert_eq!(app.runs().rows.len(), n);
    };
    if app.runs().rows.is_empty() {
        assert!(draw(&mut app, 120, 40).contains("reading the run store"));
        assert!(!app.dirty());
        wait_for(&mut app, 2);
        assert!(app.dirty(), "the answer must be drawn");
    }
    assert!(!draw(&mut app, 120, 40).contains("reading the run store"));
    // A third run, recorded elsewhere, comes in without a key.
    assert!(!app.dirty());
    let store = Store::open(&dir).unwrap();
    let mut recorder = Recorder::new(store, &config("8"), None).unwrap();
    for e in events(false) {
        recorder.on(&e).unwrap();
    }
    drop(recorder);
    wait_for(&mut app, 3);
    assert!(app.dirty());
    assert_eq!(app.runs().rows[2].state, "finished");
    // Two runs marked: their deltas are drawn when the worker has them.
    press(&mut app, &[ch(' '), key(KeyCode::Down), ch(' ')]);
    // (Only the key's own poll could have taken the answer already.)
    if app.runs().comparison.is_none() {
        draw(&mut app, 120, 40);
        assert!(!app.dirty());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while app.runs().comparison.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            app.tick();
        }
        assert!(app.dirty(), "the deltas must be drawn");
    }
    assert!(app.runs().comparison.is_some());
}

/// `d` on the Runs screen asks, a second `d` on the same run deletes it
/// from the store (as `runs rm`); any other key in between forgets the
/// question. A run still marked running is refused, naming the CLI.
#[test]
fn a_run_is_deleted_from_the_screen_after_a_second_d() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    record_two(&dir);
    let mut app = app_on(&dir);
    press(&mut app, &[ch('6')]);
    assert_eq!(app.runs().rows.len(), 2);
    press(&mut app, &[ch('d')]);
    let (said, _) = app.message().cloned().unwrap();
    assert!(
        said.contains("delete run 1") && said.contains("d again"),
        "{said}"
    );
    // Another key forgets the question: `d` asks again, deleting nothing.
    press(&mut app, &[key(KeyCode::Down), key(KeyCode::Up), ch('d')]);
    assert_eq!(Store::open_existing(&dir).unwrap().list().unwrap().len(), 2);
    press(&mut app, &[ch('d')]);
    let (said, _) = app.message().cloned().unwrap();
    assert_eq!(said, "deleted run 1");
    app.tick();
    let left: Vec<i64> = Store::open_existing(&dir)
        .unwrap()
        .list()
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [2]);
    assert_eq!(
        app.runs().rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        [2]
    );
    assert!(Store::open_existing(&dir).unwrap().load(1).is_err());

    // A run left "running" (its recorder never finished) is refused.
    let store = Store::open(&dir).unwrap();
    let mut recorder = Recorder::new(store, &config("8"), None).unwrap();
    let started = run_events().into_iter().next().unwrap();
    recorder.on(&started).unwrap();
    app.runs_mut().refresh();
    app.tick();
    press(&mut app, &[key(KeyCode::End), ch('d'), ch('d')]);
    let (said, _) = app.message().cloned().unwrap();
    assert!(
        said.contains("running") && said.contains("runs rm"),
        "{said}"
    );
    assert_eq!(Store::open_existing(&dir).unwrap().list().unwrap().len(), 2);
}
