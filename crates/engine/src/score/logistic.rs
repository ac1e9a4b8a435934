//! Binary L2-regularized logistic regression and scikit-learn's
//! `LogisticRegressionCV` defaults around it, as the seed's Mahalanobis
//! tuning uses them: Cs = 10 values logspace(-4, 4), 5-fold stratified
//! cross-validation without shuffling, accuracy scoring, refit on all data
//! with the best C.
//!
//! The objective is scikit-learn's, ||w||^2 / 2 plus
//! C * sum_i log(1 + exp(-s_i (w.x_i + b))) with s_i = +-1 and the intercept
//! b unpenalized, solved to its optimum by Newton's method (scikit-learn's
//! L-BFGS stops early, at gradient 1e-4). The cross-validation around it is
//! scikit-learn's, fold for fold.

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
/// classes present) with inverse regularization strength `c`, to the
/// optimum of scikit-learn's objective.
///
/// Newton's method with a backtracking line search: with a handful of
/// features each step is a tiny linear solve, and it converges in a few
/// dozen steps even on raw Mahalanobis scores (features in the thousands,
/// weights near 1e-5), where first-order solvers crawl for minutes.
pub fn fit(rows: &[Vec<f64>], y: &[bool], c: f64) -> Result<Logistic> {
    let bad = |e: &str| Error::Invalid(format!("logistic regression (C = {c}): {e}"));
    let d = rows.first().map_or(0, |r| r.len());
    if rows.is_empty() || rows.len() != y.len() || rows.iter().any(|r| r.len() != d) {
        return Err(bad("rows and labels disagree in number or length"));
    }
    if !(c > 0.0 && c.is_finite()) {
        return Err(bad("C must be positive"));
    }
    if rows.iter().flatten().any(|v| !v.is_finite()) {
        return Err(bad("a feature is not finite"));
    }
    if y.iter().all(|&t| t) || !y.iter().any(|&t| t) {
        return Err(bad("both classes must be present"));
    }
    let objective = |theta: &[f64]| -> f64 {
        let (w, b) = theta.split_at(d);
        let loss: f64 = rows
            .iter()
            .zip(y)
            .map(|(x, &t)| {
                let z = dot(w, x) + b[0];
                softplus(if t { -z } else { z })
            })
            .sum();
        0.5 * dot(w, w) + c * loss
    };
    // theta = (w, b); the intercept is not penalized.
    let n = d + 1;
    let mut theta = vec![0f64; n];
    let mut f = objective(&theta);
    for _ in 0..MAX_NEWTON_STEPS {
        let (w, b) = theta.split_at(d);
        let mut grad: Vec<f64> = w.iter().copied().chain([0.0]).collect();
        let mut hess = vec![0f64; n * n];
        for i in 0..d {
            hess[i * n + i] = 1.0;
        }
        for (x, &t) in rows.iter().zip(y) {
            let p = sigmoid(dot(w, x) + b[0]);
            let r = c * (p - f64::from(u8::from(t)));
            let v = c * p * (1.0 - p);
            for i in 0..n {
                let xi = if i < d { x[i] } else { 1.0 };
                grad[i] += r * xi;
                for j in 0..=i {
                    let xj = if j < d { x[j] } else { 1.0 };
                    hess[i * n + j] += v * xi * xj;
                }
            }
        }
        for i in 0..n {
            for j in 0..i {
                hess[j * n + i] = hess[i * n + j];
            }
        }
        let step = solve_damped(&hess, &grad, n).ok_or_else(|| bad("singular Hessian"))?;
        // Armijo backtracking along the Newton direction.
        let slope: f64 = -dot(&grad, &step);
        let mut t = 1.0;
        let (next, f_next) = loop {
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a - t * s).collect();
            let fc = objective(&cand);
            if fc <= f + 1e-4 * t * slope || t < 1e-12 {
                break (cand, fc);
            }
            t *= 0.5;
        };
        let moved = theta
            .iter()
            .zip(&next)
            .map(|(a, b)| (a - b).abs() / a.abs().max(b.abs()).max(1e-300))
            .fold(0f64, f64::max);
        theta = next;
        let done = f - f_next <= 1e-15 * f.abs() && moved <= 1e-12;
        f = f_next;
        if done || moved == 0.0 {
            break;
        }
    }
    let bias = theta.pop().unwrap_or(0.0);
    Ok(Logistic {
        weights: theta,
        bias,
    })
}

const MAX_NEWTON_STEPS: usize = 500;

/// log(1 + e^z) without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Solves `a x = b` (a: n x n, symmetric positive semi-definite) by
/// Gaussian elimination with partial pivoting, adding a growing ridge when
/// `a` is numerically singular (e.g. the intercept's row once every point
/// is fitted with certainty).
fn solve_damped(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let scale = (0..n)
        .map(|i| a[i * n + i].abs())
        .fold(0f64, f64::max)
        .max(1e-300);
    let mut ridge = 0.0;
    for _ in 0..40 {
        let mut m: Vec<f64> = a.to_vec();
        for i in 0..n {
            m[i * n + i] += ridge;
        }
        if let Some(x) = gauss(m, b.to_vec(), n, scale) {
            return Some(x);
        }
        ridge = if ridge == 0.0 {
            1e-14 * scale
        } else {
            ridge * 10.0
        };
    }
    None
}

fn gauss(mut m: Vec<f64>, mut x: Vec<f64>, n: usize, scale: f64) -> Option<Vec<f64>> {
    for col in 0..n {
        let piv =
            (col..n).max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))?;
        if m[piv * n + col].abs() <= 1e-13 * scale {
            return None;
        }
        if piv != col {
            for k in 0..n {
                m.swap(piv * n + k, col * n + k);
            }
            x.swap(piv, col);
        }
        for r in col + 1..n {
            let f = m[r * n + col] / m[col * n + col];
            if f != 0.0 {
                for k in col..n {
                    m[r * n + k] -= f * m[col * n + k];
                }
                x[r] -= f * x[col];
            }
        }
    }
    for col in (0..n).rev() {
        let tail: f64 = (col + 1..n).map(|k| m[col * n + k] * x[k]).sum();
        x[col] = (x[col] - tail) / m[col * n + col];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
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
    // Each class's sequence of folds: fold 0 allocation times, then fold 1...
    let mut per_class = vec![Vec::new(); n_classes];
    for (f, row) in allocation.iter().enumerate() {
        for (k, &count) in row.iter().enumerate() {
            per_class[k].extend(std::iter::repeat_n(f, count));
        }
    }
    let mut folds = vec![0usize; y.len()];
    for (k, per_class) in per_class.into_iter().enumerate() {
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
