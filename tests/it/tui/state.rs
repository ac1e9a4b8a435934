//! The app state as a run's batches arrive: the metrics against the
//! pair-count and scikit-learn references, the threshold, the browser's
//! filters and sorting.

use super::synthetic::SETS;
use super::*;

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
            let id: Vec<f64> = app.results().scores(0, 0);
            for m in 0..methods().len() {
                let id = app.results().scores(0, m);
                let ood = app.results().scores(d, m);
                let shown = app.analysis().measures(m, d);
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
            assert_eq!(app.analysis().counts[0], id.len());
        }
    }
    assert_eq!(seen_ood, 5 + 4);
    // The average is the mean over the OOD sets.
    for m in 0..methods().len() {
        let a = app.analysis().average[m].unwrap();
        let mean = (app.analysis().measures(m, 1).unwrap().auroc
            + app.analysis().measures(m, 2).unwrap().auroc)
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
    let cases = common::read_json(&shared.join("fixtures/metrics/cases.json"));
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
        let got = app.analysis().measures(0, 1).unwrap();
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
        app.browser_mut().misdetections = true;
        app.browser_mut().dataset = Some(1);
        app.tick();
        let want = (case["fpr95"].as_f64().unwrap() * ood.len() as f64).round() as usize;
        let n = app.browser().rows.len();
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
            let p = app.analysis().point(m, d).unwrap();
            let id = app.results().scores(0, m);
            let ood = app.results().scores(d, m);
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
            app.set_view(m, d - 1);
            app.browser_mut().misdetections = true;
            app.browser_mut().dataset = None;
            app.sync_views();
            let rows = app.browser().rows.clone();
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
    assert_eq!(app.browser().rows.len(), total);
    // Evaluation order: dataset by dataset, record by record.
    let mut sorted = app.browser().rows.clone();
    sorted.sort();
    assert_eq!(app.browser().rows, sorted);
    // d cycles: ID, textures, scenes, all.
    for (d, set) in SETS.iter().enumerate() {
        press(&mut app, &[ch('d')]);
        assert_eq!(app.browser().dataset, Some(d));
        assert_eq!(app.browser().rows.len(), set.4);
        assert!(app.browser().rows.iter().all(|r| r.0 == d));
    }
    press(&mut app, &[ch('d')]);
    assert_eq!(app.browser().dataset, None);
    // s sorts by the method in view, highest first; r reverses; m re-sorts.
    let score = |app: &App, r: (usize, usize)| app.results().records[r.0][r.1].scores[app.method()];
    press(&mut app, &[ch('s')]);
    assert_eq!(app.browser().sort, Sort::Descending);
    for w in app.browser().rows.windows(2) {
        assert!(score(&app, w[0]) >= score(&app, w[1]));
    }
    press(&mut app, &[ch('r')]);
    for w in app.browser().rows.windows(2) {
        assert!(score(&app, w[0]) <= score(&app, w[1]));
    }
    press(&mut app, &[ch('m')]);
    assert_eq!(app.method(), 1);
    for w in app.browser().rows.windows(2) {
        assert!(score(&app, w[0]) <= score(&app, w[1]));
    }
    // A new sort shows its top: the selection goes to the first row.
    press(&mut app, &[key(KeyCode::Down), key(KeyCode::Down)]);
    let picked = app.browser().current().unwrap();
    press(&mut app, &[ch('s')]);
    assert_eq!(app.browser().selected, 0);
    // Percentiles: the share of ID scores below, ties counted half.
    let (d, i) = picked;
    let v = app.results().records[d][i].scores[1] as f64;
    let id = app.results().scores(0, 1);
    let below = id.iter().filter(|&&s| s < v).count() as f64;
    let ties = id.iter().filter(|&&s| s == v).count() as f64;
    let want = (below + ties / 2.0) / id.len() as f64;
    assert_eq!(app.analysis().id_percentile(1, v), Some(want));
}
