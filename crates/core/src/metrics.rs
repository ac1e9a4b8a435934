//! The seed's `get_measures`: AUROC, AUPR-In, AUPR-Out (scikit-learn's
//! definitions) and FPR at 95% TPR (the seed's own curve walk), with ID as
//! the positive class. Pure functions over score slices.

/// The four numbers of the paper's tables, as fractions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Measures {
    pub auroc: f64,
    pub aupr_in: f64,
    pub aupr_out: f64,
    pub fpr95: f64,
}

/// The operating point FPR95 picks: the score threshold (images scoring at
/// or above it count as ID), the TPR there, and the FPR.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub tpr: f64,
    pub fpr: f64,
}

/// Cumulative counts at each distinct score, scores descending
/// (scikit-learn's `_binary_clf_curve`).
struct Curve {
    /// Distinct thresholds, descending.
    thresholds: Vec<f64>,
    tps: Vec<f64>,
    fps: Vec<f64>,
}

fn curve(pos: &[f64], neg: &[f64]) -> Curve {
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    // Descending; the order within ties does not matter since ties are
    // grouped into one threshold below.
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut c = Curve {
        thresholds: Vec::new(),
        tps: Vec::new(),
        fps: Vec::new(),
    };
    let (mut tp, mut fp) = (0f64, 0f64);
    for (i, &(s, is_pos)) in all.iter().enumerate() {
        if is_pos {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_group = i + 1 == all.len() || all[i + 1].0 != s;
        if last_of_group {
            c.thresholds.push(s);
            c.tps.push(tp);
            c.fps.push(fp);
        }
    }
    c
}

/// ROC points (FPR, TPR) with `pos` positive, from (0, 0) and then one
/// per distinct score, highest first.
pub fn roc_points(pos: &[f64], neg: &[f64]) -> Vec<(f64, f64)> {
    let c = curve(pos, neg);
    let (p, n) = (pos.len() as f64, neg.len() as f64);
    let mut out = vec![(0.0, 0.0)];
    out.extend(c.tps.iter().zip(&c.fps).map(|(tp, fp)| (fp / n, tp / p)));
    out
}

/// Area under the ROC curve, trapezoidal (ties count half), as
/// `sklearn.metrics.roc_auc_score`.
pub fn auroc(pos: &[f64], neg: &[f64]) -> f64 {
    let c = curve(pos, neg);
    let (p, n) = (pos.len() as f64, neg.len() as f64);
    let (mut area, mut prev_tpr, mut prev_fpr) = (0f64, 0f64, 0f64);
    for (tp, fp) in c.tps.iter().zip(&c.fps) {
        let (tpr, fpr) = (tp / p, fp / n);
        area += (fpr - prev_fpr) * (tpr + prev_tpr) / 2.0;
        prev_tpr = tpr;
        prev_fpr = fpr;
    }
    area
}

/// Average precision, as `sklearn.metrics.average_precision_score`:
/// sum over thresholds of (R_k - R_{k-1}) * P_k.
pub fn average_precision(pos: &[f64], neg: &[f64]) -> f64 {
    let c = curve(pos, neg);
    let p = pos.len() as f64;
    let (mut ap, mut prev_recall) = (0f64, 0f64);
    for (tp, fp) in c.tps.iter().zip(&c.fps) {
        let recall = tp / p;
        let precision = tp / (tp + fp);
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    ap
}

/// The seed's `fpr_and_fdr_at_recall`: the point of the curve (cut after
/// recall first reaches 1, reversed, with (recall 1, fps 0) appended) whose
/// recall is nearest `level` (the first such), and its FPR.
pub fn operating_point(pos: &[f64], neg: &[f64], level: f64) -> OperatingPoint {
    let c = curve(pos, neg);
    let total_tp = *c.tps.last().unwrap_or(&0.0);
    let last_ind = c.tps.partition_point(|&t| t < total_tp);
    // Reversed prefix [last_ind, ..., 0], then the appended point.
    let mut best: Option<(f64, usize)> = None;
    let mut consider = |dist: f64, k: usize| {
        if best.is_none_or(|(d, _)| dist < d) {
            best = Some((dist, k));
        }
    };
    for k in (0..=last_ind.min(c.tps.len().saturating_sub(1))).rev() {
        consider((c.tps[k] / total_tp - level).abs(), k);
    }
    const APPENDED: usize = usize::MAX;
    consider((1.0 - level).abs(), APPENDED);
    let n = neg.len() as f64;
    match best {
        Some((_, k)) if k != APPENDED => OperatingPoint {
            threshold: c.thresholds[k],
            tpr: c.tps[k] / total_tp,
            fpr: c.fps[k] / n,
        },
        // The appended point claims recall 1 with no false positives; no
        // threshold gives that, so report the strictest one that keeps
        // every ID image.
        _ => OperatingPoint {
            threshold: pos.iter().copied().fold(f64::INFINITY, f64::min),
            tpr: 1.0,
            fpr: 0.0,
        },
    }
}

/// FPR at 95% TPR as the seed computes it.
pub fn fpr_at_95_tpr(id: &[f64], ood: &[f64]) -> f64 {
    operating_point(id, ood, 0.95).fpr
}

/// The seed's `get_measures(in_examples, out_examples)`. Both slices must be
/// non-empty.
pub fn measures(id: &[f64], ood: &[f64]) -> Measures {
    let neg_id: Vec<f64> = id.iter().map(|s| -s).collect();
    let neg_ood: Vec<f64> = ood.iter().map(|s| -s).collect();
    Measures {
        auroc: auroc(id, ood),
        aupr_in: average_precision(id, ood),
        aupr_out: average_precision(&neg_ood, &neg_id),
        fpr95: fpr_at_95_tpr(id, ood),
    }
}

/// `measures` for f32 scores (converted exactly).
pub fn measures_f32(id: &[f32], ood: &[f32]) -> Measures {
    let id: Vec<f64> = id.iter().map(|&s| s as f64).collect();
    let ood: Vec<f64> = ood.iter().map(|&s| s as f64).collect();
    measures(&id, &ood)
}

/// Which class a figure counts as positive, and so what FPR95 and the two
/// AUPRs mean. The one place that decides it: everything that shows or
/// stores measures asks [`Convention::measures`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Convention {
    /// The paper's (the seed's `get_measures`): ID positive; FPR95 is the
    /// share of OOD images accepted when 95% of ID images are kept; AUPRs
    /// are average precision.
    #[default]
    #[serde(rename = "paper")]
    Paper,
    /// OpenOOD v1.5's (`auc_and_fpr_recall`): OOD positive with the scores
    /// negated; FPR@95 is the share of ID images rejected when 95% of OOD
    /// images are caught; AUPRs are trapezoidal areas.
    #[serde(rename = "openood")]
    OpenOod,
}

impl Convention {
    pub const ALL: [Convention; 2] = [Convention::Paper, Convention::OpenOod];

    pub fn name(self) -> &'static str {
        match self {
            Convention::Paper => "paper",
            Convention::OpenOod => "openood",
        }
    }

    /// What its figures mean, in a line (tables, summary.json, help).
    pub fn describe(self) -> &'static str {
        match self {
            Convention::Paper => {
                "the paper's: ID positive; FPR95 = share of OOD accepted at 95% of ID kept; \
                 AUPR-In/Out = average precision with ID/OOD positive"
            }
            Convention::OpenOod => {
                "OpenOOD v1.5's: OOD positive, scores negated; \
                 FPR@95 = share of ID rejected at 95% of OOD caught; \
                 AUPR-In/Out = trapezoidal area with ID/OOD positive"
            }
        }
    }

    /// The other one (the TUI's toggle).
    pub fn toggled(self) -> Convention {
        match self {
            Convention::Paper => Convention::OpenOod,
            Convention::OpenOod => Convention::Paper,
        }
    }

    /// The four figures of `id` against `ood` (higher scores = more ID).
    /// Both slices must be non-empty.
    pub fn measures(self, id: &[f64], ood: &[f64]) -> Measures {
        match self {
            Convention::Paper => measures(id, ood),
            Convention::OpenOod => openood_measures(id, ood),
        }
    }
}

impl std::str::FromStr for Convention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "paper" => Ok(Convention::Paper),
            "openood" => Ok(Convention::OpenOod),
            _ => Err(format!("`{s}`: expected paper or openood")),
        }
    }
}

impl std::fmt::Display for Convention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// scikit-learn's `roc_curve` with `drop_intermediate=True` (its default,
/// which OpenOOD keeps): the points of [`curve`] that are not the middle of
/// equal steps, after a leading (0, 0). Counts, not rates.
fn roc_counts_dropped(c: &Curve) -> Vec<(f64, f64)> {
    let n = c.tps.len();
    let keep = |i: usize| {
        if n <= 2 || i == 0 || i + 1 == n {
            return true;
        }
        // np.diff(x, 2) at i - 1: exact on whole counts.
        let second = |x: &[f64]| x[i + 1] - 2.0 * x[i] + x[i - 1];
        second(&c.fps) != 0.0 || second(&c.tps) != 0.0
    };
    let mut out = vec![(0.0, 0.0)];
    out.extend((0..n).filter(|&i| keep(i)).map(|i| (c.fps[i], c.tps[i])));
    out
}

/// `sklearn.metrics.auc(recall, precision)` over `precision_recall_curve`
/// with `pos` positive: the trapezoidal area from (recall 0, precision 1)
/// through every distinct threshold, highest first.
fn pr_area(pos: &[f64], neg: &[f64]) -> f64 {
    let c = curve(pos, neg);
    let total = *c.tps.last().unwrap_or(&0.0);
    let (mut area, mut prev_r, mut prev_p) = (0f64, 0f64, 1f64);
    for (tp, fp) in c.tps.iter().zip(&c.fps) {
        let recall = if total == 0.0 { 1.0 } else { tp / total };
        let predicted = tp + fp;
        let precision = if predicted == 0.0 {
            0.0
        } else {
            tp / predicted
        };
        area += (recall - prev_r) * (precision + prev_p) / 2.0;
        prev_r = recall;
        prev_p = precision;
    }
    area
}

/// OpenOOD v1.5's `auc_and_fpr_recall(conf, label, 0.95)` for one ID and
/// one OOD set: OOD is the positive class and the scores are negated;
/// AUROC and FPR@95 come from the ROC curve (FPR at the first point whose
/// TPR reaches 0.95), AUPR-In (ID positive, scores as they are) and
/// AUPR-Out (OOD positive, negated) are trapezoidal areas under the
/// precision-recall curves. Both slices must be non-empty.
pub fn openood_measures(id: &[f64], ood: &[f64]) -> Measures {
    let neg_id: Vec<f64> = id.iter().map(|s| -s).collect();
    let neg_ood: Vec<f64> = ood.iter().map(|s| -s).collect();
    let roc = roc_counts_dropped(&curve(&neg_ood, &neg_id));
    let (fps_total, tps_total) = *roc.last().unwrap_or(&(0.0, 0.0));
    let rates: Vec<(f64, f64)> = roc
        .iter()
        .map(|(fp, tp)| (fp / fps_total, tp / tps_total))
        .collect();
    let mut auroc = 0f64;
    for w in rates.windows(2) {
        auroc += (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0;
    }
    // np.argmax of an all-false mask is 0.
    let fpr95 = rates
        .iter()
        .find(|(_, tpr)| *tpr >= 0.95)
        .unwrap_or(&rates[0])
        .0;
    Measures {
        auroc,
        aupr_in: pr_area(id, ood),
        aupr_out: pr_area(&neg_ood, &neg_id),
        fpr95,
    }
}

/// `openood_measures` for f32 scores (converted exactly).
pub fn openood_measures_f32(id: &[f32], ood: &[f32]) -> Measures {
    let id: Vec<f64> = id.iter().map(|&s| s as f64).collect();
    let ood: Vec<f64> = ood.iter().map(|&s| s as f64).collect();
    openood_measures(&id, &ood)
}

/// The mean of each figure over several sets (OpenOOD's near/far rows and
/// the overall average); none for no sets.
pub fn mean(all: &[Measures]) -> Option<Measures> {
    if all.is_empty() {
        return None;
    }
    let n = all.len() as f64;
    let avg = |f: fn(&Measures) -> f64| all.iter().map(f).sum::<f64>() / n;
    Some(Measures {
        auroc: avg(|m| m.auroc),
        aupr_in: avg(|m| m.aupr_in),
        aupr_out: avg(|m| m.aupr_out),
        fpr95: avg(|m| m.fpr95),
    })
}

/// Counts of `values` in `bins` equal bins over [lo, hi]; values outside
/// are clamped into the end bins, non-finite values are ignored.
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<u64> {
    let mut counts = vec![0u64; bins];
    if bins == 0 {
        return counts;
    }
    let width = (hi - lo) / bins as f64;
    for &v in values.iter().filter(|v| v.is_finite()) {
        let i = if width > 0.0 {
            (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1)
        } else {
            0
        };
        counts[i] += 1;
    }
    counts
}

/// Fraction of `reference` strictly below `value`, plus half the ties: the
/// percentile of a score among the ID scores.
pub fn percentile(sorted_reference: &[f64], value: f64) -> f64 {
    if sorted_reference.is_empty() {
        return f64::NAN;
    }
    let below = sorted_reference.partition_point(|&r| r < value);
    let at_or_below = sorted_reference.partition_point(|&r| r <= value);
    (below as f64 + (at_or_below - below) as f64 / 2.0) / sorted_reference.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted() {
        let m = measures(&[3.0, 4.0], &[1.0, 2.0]);
        assert_eq!(
            (m.auroc, m.aupr_in, m.aupr_out, m.fpr95),
            (1.0, 1.0, 1.0, 0.0)
        );
        let m = measures(&[1.0, 2.0], &[3.0, 4.0]);
        assert_eq!(m.auroc, 0.0);
        assert_eq!(m.fpr95, 1.0);
    }

    #[test]
    fn ties_count_half() {
        assert_eq!(auroc(&[1.0], &[1.0]), 0.5);
        assert_eq!(auroc(&[1.0, 2.0], &[1.0]), 0.75);
    }

    #[test]
    fn openood_counts_ood_positive() {
        // Separated sets agree across conventions; inverted ones differ in
        // FPR95 only by which set is rejected.
        let m = openood_measures(&[3.0, 4.0], &[1.0, 2.0]);
        assert_eq!((m.auroc, m.fpr95), (1.0, 0.0));
        assert_eq!((m.aupr_in, m.aupr_out), (1.0, 1.0));
        let m = Convention::OpenOod.measures(&[1.0, 2.0], &[3.0, 4.0]);
        assert_eq!((m.auroc, m.fpr95), (0.0, 1.0));
        assert_eq!("OpenOOD".parse::<Convention>(), Ok(Convention::OpenOod));
        assert_eq!(Convention::Paper.toggled(), Convention::OpenOod);
        assert!("x"
            .parse::<Convention>()
            .unwrap_err()
            .contains("paper or openood"));
    }

    #[test]
    fn histogram_and_percentile() {
        assert_eq!(
            histogram(&[0.0, 0.5, 1.0, 2.0, f64::NAN], 0.0, 1.0, 2),
            vec![1, 3]
        );
        let r = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&r, 2.5), 0.5);
        assert_eq!(percentile(&r, 2.0), 0.375);
        assert_eq!(percentile(&r, 0.0), 0.0);
    }
}
