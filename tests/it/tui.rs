//! The TUI without a terminal: snapshots of every screen at two sizes
//! (ratatui's TestBackend + insta), fed by a deterministic synthetic run,
//! and tests of the app state (filters, sorting, thresholds, metric
//! updates as batches arrive, keys, the config file).

use crate::common;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use gradnorm_tui::model::{Family, InputSpec, ModelInfo};
use gradnorm_tui::run::{
    DatasetInfo, Event, ImageRecord, Progress, Role, RunConfig, RunInfo, Setup,
};
use gradnorm_tui::score::Method;
use gradnorm_tui::tui::browser::Sort;
use gradnorm_tui::tui::discover::{self, Candidate, Count};
use gradnorm_tui::tui::preview::Previews;
use gradnorm_tui::tui::session::{self, RunSession};
use gradnorm_tui::tui::setup::Row;
use gradnorm_tui::tui::{App, Overlay, Screen, SetupState, Status};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

// ---------------------------------------------------------------- data

/// splitmix64: the same numbers on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-12);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

const CLASSES: [&str; 10] = [
    "tench, Tinca tinca",
    "goldfish, Carassius auratus",
    "great white shark",
    "tiger shark, Galeocerdo cuvieri",
    "hammerhead",
    "electric ray",
    "stingray",
    "cock",
    "hen",
    "ostrich, Struthio camelus",
];

/// (name, role, folder or list file, image folder, count)
const SETS: [(&str, Role, &str, &str, usize); 3] = [
    (
        "imagenet-val",
        Role::Id,
        "tui-data/imagenet-val/val_list.txt",
        "tui-data/imagenet-val/images",
        120,
    ),
    (
        "textures",
        Role::Ood,
        "tui-data/textures",
        "tui-data/textures/banded",
        80,
    ),
    (
        "scenes",
        Role::Ood,
        "tui-data/scenes",
        "tui-data/scenes/indoor",
        60,
    ),
];
const BATCH: usize = 16;

pub(crate) fn methods() -> Vec<Method> {
    vec![
        Method::from_key("msp").unwrap(),
        Method::with_params("odin", &[("temperature", 1000.0), ("epsilon", 0.0)]).unwrap(),
        Method::with_params("energy", &[("temperature", 1.0)]).unwrap(),
        Method::with_params("gradnorm", &[("temperature", 1.0)]).unwrap(),
        Method::from_key("maxlogit").unwrap(),
    ]
}

pub(crate) fn info() -> Arc<RunInfo> {
    Arc::new(RunInfo {
        model: ModelInfo {
            name: "BiT-tiny".into(),
            family: Family::Bit,
            num_classes: 10,
            feature_dim: 64,
            tap_dims: vec![8, 16, 32, 64, 64],
            num_params: 12345,
            input: InputSpec::half(64),
        },
        setup: Setup {
            checkpoint: Some(PathBuf::from("checkpoints/tiny.pth.tar")),
            device: "cpu".into(),
            dtype: "f32".into(),
            image_size: 64,
        },
        input: InputSpec::half(64),
        batch: BATCH,
        datasets: SETS
            .iter()
            .map(|&(name, role, path, _, count)| DatasetInfo {
                name: name.into(),
                role,
                path: path.into(),
                count,
            })
            .collect(),
        methods: methods(),
        class_names: Arc::new(CLASSES.iter().map(|s| s.to_string()).collect()),
    })
}

/// One image: ID images are more confident and have larger features, as a
/// real classifier's tend to; GradNorm is exactly the product of its factors.
fn record(rng: &mut Rng, dataset: usize, i: usize) -> ImageRecord {
    let id = dataset == 0;
    let conf = 1.0 / (1.0 + (-(if id { 1.2 } else { 0.1 } + rng.normal())).exp());
    let feature_l1 = (if id { 400f64 } else { 340f64 }).ln() + 0.15 * rng.normal();
    let feature_l1 = feature_l1.exp();
    let c = CLASSES.len() as f64;
    // sum_k |C p_k - 1| with the top class at `conf`, the rest uniform.
    let rest = (1.0 - conf) / (c - 1.0);
    let softmax_term = (c * conf - 1.0).abs() + (c - 1.0) * (c * rest - 1.0).abs();
    let first = (rng.next() % 10) as usize;
    let mut top = vec![(first, conf as f32)];
    for k in 1..5 {
        top.push(((first + k) % 10, (rest * (1.0 - 0.1 * k as f64)) as f32));
    }
    let label = id.then(|| {
        if rng.uniform() < 0.6 {
            first
        } else {
            (rng.next() % 10) as usize
        }
    });
    let energy = 2.0 + 3.0 * conf + 0.5 * rng.normal();
    let (_, _, _, folder, _) = SETS[dataset];
    let file = match dataset {
        0 => format!("ILSVRC2012_val_{:08}.png", i + 1),
        1 => format!("banded_{:04}.png", i + 1),
        _ => format!("sun_{:04}.png", i + 1),
    };
    ImageRecord {
        dataset,
        path: Path::new(folder).join(file),
        label,
        top,
        scores: vec![
            conf as f32,
            (0.1 + 1e-4 * conf + 2e-5 * rng.normal()) as f32,
            energy as f32,
            (softmax_term * feature_l1) as f32,
            (energy + 1.0 + 0.3 * rng.normal()) as f32,
        ],
        softmax_term: softmax_term as f32,
        feature_l1: feature_l1 as f32,
    }
}

/// The whole synthetic run as the engine would send it: Started, batches
/// of records each followed by a Progress, Finished.
pub(crate) fn run_events() -> Vec<Event> {
    let mut rng = Rng(2021);
    let total: usize = SETS.iter().map(|s| s.4).sum();
    let mut events = vec![Event::Started(info())];
    let mut run_done = 0;
    for (d, set) in SETS.iter().enumerate() {
        let n = set.4;
        let mut done = 0;
        while done < n {
            let k = BATCH.min(n - done);
            let records = (done..done + k).map(|i| record(&mut rng, d, i)).collect();
            events.push(Event::Records {
                dataset: d,
                records,
            });
            done += k;
            run_done += k;
            events.push(Event::Progress(Progress {
                dataset: d,
                done,
                total: n,
                run_done,
                run_total: total,
                images_per_sec: 40.0,
                elapsed_secs: run_done as f64 / 40.0,
            }));
        }
    }
    events.push(Event::Finished {
        cancelled: false,
        elapsed_secs: total as f64 / 40.0,
    });
    events
}

/// Small PNGs behind the synthetic paths, for the preview. Paths are
/// relative to the test's scratch folder so snapshots do not hold
/// machine-specific paths.
pub(crate) fn enter_scratch() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::env::set_current_dir(dir).unwrap();
    for e in run_events() {
        if let Event::Records { records, .. } = e {
            for r in records {
                if r.path.exists() {
                    continue;
                }
                std::fs::create_dir_all(r.path.parent().unwrap()).unwrap();
                let seed = r.scores[0];
                let img = image::RgbImage::from_fn(48, 36, |x, y| {
                    image::Rgb([(x * 5) as u8, (y * 7) as u8, (seed * 255.0) as u8])
                });
                img.save(&r.path).unwrap();
            }
        }
    }
}

// ---------------------------------------------------------------- helpers

pub(crate) fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

pub(crate) fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

pub(crate) fn press(app: &mut App, keys: &[KeyEvent]) {
    for k in keys {
        app.handle_key(*k);
    }
}

pub(crate) fn no_launch() -> Box<dyn gradnorm_tui::tui::Launcher> {
    Box::new(|_cfg: RunConfig| -> RunSession { panic!("no run expected") })
}

pub(crate) fn candidates() -> Vec<Candidate> {
    vec![
        Candidate {
            name: "imagenet-val".into(),
            path: "dataset/imagenet-val/val_list.txt".into(),
            root: None,
        },
        Candidate {
            name: "textures".into(),
            path: "dataset/textures".into(),
            root: None,
        },
        Candidate {
            name: "scenes".into(),
            path: "dataset/scenes".into(),
            root: None,
        },
        Candidate {
            name: "cifar10".into(),
            path: "dataset/cifar10".into(),
            root: None,
        },
    ]
}

pub(crate) fn setup() -> SetupState {
    let mut s = SetupState::new(
        vec![
            "checkpoints/BiT-S-R101x1-flat-finetune.pth.tar".into(),
            "checkpoints/tiny.pth.tar".into(),
        ],
        candidates(),
    );
    for (p, n) in [
        ("dataset/imagenet-val/val_list.txt", 1300),
        ("dataset/textures", 1200),
        ("dataset/scenes", 1100),
    ] {
        s.set_count(Path::new(p), Count::Images(n));
    }
    s.set_count(
        Path::new("dataset/cifar10"),
        Count::Error("dataset/cifar10: permission denied".into()),
    );
    s
}

pub(crate) fn picker() -> ratatui_image::picker::Picker {
    // Fixed protocol and font size: frames are the same on every terminal.
    let mut p = ratatui_image::picker::Picker::halfblocks();
    p.set_protocol_type(ratatui_image::picker::ProtocolType::Halfblocks);
    p
}

pub(crate) fn app() -> App {
    App::new(
        setup(),
        "gradnorm-tui.toml".into(),
        no_launch(),
        Previews::inline(picker()),
    )
}

/// An app whose first launch starts `session`.
fn app_launching(session: RunSession) -> App {
    let mut pending = Some(session);
    App::new(
        setup(),
        "gradnorm-tui.toml".into(),
        Box::new(move |_cfg: RunConfig| pending.take().unwrap()),
        Previews::inline(picker()),
    )
}

/// An app that has folded the first `n` events of the synthetic run.
pub(crate) fn app_after(n: usize) -> App {
    let mut app = app();
    for e in run_events().into_iter().take(n) {
        app.apply(e);
    }
    app.tick();
    app
}

pub(crate) fn finished_app() -> App {
    app_after(usize::MAX)
}

pub(crate) fn draw(app: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| f.render_widget(&*app, f.area())).unwrap();
    // The first frame places the preview; the second shows it.
    app.after_draw();
    t.draw(|f| f.render_widget(&*app, f.area())).unwrap();
    t.backend().to_string()
}

const SIZES: [(u16, u16); 2] = [(120, 40), (80, 24)];

pub(crate) fn snap(name: &str, app: &mut App) {
    for (w, h) in SIZES {
        let text = draw(app, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text);
    }
}

// ---------------------------------------------------------------- snapshots

#[test]
fn snapshot_setup() {
    let mut app = app();
    snap("setup", &mut app);
    // Editing a value shows the text being typed.
    app.setup.select(Row::Limit);
    press(&mut app, &[key(KeyCode::Enter), ch('2'), ch('0')]);
    let text = draw(&mut app, 120, 40);
    insta::assert_snapshot!("setup_editing_120x40", text);
    // A short terminal scrolls the form to keep the cursor in view.
    press(&mut app, &[key(KeyCode::Esc), ch('G')]);
    let text = draw(&mut app, 80, 24);
    assert!(text.contains("[ Write config file ]"), "{text}");
    insta::assert_snapshot!("setup_scrolled_80x24", text);
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
    assert_eq!(app.screen, Screen::Dashboard);
    for e in events.drain(..mid) {
        tx.send(e).unwrap();
    }
    app.tick();
    app.message = None;
    snap("dashboard_running", &mut app);
    for e in events {
        tx.send(e).unwrap();
    }
    app.tick();
    app.message = None;
    assert_eq!(app.status(), Status::Finished);
    // GradNorm against scenes: the view re-plots at once.
    press(&mut app, &[ch('m'), ch('m'), ch('m'), key(KeyCode::Right)]);
    snap("dashboard_finished", &mut app);
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
}

#[test]
fn snapshot_help_and_too_small() {
    let mut app = finished_app();
    press(&mut app, &[ch('2'), ch('?')]);
    assert_eq!(app.overlay, Some(Overlay::Help));
    snap("help", &mut app);
    press(&mut app, &[key(KeyCode::Esc)]);
    assert_eq!(app.overlay, None);
    let text = draw(&mut app, 50, 12);
    insta::assert_snapshot!("too_small_50x12", text);
}

// ---------------------------------------------------------------- state

#[test]
fn metrics_follow_the_batches() {
    let events = run_events();
    let mut app = app();
    let mut seen_ood = 0;
    for e in events {
        let is_ood_batch = matches!(&e, Event::Records { dataset, .. } if *dataset > 0);
        app.apply(e);
        if !is_ood_batch {
            continue;
        }
        app.tick();
        seen_ood += 1;
        // Every method against every OOD set that has images: the AUROC
        // shown equals the pair count over the images so far.
        for d in 1..3 {
            let id: Vec<f64> = app.results.scores(0, 0);
            for m in 0..methods().len() {
                let id = app.results.scores(0, m);
                let ood = app.results.scores(d, m);
                let shown = app.analysis.measures(m, d);
                if ood.is_empty() {
                    assert!(shown.is_none());
                    continue;
                }
                let want = common::auroc_pairs(&id, &ood);
                let got = shown.unwrap().auroc;
                assert!(
                    (got - want).abs() < 1e-12,
                    "batch {seen_ood} method {m} set {d}: {got} vs {want}"
                );
            }
            assert_eq!(app.analysis.counts[0], id.len());
        }
    }
    assert_eq!(seen_ood, 5 + 4);
    // The average is the mean over the OOD sets.
    for m in 0..methods().len() {
        let a = app.analysis.average[m].unwrap();
        let mean = (app.analysis.measures(m, 1).unwrap().auroc
            + app.analysis.measures(m, 2).unwrap().auroc)
            / 2.0;
        assert!((a.auroc - mean).abs() < 1e-12);
    }
}

#[test]
fn table_matches_the_seeds_measures() {
    // The scikit-learn / seed values of ../shared/fixtures/metrics, streamed
    // through the app in three batches per set.
    let Some(shared) = common::shared() else {
        return;
    };
    let text = std::fs::read_to_string(shared.join("fixtures/metrics/cases.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let nums = |k: &str| -> Vec<f64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let (id, ood) = (nums("id"), nums("ood"));
        let mut info = (*info()).clone();
        info.datasets.truncate(2);
        info.datasets[0].count = id.len();
        info.datasets[1].count = ood.len();
        info.methods = vec![Method::from_key("msp").unwrap()];
        let mut app = app();
        app.apply(Event::Started(Arc::new(info)));
        for (d, scores) in [(0usize, &id), (1, &ood)] {
            let chunk = scores.len().div_ceil(3);
            for (k, part) in scores.chunks(chunk).enumerate() {
                let records = part
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| ImageRecord {
                        dataset: d,
                        path: format!("{d}/{k}/{i}.png").into(),
                        label: None,
                        top: vec![(0, 1.0)],
                        // The fixture's scores are f64; f32 keeps these exactly
                        // for the tie cases, and the others to 1e-7.
                        scores: vec![s as f32],
                        softmax_term: 1.0,
                        feature_l1: 1.0,
                    })
                    .collect();
                app.apply(Event::Records {
                    dataset: d,
                    records,
                });
                app.tick();
            }
        }
        let got = app.analysis.measures(0, 1).unwrap();
        let tol = 2e-3;
        for (what, g, w) in [
            ("auroc", got.auroc, case["auroc"].as_f64().unwrap()),
            ("aupr_in", got.aupr_in, case["aupr_in"].as_f64().unwrap()),
            ("aupr_out", got.aupr_out, case["aupr_out"].as_f64().unwrap()),
            ("fpr95", got.fpr95, case["fpr95"].as_f64().unwrap()),
        ] {
            assert!((g - w).abs() <= tol, "{name} {what}: {g} vs {w}");
        }
        // The misdetection filter shows exactly the OOD images at or above
        // the threshold: FPR95 of them.
        app.browser.misdetections = true;
        app.browser.dataset = Some(1);
        app.tick();
        let want = (case["fpr95"].as_f64().unwrap() * ood.len() as f64).round() as usize;
        let n = app.browser.rows.len();
        assert!(
            n.abs_diff(want) <= 1,
            "{name}: {n} misdetected OOD images, seed's FPR95 gives {want}"
        );
    }
}

#[test]
fn threshold_keeps_95_percent_and_misdetections_are_exact() {
    let mut app = finished_app();
    let n_methods = methods().len();
    for m in 0..n_methods {
        for d in [1usize, 2] {
            let p = app.analysis.point(m, d).unwrap();
            let id = app.results.scores(0, m);
            let ood = app.results.scores(d, m);
            let kept = id.iter().filter(|&&s| s >= p.threshold).count();
            let accepted = ood.iter().filter(|&&s| s >= p.threshold).count();
            // The operating point sits at 95% TPR, to one image.
            let tpr = kept as f64 / id.len() as f64;
            assert!(
                (tpr - 0.95).abs() <= 1.0 / id.len() as f64 + 1e-12,
                "tpr {tpr}"
            );
            assert_eq!(p.fpr, accepted as f64 / ood.len() as f64);

            // Browser: misdetections of method m with OOD set d in view.
            app.method = m;
            app.ood = d - 1;
            app.browser.misdetections = true;
            app.browser.dataset = None;
            app.sync_views();
            let rows = app.browser.rows.clone();
            let want_id: Vec<usize> = (0..id.len()).filter(|&i| id[i] < p.threshold).collect();
            let got_id: Vec<usize> = rows.iter().filter(|r| r.0 == 0).map(|r| r.1).collect();
            assert_eq!(got_id, want_id, "ID rejected, method {m}");
            let got_ood: Vec<usize> = rows.iter().filter(|r| r.0 == d).map(|r| r.1).collect();
            let want_ood: Vec<usize> = (0..ood.len()).filter(|&i| ood[i] >= p.threshold).collect();
            assert_eq!(got_ood, want_ood, "OOD accepted, method {m}");
            assert_eq!(got_ood.len(), accepted);
        }
    }
}

#[test]
fn filters_and_sorting() {
    let mut app = finished_app();
    press(&mut app, &[ch('4')]);
    let total: usize = SETS.iter().map(|s| s.4).sum();
    assert_eq!(app.browser.rows.len(), total);
    // Evaluation order: dataset by dataset, record by record.
    let mut sorted = app.browser.rows.clone();
    sorted.sort();
    assert_eq!(app.browser.rows, sorted);
    // d cycles: ID, textures, scenes, all.
    for (d, set) in SETS.iter().enumerate() {
        press(&mut app, &[ch('d')]);
        assert_eq!(app.browser.dataset, Some(d));
        assert_eq!(app.browser.rows.len(), set.4);
        assert!(app.browser.rows.iter().all(|r| r.0 == d));
    }
    press(&mut app, &[ch('d')]);
    assert_eq!(app.browser.dataset, None);
    // s sorts by the method in view, highest first; r reverses; m re-sorts.
    let score = |app: &App, r: (usize, usize)| app.results.records[r.0][r.1].scores[app.method];
    press(&mut app, &[ch('s')]);
    assert_eq!(app.browser.sort, Sort::Descending);
    for w in app.browser.rows.windows(2) {
        assert!(score(&app, w[0]) >= score(&app, w[1]));
    }
    press(&mut app, &[ch('r')]);
    for w in app.browser.rows.windows(2) {
        assert!(score(&app, w[0]) <= score(&app, w[1]));
    }
    press(&mut app, &[ch('m')]);
    assert_eq!(app.method, 1);
    for w in app.browser.rows.windows(2) {
        assert!(score(&app, w[0]) <= score(&app, w[1]));
    }
    // A new sort shows its top: the selection goes to the first row.
    press(&mut app, &[key(KeyCode::Down), key(KeyCode::Down)]);
    let picked = app.browser.current().unwrap();
    press(&mut app, &[ch('s')]);
    assert_eq!(app.browser.selected, 0);
    // Percentiles: the share of ID scores below, ties counted half.
    let (d, i) = picked;
    let v = app.results.records[d][i].scores[1] as f64;
    let id = app.results.scores(0, 1);
    let below = id.iter().filter(|&&s| s < v).count() as f64;
    let ties = id.iter().filter(|&&s| s == v).count() as f64;
    let want = (below + ties / 2.0) / id.len() as f64;
    assert_eq!(app.analysis.id_percentile(1, v), Some(want));
}

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
    assert_eq!(app.overlay, Some(Overlay::ConfirmQuit));
    press(&mut app, &[ch('n')]);
    assert!(!app.should_quit && app.overlay.is_none());
    // c asks, y cancels: the engine sees the flag, finishes, results stay.
    press(&mut app, &[ch('c')]);
    assert_eq!(app.overlay, Some(Overlay::ConfirmCancel));
    press(&mut app, &[ch('y')]);
    assert!(cancel.load(Ordering::Relaxed));
    tx.send(Event::Finished {
        cancelled: true,
        elapsed_secs: 1.0,
    })
    .unwrap();
    app.tick();
    assert_eq!(app.status(), Status::Cancelled);
    let kept: usize = app.results.records.iter().map(Vec::len).sum();
    assert_eq!(kept, 5 * BATCH + (120 - 5 * BATCH).min(BATCH));
    press(&mut app, &[ch('4')]);
    assert_eq!(app.browser.rows.len(), kept);
    // Without a run q quits at once.
    press(&mut app, &[ch('q')]);
    assert!(app.should_quit);
    // Ctrl-C always quits.
    let mut app = finished_app();
    press(&mut app, &[ch('?')]);
    app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.should_quit);
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
    assert!(app.setup.select(Row::Ood(3)));
    press(&mut app, &[ch(' '), ch('s')]);
    assert_eq!(app.screen, Screen::Dashboard);
    let start = std::time::Instant::now();
    while app.status() == Status::Running {
        app.tick();
        std::thread::yield_now();
        assert!(start.elapsed().as_secs() < 60, "the run never finished");
    }
    assert_eq!(app.status(), Status::Finished);
    app.tick();
    let total: usize = SETS.iter().map(|s| s.4).sum();
    assert_eq!(app.analysis.total(), total);
}

#[test]
fn setup_builds_the_config_and_writes_it_back() {
    let mut s = setup();
    let cfg = s.to_config().unwrap();
    assert_eq!(
        cfg.model.checkpoint.as_deref(),
        Some(Path::new("checkpoints/BiT-S-R101x1-flat-finetune.pth.tar"))
    );
    assert_eq!(cfg.id.name, "imagenet-val");
    let names: Vec<&str> = cfg.ood.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["textures", "scenes", "cifar10"]);
    assert_eq!(
        cfg.methods.iter().map(|m| m.key()).collect::<Vec<_>>(),
        ["msp", "odin", "energy", "gradnorm"]
    );

    // Menus: next checkpoint, MaxLogit on, GradNorm at T = 2, batch halved,
    // limit 25, image size 64, scenes off.
    let edit = |s: &mut SetupState, row: Row, text: &str| {
        assert!(s.select(row), "{row:?}");
        s.on_key(key(KeyCode::Enter));
        s.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        for c in text.chars() {
            s.on_key(ch(c));
        }
        s.on_key(key(KeyCode::Enter));
    };
    s.select(Row::Checkpoint);
    s.on_key(key(KeyCode::Right));
    s.select(Row::Method(5));
    s.on_key(ch(' '));
    edit(
        &mut s,
        // GradNorm's first (only) parameter, its temperature.
        Row::Param(4, 0),
        "2",
    );
    s.select(Row::Batch);
    s.on_key(key(KeyCode::Left));
    edit(&mut s, Row::Limit, "25");
    edit(&mut s, Row::ImageSize, "64");
    s.select(Row::Ood(2));
    s.on_key(ch(' '));
    // A bad value is refused with a message and changes nothing.
    assert!(s.select(Row::Batch));
    s.on_key(key(KeyCode::Enter));
    s.on_key(ch('x'));
    assert!(matches!(
        s.on_key(key(KeyCode::Enter)),
        gradnorm_tui::tui::setup::SetupAction::Message(_)
    ));

    let cfg = s.to_config().unwrap();
    assert_eq!(
        cfg.model.checkpoint.as_deref(),
        Some(Path::new("checkpoints/tiny.pth.tar"))
    );
    assert!(cfg
        .methods
        .contains(&Method::with_params("gradnorm", &[("temperature", 2.0)]).unwrap()));
    assert!(cfg.methods.contains(&Method::from_key("maxlogit").unwrap()));
    assert_eq!(
        (
            cfg.batch.get(),
            cfg.limit.map(|l| l.get()),
            cfg.image_size.map(|s| s.get())
        ),
        (32, Some(25), Some(64))
    );
    assert_eq!(
        cfg.ood.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["textures", "cifar10"]
    );

    // w writes it; the file reads back to the same config, and a form built
    // from it gives it again.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gradnorm-tui.toml");
    let mut app = App::new(s, path.clone(), no_launch(), Previews::off());
    press(&mut app, &[ch('w')]);
    let back = gradnorm_tui::tui::config::load(&path).unwrap();
    assert_eq!(back, cfg);
    let again = SetupState::from_config(&back, vec![], candidates());
    assert_eq!(again.to_config().unwrap(), cfg);
    // A config naming paths not on disk adds them to the menus.
    let again = SetupState::from_config(&back, vec![], vec![]);
    assert_eq!(again.to_config().unwrap(), cfg);
    // The config's order of OOD sets is kept, whatever the disk's order.
    let mut swapped = cfg.clone();
    swapped.ood.reverse();
    let again = SetupState::from_config(&swapped, vec![], candidates());
    assert_eq!(again.to_config().unwrap(), swapped);
}

#[test]
fn discovery_finds_checkpoints_and_datasets_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let touch = |p: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    };
    touch("checkpoints/a.pth.tar");
    touch("checkpoints/sub/b.safetensors");
    touch("checkpoints/notes.md");
    for i in 0..3 {
        touch(&format!("dataset/textures/banded/{i}.jpg"));
        touch(&format!("dataset/textures/dotted/{i}.JPEG"));
    }
    touch("dataset/textures/readme.md");
    std::fs::create_dir_all(root.join("dataset/val")).unwrap();
    std::fs::write(
        root.join("dataset/val/list.txt"),
        "a.jpg 0\nb.jpg 1\n\nc.jpg 2\n",
    )
    .unwrap();

    let ck = discover::checkpoints(&root.join("checkpoints"));
    assert_eq!(
        ck,
        [
            root.join("checkpoints/a.pth.tar"),
            root.join("checkpoints/sub/b.safetensors")
        ]
    );
    let ds = discover::datasets(&root.join("dataset"));
    let names: Vec<&str> = ds.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["textures", "val"]);
    assert_eq!(ds[1].path, root.join("dataset/val/list.txt"));
    assert_eq!(discover::count(&ds[0].path, None).unwrap(), 6);
    assert_eq!(discover::count(&ds[1].path, None).unwrap(), 3);
    let e = discover::count(&root.join("absent"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent"), "{e}");
}
