//! Everything the screens show that costs more than a glance at the
//! records: sorted scores, the four measures and the 95%-TPR operating point
//! per method and OOD set, and the GradNorm factors. Computed from a
//! snapshot of the scores on a worker thread, a few times per second at
//! most, so that rendering never sorts 50,000 scores.

use super::wake::{Queue, Worker};
use gradnorm_core::metrics::{self, Measures, OperatingPoint};
use gradnorm_core::run::Role;
use gradnorm_core::run::RunResults;

/// The TPR at which thresholds are drawn and misdetections counted.
pub const TPR: f64 = 0.95;

/// The numbers an analysis starts from, copied out of the results.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Records per dataset.
    pub counts: Vec<usize>,
    pub roles: Vec<Role>,
    /// `[dataset][method]` scores in record order.
    pub scores: Vec<Vec<Vec<f64>>>,
    /// `[dataset]`: sum_k |C p_k - 1| and ||h||_1 per record.
    pub factors: Vec<[Vec<f64>; 2]>,
    /// GradNorm's temperature (1 when GradNorm is not run).
    pub temperature: f64,
    /// Which run of the session this is (stale analyses are dropped).
    pub generation: u64,
    /// The convention of the measures.
    pub convention: metrics::Convention,
}

impl Snapshot {
    pub fn of(results: &RunResults) -> Snapshot {
        let Some(info) = &results.info else {
            return Snapshot::default();
        };
        let n_methods = info.methods.len();
        let temperature = gradnorm_core::method::anatomy_temperature(&info.methods);
        let mut snap = Snapshot {
            temperature,
            ..Snapshot::default()
        };
        for (d, ds) in info.datasets.iter().enumerate() {
            let records = results.records.get(d).map(Vec::as_slice).unwrap_or(&[]);
            snap.counts.push(records.len());
            snap.roles.push(ds.role);
            snap.scores.push(
                (0..n_methods)
                    .map(|m| {
                        records
                            .iter()
                            .map(|r| r.scores.get(m).copied().unwrap_or(f32::NAN) as f64)
                            .collect()
                    })
                    .collect(),
            );
            snap.factors.push([
                records.iter().map(|r| r.softmax_term as f64).collect(),
                records.iter().map(|r| r.feature_l1 as f64).collect(),
            ]);
        }
        snap
    }

    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// Derived numbers for one snapshot. Index conventions: datasets as in
/// `RunInfo::datasets` (0 = ID), methods as in `RunInfo::methods`.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Records per dataset this analysis covers.
    pub counts: Vec<usize>,
    /// `[dataset][method]`, ascending, finite scores only.
    pub sorted: Vec<Vec<Vec<f64>>>,
    /// `[dataset]`: the sorted GradNorm factors (softmax term, ||h||_1).
    pub factors: Vec<[Vec<f64>; 2]>,
    /// `[method][dataset]`: measures against the ID set (None for ID or
    /// before both sets have images).
    pub measures: Vec<Vec<Option<Measures>>>,
    /// `[method][dataset]`: the seed's 95%-TPR operating point.
    pub points: Vec<Vec<Option<OperatingPoint>>>,
    /// `[method]`: mean over the OOD sets that have measures.
    pub average: Vec<Option<Measures>>,
    /// `[dataset]`: AUROC of each GradNorm factor alone against the ID set.
    pub factor_auroc: Vec<[Option<f64>; 2]>,
    pub temperature: f64,
    pub generation: u64,
    /// The convention of `measures` and `average`.
    pub convention: metrics::Convention,
    /// How long computing this took (the app spaces refreshes by it).
    pub compute_secs: f64,
}

impl Analysis {
    pub fn compute(snap: &Snapshot) -> Analysis {
        let start = std::time::Instant::now();
        let n_methods = snap.scores.first().map_or(0, Vec::len);
        let sorted: Vec<Vec<Vec<f64>>> = snap
            .scores
            .iter()
            .map(|per_method| per_method.iter().map(|s| sorted_finite(s)).collect())
            .collect();
        let factors: Vec<[Vec<f64>; 2]> = snap
            .factors
            .iter()
            .map(|[a, b]| [sorted_finite(a), sorted_finite(b)])
            .collect();
        let n_sets = snap.counts.len();
        let mut measures = vec![vec![None; n_sets]; n_methods];
        let mut points = vec![vec![None; n_sets]; n_methods];
        let mut average = vec![None; n_methods];
        let mut factor_auroc = vec![[None, None]; n_sets];
        for d in 0..n_sets {
            if snap.roles[d] != Role::Ood || sorted.is_empty() {
                continue;
            }
            for m in 0..n_methods {
                let (id, ood) = (&sorted[0][m], &sorted[d][m]);
                if !id.is_empty() && !ood.is_empty() {
                    measures[m][d] = Some(snap.convention.measures(id, ood));
                    points[m][d] = Some(metrics::operating_point(id, ood, TPR));
                }
            }
            for f in 0..2 {
                let (id, ood) = (&factors[0][f], &factors[d][f]);
                if !id.is_empty() && !ood.is_empty() {
                    factor_auroc[d][f] = Some(metrics::auroc(id, ood));
                }
            }
        }
        for (m, avg) in average.iter_mut().enumerate() {
            let all: Vec<Measures> = measures[m].iter().flatten().copied().collect();
            if !all.is_empty() {
                let n = all.len() as f64;
                let mean = |f: fn(&Measures) -> f64| all.iter().map(f).sum::<f64>() / n;
                *avg = Some(Measures {
                    auroc: mean(|x| x.auroc),
                    aupr_in: mean(|x| x.aupr_in),
                    aupr_out: mean(|x| x.aupr_out),
                    fpr95: mean(|x| x.fpr95),
                });
            }
        }
        Analysis {
            counts: snap.counts.clone(),
            sorted,
            factors,
            measures,
            points,
            average,
            factor_auroc,
            temperature: snap.temperature,
            generation: snap.generation,
            convention: snap.convention,
            compute_secs: start.elapsed().as_secs_f64(),
        }
    }

    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    pub fn measures(&self, method: usize, dataset: usize) -> Option<Measures> {
        *self.measures.get(method)?.get(dataset)?
    }

    pub fn point(&self, method: usize, dataset: usize) -> Option<OperatingPoint> {
        *self.points.get(method)?.get(dataset)?
    }

    pub fn sorted(&self, dataset: usize, method: usize) -> &[f64] {
        self.sorted
            .get(dataset)
            .and_then(|d| d.get(method))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// A score's percentile among the ID scores of its method.
    pub fn id_percentile(&self, method: usize, score: f64) -> Option<f64> {
        let id = self.sorted(0, method);
        (!id.is_empty() && score.is_finite()).then(|| metrics::percentile(id, score))
    }
}

/// The thresholds the user moved, one per (method, OOD dataset); every
/// other pair is at its 95%-TPR one. Kept once in the app and read by every
/// screen and filter (the dashboard's plot, its Enter, the browser's
/// misdetections, Inspect), so they all judge at the same threshold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    moved: std::collections::BTreeMap<(usize, usize), f64>,
}

impl Thresholds {
    /// The threshold of `method` against OOD dataset `dataset`: the moved
    /// one, else the analysis's 95%-TPR one (None before both sets have
    /// scores).
    pub fn get(&self, analysis: &Analysis, method: usize, dataset: usize) -> Option<f64> {
        self.moved(method, dataset)
            .or_else(|| analysis.point(method, dataset).map(|p| p.threshold))
    }

    /// The threshold the user moved to, if any.
    pub fn moved(&self, method: usize, dataset: usize) -> Option<f64> {
        self.moved.get(&(method, dataset)).copied()
    }

    /// Moves (Some) or resets (None) the pair's threshold.
    pub fn set(&mut self, method: usize, dataset: usize, threshold: Option<f64>) {
        match threshold {
            Some(t) => self.moved.insert((method, dataset), t),
            None => self.moved.remove(&(method, dataset)),
        };
    }

    /// Every pair back at its 95%-TPR threshold (a new run).
    pub fn clear(&mut self) {
        self.moved.clear();
    }
}

/// How a threshold splits the two sets: images at or above it are taken
/// for ID (the seed's rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub id_kept: usize,
    pub id_total: usize,
    pub ood_accepted: usize,
    pub ood_total: usize,
}

impl Split {
    /// Ascending `id` and `ood` scores split at `threshold`.
    pub fn at(id: &[f64], ood: &[f64], threshold: f64) -> Split {
        let above = |v: &[f64]| v.len() - v.partition_point(|&x| x < threshold);
        Split {
            id_kept: above(id),
            id_total: id.len(),
            ood_accepted: above(ood),
            ood_total: ood.len(),
        }
    }

    pub fn tpr(&self) -> f64 {
        self.id_kept as f64 / self.id_total.max(1) as f64
    }

    pub fn fpr(&self) -> f64 {
        self.ood_accepted as f64 / self.ood_total.max(1) as f64
    }
}

/// The standard error of an AUROC estimated from `n_id` and `n_ood` images
/// (Hanley and McNeil, 1982): wide while few images are in.
pub fn auroc_se(auroc: f64, n_id: usize, n_ood: usize) -> f64 {
    let (a, n1, n2) = (auroc, n_id as f64, n_ood as f64);
    if n1 < 1.0 || n2 < 1.0 {
        return f64::NAN;
    }
    let q1 = a / (2.0 - a);
    let q2 = 2.0 * a * a / (1.0 + a);
    let v = (a * (1.0 - a) + (n1 - 1.0) * (q1 - a * a) + (n2 - 1.0) * (q2 - a * a)) / (n1 * n2);
    v.max(0.0).sqrt()
}

/// The binomial standard error of a rate `p` measured on `n` images (the
/// FPR at a fixed TPR, ignoring the threshold's own noise).
pub fn rate_se(p: f64, n: usize) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    (p * (1.0 - p) / n as f64).max(0.0).sqrt()
}

fn sorted_finite(v: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// Threshold `t` moved over the ID and OOD scores (each ascending) by
/// about 1% of them (at least one), from one score to another so each step
/// changes the counts; None when there are no scores.
pub fn step_threshold(id: &[f64], ood: &[f64], t: f64, step: isize) -> Option<f64> {
    let mut pool: Vec<f64> = id.iter().chain(ood).copied().collect();
    if pool.is_empty() {
        return None;
    }
    pool.sort_by(f64::total_cmp);
    let k = (pool.len() / 100).max(1) as isize;
    let r = pool.partition_point(|&x| x < t) as isize;
    let to = (r + step * k).clamp(0, pool.len() as isize - 1) as usize;
    Some(pool[to])
}

/// The value at quantile `q` of ascending `sorted` (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(sorted[i])
}

/// Fractions of `sorted` in `bins` equal bins over [lo, hi]; values outside
/// fall into the end bins (as `metrics::histogram`), in O(bins log n).
pub fn density(sorted: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    if bins == 0 || sorted.is_empty() {
        return vec![0.0; bins];
    }
    let n = sorted.len() as f64;
    let width = (hi - lo) / bins as f64;
    let below = |edge: f64| sorted.partition_point(|&v| v < edge);
    let mut out = Vec::with_capacity(bins);
    let mut prev = 0usize;
    for k in 1..=bins {
        let upto = if k == bins {
            sorted.len()
        } else {
            below(lo + width * k as f64)
        };
        out.push((upto - prev) as f64 / n);
        prev = upto;
    }
    out
}

/// A plotting range covering both sets (0.5% trimmed at each end so one
/// outlier does not squash the plot) and `extra` values.
pub fn range(sets: &[&[f64]], extra: &[f64]) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for s in sets {
        if let (Some(a), Some(b)) = (quantile(s, 0.005), quantile(s, 0.995)) {
            lo = lo.min(a);
            hi = hi.max(b);
        }
    }
    for &v in extra.iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let pad = (lo.abs() * 1e-3).max(1e-6);
        return Some((lo - pad, hi + pad));
    }
    let pad = (hi - lo) * 0.02;
    // Non-negative data (norms, probabilities) keeps a non-negative axis.
    let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    Some(((lo - pad).max(floor), hi + pad))
}

/// Computes analyses off the UI thread; the latest snapshot wins.
pub struct Analyzer {
    worker: Worker<Snapshot, Analysis>,
    in_flight: bool,
}

impl Analyzer {
    /// `wake` is told when an analysis is ready.
    pub fn new(wake: super::wake::Wake) -> Analyzer {
        let worker = Worker::spawn("gradnorm-analysis", Queue::Latest, wake, |snap| {
            Analysis::compute(&snap)
        });
        Analyzer {
            worker,
            in_flight: false,
        }
    }

    pub fn busy(&self) -> bool {
        self.in_flight
    }

    pub fn submit(&mut self, snap: Snapshot) {
        if self.worker.send(snap) {
            self.in_flight = true;
        }
    }

    /// The newest finished analysis, if one arrived.
    pub fn poll(&mut self) -> Option<Analysis> {
        let latest = self.worker.replies().last();
        if latest.is_some() {
            self.in_flight = false;
        }
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_counts_at_or_above_and_errors_shrink_with_n() {
        let id = [0.1, 0.5, 0.5, 0.9];
        let ood = [0.0, 0.2, 0.5];
        let s = Split::at(&id, &ood, 0.5);
        assert_eq!((s.id_kept, s.ood_accepted), (3, 1));
        assert_eq!((s.tpr(), s.fpr()), (0.75, 1.0 / 3.0));
        // Hanley-McNeil at A = 0.9, 50 and 50 (computed by hand in Python).
        assert!((auroc_se(0.9, 50, 50) - 0.032124).abs() < 1e-6);
        assert!(auroc_se(0.9, 500, 500) < auroc_se(0.9, 50, 50) / 3.0);
        assert!((rate_se(0.5, 100) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn threshold_steps_by_one_percent_of_the_pooled_scores() {
        let id: Vec<f64> = (0..150).map(|i| i as f64).collect();
        let ood: Vec<f64> = (0..50).map(|i| i as f64 + 0.5).collect();
        // 200 scores: a step is 2 of them; 10 is the 21st (index 20).
        assert_eq!(step_threshold(&id, &ood, 10.0, 1), Some(11.0));
        assert_eq!(step_threshold(&id, &ood, 10.0, -1), Some(9.0));
        assert_eq!(step_threshold(&id, &ood, 1e9, 1), Some(149.0));
        assert_eq!(step_threshold(&id, &ood, -1e9, -1), Some(0.0));
        assert_eq!(step_threshold(&[], &[], 1.0, 1), None);
    }

    #[test]
    fn density_matches_histogram() {
        let v = [0.0, 0.1, 0.5, 0.5, 0.9, 1.0, 2.0, -1.0];
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let d = density(&s, 0.0, 1.0, 4);
        let h = metrics::histogram(&v, 0.0, 1.0, 4);
        let n = v.len() as f64;
        let want: Vec<f64> = h.iter().map(|&c| c as f64 / n).collect();
        assert_eq!(d, want);
    }
}
