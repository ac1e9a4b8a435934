//! Binary L2-regularized logistic regression and scikit-learn's
//! `LogisticRegressionCV` defaults around it, as the seed's Mahalanobis
//! tuning uses them: Cs = 10 values logspace(-4, 4), 5-fold stratified
//! cross-validation without shuffling, accuracy scoring, refit on all data
//! with the best C.
//!
//! The objective is scikit-learn's: C * sum_i log(1 + exp(-s_i (w.x_i + b)))
//! + ||w||^2 / 2 with s_i = +-1 and the intercept b unpenalized, solved by
//! linfa-logistic's L-BFGS. The cross-validation around it is scikit-learn's,
//! fold for fold.

use crate::error::{Error, Result};

/// A fitted binary model: P(y = 1 | x) = sigmoid(w.x + b).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Logistic {
    pub weights: Vec<f64>,
    pub bias: f64,
}

impl Logistic {
    pub fn decision(&self, x: &[f64]) -> f64 {
        dot(&self.weights, x) + self.bias
    }

    /// P(y = 1 | x).
    pub fn probability(&self, x: &[f64]) -> f64 {
        sigmoid(self.decision(x))
    }

    /// scikit-learn's `predict`: class 1 where the decision is > 0.
    pub fn predict(&self, x: &[f64]) -> bool {
        self.decision(x) > 0.0
    }
}

pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The C grid scikit-learn builds from `Cs=10`: numpy's logspace(-4, 4, 10)
/// (exponents k * step + start, the last one exactly the stop).
pub fn default_cs() -> Vec<f64> {
    let step = 8.0 / 9.0;
    (0..10)
        .map(|k| 10f64.powf(if k == 9 { 4.0 } else { k as f64 * step - 4.0 }))
        .collect()
}

/// Fits the model on `rows` (each of the same length) and labels `y` (both
/// classes present) with inverse regularization strength `c`.
pub fn fit(rows: &[Vec<f64>], y: &[bool], c: f64) -> Result<Logistic> {
    use linfa::traits::Fit;
    let n = rows.len();
    let d = rows.first().map_or(0, |r| r.len());
    let bad = |e: String| Error::Invalid(format!("logistic regression (C = {c}): {e}"));
    let x =
        ndarray::Array2::from_shape_vec((n, d), rows.concat()).map_err(|e| bad(e.to_string()))?;
    let data = linfa::Dataset::new(x, ndarray::Array1::from(y.to_vec()));
    // linfa minimizes sum_i logloss + alpha/2 ||w||^2: scikit-learn's
    // objective divided by C. Its default stop (gradient norm 1e-4 or 100
    // iterations) leaves scaled Mahalanobis scores far from the optimum, as
    // scikit-learn's own does; run it to convergence instead.
    let fitted = linfa_logistic::LogisticRegression::default()
        .alpha(1.0 / c)
        .max_iterations(10_000)
        .gradient_tolerance(1e-10)
        .fit(&data)
        .map_err(|e| bad(e.to_string()))?;
    // linfa's positive class is the more frequent one; ours is `true`.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    Ok(Logistic {
        weights: fitted.params().iter().map(|w| sign * w).collect(),
        bias: sign * fitted.intercept(),
    })
}

/// scikit-learn's `StratifiedKFold(n_splits, shuffle=False)`: the test fold
/// of every sample. Each class's samples, in order, fill the folds in
/// contiguous runs whose sizes interleave the sorted labels.
pub fn stratified_folds(y: &[bool], n_splits: usize) -> Vec<usize> {
    // Classes are numbered in order of first appearance.
    let first = y.first().copied().unwrap_or(false);
    let encoded: Vec<usize> = y.iter().map(|&v| usize::from(v != first)).collect();
    let n_classes = if encoded.contains(&1) { 2 } else { 1 };
    let mut order = encoded.clone();
    order.sort_unstable();
    // allocation[fold][class] = count of `class` in order[fold::n_splits].
    let mut allocation = vec![vec![0usize; n_classes]; n_splits];
    for (i, &c) in order.iter().enumerate() {
        allocation[i % n_splits][c] += 1;
    }
    let mut folds = vec![0usize; y.len()];
    for k in 0..n_classes {
        let per_class: Vec<usize> = (0..n_splits)
            .flat_map(|f| std::iter::repeat_n(f, allocation[f][k]))
            .collect();
        let members = encoded.iter().enumerate().filter(|(_, &c)| c == k);
        for ((i, _), f) in members.zip(per_class) {
            folds[i] = f;
        }
    }
    folds
}

/// What `fit_cv` found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CvFit {
    pub model: Logistic,
    /// The C chosen.
    pub c: f64,
    pub cs: Vec<f64>,
    /// Accuracy per fold and C: `scores[fold][k]`.
    pub scores: Vec<Vec<f64>>,
}

/// `LogisticRegressionCV()` with its defaults: the C whose fold accuracies
/// sum highest (the first on ties), refit on every row.
pub fn fit_cv(rows: &[Vec<f64>], y: &[bool]) -> Result<CvFit> {
    const FOLDS: usize = 5;
    let cs = default_cs();
    let folds = stratified_folds(y, FOLDS);
    let mut scores = vec![vec![0f64; cs.len()]; FOLDS];
    for (fold, fold_scores) in scores.iter_mut().enumerate() {
        let (mut tr_x, mut tr_y, mut te_x, mut te_y) = (vec![], vec![], vec![], vec![]);
        for (i, r) in rows.iter().enumerate() {
            if folds[i] == fold {
                te_x.push(r.clone());
                te_y.push(y[i]);
            } else {
                tr_x.push(r.clone());
                tr_y.push(y[i]);
            }
        }
        for (k, &c) in cs.iter().enumerate() {
            let m = fit(&tr_x, &tr_y, c)?;
            let correct = te_x
                .iter()
                .zip(&te_y)
                .filter(|(x, &t)| m.predict(x) == t)
                .count();
            fold_scores[k] = correct as f64 / te_x.len().max(1) as f64;
        }
    }
    // Sum over folds in order, as numpy's sum(axis=0), then the first max.
    let sums: Vec<f64> = (0..cs.len())
        .map(|k| scores.iter().fold(0.0, |acc, s| acc + s[k]))
        .collect();
    let best = sums
        .iter()
        .enumerate()
        .fold(0, |b, (k, &s)| if s > sums[b] { k } else { b });
    let model = fit(rows, y, cs[best])?;
    Ok(CvFit {
        model,
        c: cs[best],
        cs,
        scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cs_are_numpys_logspace() {
        let cs = default_cs();
        assert_eq!(cs.len(), 10);
        assert_eq!(cs[0], 1e-4);
        assert!((cs[9] - 1e4).abs() < 1e-9);
        assert!((cs[4] - 0.3593813663804626).abs() < 1e-15);
    }

    #[test]
    fn the_gradient_vanishes_at_the_fit() {
        // Independent of the solver: the optimality condition itself.
        let rows: Vec<Vec<f64>> = (0..30)
            .map(|i| {
                let i = i as f64;
                vec![1000.0 * (0.3 * i).sin() - 5000.0, 20.0 * (1.1 * i).cos()]
            })
            .collect();
        let y: Vec<bool> = (0..30).map(|i| (i * 5 % 7) < 3).collect();
        let c = 0.5;
        let m = fit(&rows, &y, c).unwrap();
        let mut g = [m.weights[0] / c, m.weights[1] / c, 0.0];
        for (x, &t) in rows.iter().zip(&y) {
            let r = m.probability(x) - f64::from(u8::from(t));
            g[0] += r * x[0];
            g[1] += r * x[1];
            g[2] += r;
        }
        for (j, gj) in g.iter().enumerate() {
            let scale = if j < 2 { 1000.0 * 30.0 } else { 30.0 };
            assert!(gj.abs() < 1e-6 * scale, "gradient {j} = {gj}");
        }
    }
}
