//! The logistic regression against scikit-learn: cross-validated, on
//! Mahalanobis-scaled features; and the tuning's choice by validation FPR.

use super::*;

// scikit-learn 1.9.1 reference, made with:
//   import numpy as np
//   from sklearn.linear_model import LogisticRegressionCV, LogisticRegression
//   i = np.arange(40, dtype=np.float64)
//   X = np.stack([2*np.sin(0.37*i), 5*np.cos(1.3*i+0.5)+0.1*i, (i*7 % 11)-5], 1)
//   y = (0.8*X[:,0] - 0.3*X[:,1] + 0.4*X[:,2] + 1.5*np.sin(2.9*i) > 0.2).astype(int)
//   r = LogisticRegressionCV().fit(X, y)        # r.scores_[1], r.C_, r.coef_, r.intercept_
//   t = LogisticRegression(C=r.C_[0], tol=1e-12, max_iter=100000).fit(X, y)
//   Q = [[0.5,-1.0,2.0],[-1.5,3.0,-4.0],[0.0,0.0,0.0]]; r.predict_proba(Q)[:,1], t.predict_proba(Q)[:,1]
//   for C in [1e-4, 1.0, 1e4]: LogisticRegression(C=C, tol=1e-12, max_iter=100000).fit(X, y)
//   StratifiedKFold(5).split(X, y)              # test folds
fn sklearn_problem() -> (Vec<Vec<f64>>, Vec<bool>) {
    let rows: Vec<Vec<f64>> = (0..40)
        .map(|i| {
            let f = i as f64;
            vec![
                2.0 * (0.37 * f).sin(),
                5.0 * (1.3 * f + 0.5).cos() + 0.1 * f,
                ((i * 7) % 11) as f64 - 5.0,
            ]
        })
        .collect();
    let y = rows
        .iter()
        .enumerate()
        .map(|(i, x)| 0.8 * x[0] - 0.3 * x[1] + 0.4 * x[2] + 1.5 * (2.9 * i as f64).sin() > 0.2)
        .collect();
    (rows, y)
}

#[test]
fn logistic_regression_cv_matches_scikit_learn() {
    let (rows, y) = sklearn_problem();
    let folds = logistic::stratified_folds(&y, 5);
    let sk_folds: [&[usize]; 5] = [
        &[0, 1, 2, 3, 4, 8, 10, 11],
        &[5, 6, 7, 9, 12, 13, 14, 15],
        &[16, 17, 18, 19, 20, 21, 23, 24],
        &[22, 25, 26, 27, 28, 29, 30, 31],
        &[32, 33, 34, 35, 36, 37, 38, 39],
    ];
    for (f, members) in sk_folds.iter().enumerate() {
        let ours: Vec<usize> = (0..40).filter(|&i| folds[i] == f).collect();
        assert_eq!(&ours, members, "fold {f}");
    }

    let cv = logistic::fit_cv(&rows, &y).unwrap();
    let sk_scores = [
        [
            0.875, 0.875, 1.0, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875,
        ],
        [
            0.5, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625,
        ],
        [
            0.5, 0.625, 0.875, 0.75, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875,
        ],
        [
            0.5, 0.5, 0.875, 0.875, 1.0, 0.875, 0.875, 0.875, 0.875, 0.875,
        ],
        [
            0.5, 0.625, 0.625, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875, 0.875,
        ],
    ];
    for (f, row) in sk_scores.iter().enumerate() {
        assert_eq!(cv.scores[f], row.to_vec(), "fold {f} accuracies");
    }
    assert!((cv.c - 0.3593813663804626).abs() < 1e-15);
    // scikit-learn's L-BFGS stops at gradient 1e-4; its tight solution is the
    // optimum we solve for.
    let near = |what: &str, got: &[f64], want: &[f64], tol: f64| {
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= tol * w.abs().max(1e-3),
                "{what}: {got:?} vs {want:?}"
            );
        }
    };
    let mut ours = cv.model.weights.clone();
    ours.push(cv.model.bias);
    near(
        "CV refit vs sklearn tight",
        &ours,
        &[
            0.9699555997233309,
            -0.38017511254511294,
            0.3849083435097188,
            0.44978007632993333,
        ],
        1e-5,
    );
    near(
        "CV refit vs sklearn default",
        &ours,
        &[
            0.9699635199418054,
            -0.3801707258111035,
            0.3849112850341128,
            0.4497705346382143,
        ],
        1e-4,
    );
    let q = [[0.5, -1.0, 2.0], [-1.5, 3.0, -4.0], [0.0, 0.0, 0.0]];
    let proba: Vec<f64> = q.iter().map(|x| cv.model.probability(x)).collect();
    near(
        "probabilities vs sklearn tight",
        &proba,
        &[0.88941206783126, 0.0244752761097818, 0.6105869438540455],
        1e-6,
    );
    near(
        "probabilities vs sklearn default",
        &proba,
        &[0.8894116660108738, 0.02447479792309193, 0.610584675118575],
        1e-4,
    );
    for (c, want) in [
        (
            1e-4,
            [
                0.001476454378875631,
                -0.0032892405499526938,
                0.00257646309083055,
                -0.09370325623024324,
            ],
        ),
        (
            1.0,
            [
                1.2333444223207448,
                -0.43997373958657143,
                0.4447629662271386,
                0.5080660838747514,
            ],
        ),
        (
            1e4,
            [
                1.5567627879103247,
                -0.5178575894133657,
                0.5205331621507004,
                0.586543954210355,
            ],
        ),
    ] {
        let m = logistic::fit(&rows, &y, c).unwrap();
        let mut got = m.weights.clone();
        got.push(m.bias);
        near(&format!("C = {c}"), &got, &want, 1e-5);
    }
}

#[test]
fn the_lowest_validation_fpr_wins_and_ties_go_first() {
    // Two magnitudes whose layer scores are identical up to a shift, so the
    // regressions rank alike and the FPR95 ties: the first must win.
    let table = |shift: f64, ood: bool| -> Vec<Vec<f64>> {
        (0..40)
            .map(|i| {
                let t = i as f64;
                let base = if ood { -30.0 } else { -10.0 };
                vec![
                    base + (t * 0.7).sin() * 8.0 + shift,
                    base * 2.0 + (t * 1.3).cos() * 9.0,
                ]
            })
            .collect()
    };
    let mags = [0.0, 0.01];
    let tr_id = vec![table(0.0, false), table(0.0, false)];
    let tr_ood = vec![table(0.0, true), table(0.0, true)];
    let tuned = mahalanobis::choose_magnitude(&mags, &tr_id, &tr_ood, &tr_id, &tr_ood).unwrap();
    assert_eq!(tuned.trials.len(), 2);
    assert_eq!(tuned.trials[0].val_fpr95, tuned.trials[1].val_fpr95);
    assert_eq!(tuned.magnitude, 0.0);
    // A magnitude that separates perfectly beats one that does not.
    let mixed = vec![table(0.0, false), table(0.0, false)];
    let ood = vec![table(0.0, false), table(0.0, true)];
    let tuned = mahalanobis::choose_magnitude(&mags, &mixed, &ood, &mixed, &ood).unwrap();
    assert_eq!(tuned.magnitude, 0.01);
    assert_eq!(tuned.trials[1].val_fpr95, 0.0);
}

// Raw Mahalanobis layer scores span -10 to -2000 and the regression's
// weights come out near 1e-2..1e-5: the scale where first-order solvers
// crawl. The reference is scikit-learn 1.9.1's exact Newton solver:
//   i = np.arange(60.); ood = i % 3 == 0
//   X = np.stack([-12-40*abs(sin(.7i))-30*ood, -15-15*abs(cos(1.1i))-10*ood,
//                 -30-25*abs(sin(.3i+1))-20*ood, -130-90*abs(cos(.5i))-60*ood,
//                 -800-1000*abs(sin(.13i+.4))-700*ood], 1)
//   LogisticRegression(C=C, solver='newton-cholesky', tol=1e-14).fit(X, ood)
#[test]
fn logistic_regression_solves_mahalanobis_scaled_features() {
    let rows: Vec<Vec<f64>> = (0..60)
        .map(|i| {
            let f = i as f64;
            let o = if i % 3 == 0 { 1.0 } else { 0.0 };
            vec![
                -12.0 - 40.0 * (0.7 * f).sin().abs() - 30.0 * o,
                -15.0 - 15.0 * (1.1 * f).cos().abs() - 10.0 * o,
                -30.0 - 25.0 * (0.3 * f + 1.0).sin().abs() - 20.0 * o,
                -130.0 - 90.0 * (0.5 * f).cos().abs() - 60.0 * o,
                -800.0 - 1000.0 * (0.13 * f + 0.4).sin().abs() - 700.0 * o,
            ]
        })
        .collect();
    let y: Vec<bool> = (0..60).map(|i| i % 3 == 0).collect();
    for (c, want) in [
        (
            1e-4,
            [
                -0.008664596421960408,
                -0.0035009201142178867,
                -0.007566403339018599,
                -0.018012876883657825,
                -0.006933059724943804,
                -17.904745169385624,
            ],
        ),
        (
            0.046415888336127774,
            [
                -0.1114230411695602,
                -0.07037754308126973,
                -0.10512624188169956,
                -0.120945377908814,
                -0.008803147661215318,
                -56.95555313956032,
            ],
        ),
        (
            1e4,
            [
                -0.4659371501482114,
                -0.4164168087617854,
                -0.5244802065235651,
                -0.4615570109014246,
                -0.029603163849603847,
                -225.0476991544262,
            ],
        ),
    ] {
        let m = logistic::fit(&rows, &y, c).unwrap();
        let mut got = m.weights.clone();
        got.push(m.bias);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs(),
                "C = {c}: {got:?} vs {want:?}"
            );
        }
    }
}
