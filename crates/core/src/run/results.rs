//! Results of a run: folded from engine events in memory (the TUI and `eval`
//! share this), summarized, and written to a run folder as summary.json and
//! scores.csv.

use crate::error::{Error, Result};
use crate::method::Method;
use crate::metrics::{self, Convention, Measures};
use crate::run::{Event, ImageRecord, Progress, Role, RunInfo, Setup};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file that could not be read or decoded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything a run has produced so far.
#[derive(Debug, Clone, Default)]
pub struct RunResults {
    pub info: Option<Arc<RunInfo>>,
    /// Per dataset (0 = ID), in evaluation order.
    pub records: Vec<Vec<ImageRecord>>,
    pub skipped: Vec<Vec<Skipped>>,
    pub progress: Option<Progress>,
    /// `Some(cancelled)` once the engine has finished.
    pub finished: Option<bool>,
    pub elapsed_secs: f64,
    pub failed: Option<String>,
    /// Messages from the engine that did not stop the run.
    pub notices: Vec<String>,
}

impl RunResults {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one engine event in.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Started(info) => {
                let n = info.datasets.len();
                self.records = vec![Vec::new(); n];
                self.skipped = vec![Vec::new(); n];
                self.info = Some(info);
            }
            Event::Records { dataset, records } => {
                if let Some(r) = self.records.get_mut(dataset) {
                    r.extend(records);
                }
            }
            Event::Skipped {
                dataset,
                path,
                reason,
            } => {
                if let Some(s) = self.skipped.get_mut(dataset) {
                    s.push(Skipped { path, reason });
                }
            }
            Event::Progress(p) => {
                self.elapsed_secs = p.elapsed_secs;
                self.progress = Some(p);
            }
            Event::Finished {
                cancelled,
                elapsed_secs,
            } => {
                self.finished = Some(cancelled);
                self.elapsed_secs = elapsed_secs;
            }
            Event::Failed(msg) => self.failed = Some(msg),
            Event::Notice(msg) => self.notices.push(msg),
        }
    }

    pub fn methods(&self) -> &[Method] {
        self.info
            .as_ref()
            .map(|i| i.methods.as_slice())
            .unwrap_or(&[])
    }

    /// Indices of the OOD datasets.
    pub fn ood_datasets(&self) -> Vec<usize> {
        self.info
            .as_ref()
            .map(|i| {
                i.datasets
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.role == Role::Ood)
                    .map(|(k, _)| k)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Scores of one method on one dataset.
    pub fn scores(&self, dataset: usize, method: usize) -> Vec<f64> {
        self.records
            .get(dataset)
            .map(|r| r.iter().map(|rec| rec.scores[method] as f64).collect())
            .unwrap_or_default()
    }

    /// Measures of a method for an OOD dataset against the ID set, once both
    /// have images; none when a score is NaN or infinite (a number that
    /// cannot be ranked is not shown as a figure; [`Self::warnings`] says why).
    pub fn measures(&self, method: usize, ood: usize) -> Option<Measures> {
        self.measures_in(Convention::Paper, method, ood)
    }

    /// [`Self::measures`] under `convention`.
    pub fn measures_in(
        &self,
        convention: Convention,
        method: usize,
        ood: usize,
    ) -> Option<Measures> {
        let id = self.scores(0, method);
        let od = self.scores(ood, method);
        let finite = id.iter().chain(&od).all(|s| s.is_finite());
        (!id.is_empty() && !od.is_empty() && finite).then(|| convention.measures(&id, &od))
    }

    /// The groups of the OOD sets, in order of first appearance, each with
    /// its datasets' indices.
    pub fn groups(&self) -> Vec<(String, Vec<usize>)> {
        let Some(info) = &self.info else {
            return Vec::new();
        };
        dataset_groups(&info.datasets)
    }

    /// Why some of this run's numbers cannot be trusted: NaN or infinite
    /// scores (their measures are left out), or a model whose outputs do not
    /// depend on its input (every image scored alike). Empty when none;
    /// the table, summary.json and the TUI show these.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (m, method) in self.methods().iter().enumerate() {
            let bad = self
                .records
                .iter()
                .flatten()
                .filter(|r| !r.scores.get(m).is_some_and(|s| s.is_finite()))
                .count();
            if bad > 0 {
                out.push(format!(
                    "{bad} {} score(s) are NaN or infinite: its measures are left out",
                    method.label()
                ));
            }
        }
        let all: Vec<&ImageRecord> = self.records.iter().flatten().collect();
        if all.len() >= 2 {
            let first = all[0];
            let same = all.iter().all(|r| {
                r.scores == first.scores
                    && r.top.first() == first.top.first()
                    && r.feature_l1 == first.feature_l1
            });
            if same {
                out.push(format!(
                    "all {} images got identical outputs: the model's outputs do not depend on \
                     its input (untrained or broken weights?); the measures mean nothing",
                    all.len()
                ));
            }
        }
        out
    }

    /// The mean of a method's measures over the OOD sets that have any.
    pub fn average(&self, method: usize) -> Option<Measures> {
        let all: Vec<Measures> = self
            .ood_datasets()
            .into_iter()
            .filter_map(|d| self.measures(method, d))
            .collect();
        average(&all)
    }

    /// Top-1 and top-5 accuracy on the labelled ID images, and their count.
    pub fn id_accuracy(&self) -> Option<Accuracy> {
        // Labels the model cannot output are left out (the engine says so).
        let classes = self.info.as_ref()?.model.num_classes;
        let labelled: Vec<&ImageRecord> = self
            .records
            .first()?
            .iter()
            .filter(|r| r.label.is_some_and(|l| l < classes))
            .collect();
        if labelled.is_empty() {
            return None;
        }
        let n = labelled.len() as f64;
        let top1 = labelled
            .iter()
            .filter(|r| r.top.first().map(|t| t.0) == r.label)
            .count() as f64;
        let top5 = labelled
            .iter()
            .filter(|r| r.top.iter().take(5).any(|t| Some(t.0) == r.label))
            .count() as f64;
        Some(Accuracy {
            top1: top1 / n,
            top5: top5 / n,
            images: labelled.len(),
        })
    }

    /// The summary under the paper's convention.
    pub fn summary(&self) -> Option<Summary> {
        self.summary_in(Convention::Paper)
    }

    /// The summary with `convention`'s figures first (`ood`, `average`,
    /// `groups`) and the other's in each method's `alternate`.
    pub fn summary_in(&self, convention: Convention) -> Option<Summary> {
        let info = self.info.as_ref()?;
        let groups = self.groups();
        let datasets = info
            .datasets
            .iter()
            .enumerate()
            .map(|(k, d)| DatasetSummary {
                name: d.name.clone(),
                role: d.role,
                path: d.path.clone(),
                images: d.count,
                evaluated: self.records.get(k).map_or(0, Vec::len),
                skipped: self.skipped.get(k).cloned().unwrap_or_default(),
                group: d.group.clone(),
            })
            .collect();
        let oods = self.ood_datasets();
        let methods = info
            .methods
            .iter()
            .enumerate()
            .map(|(m, method)| {
                let figures = |convention| self.figures(convention, m, &oods, &groups);
                let primary = figures(convention);
                MethodSummary {
                    key: method.name().to_string(),
                    label: method.row_label(),
                    params: method.clone(),
                    ood: primary.ood,
                    average: primary.average,
                    groups: primary.groups,
                    alternate: figures(convention.toggled()),
                }
            })
            .collect();
        Some(Summary {
            model: info.model.name.clone(),
            num_classes: info.model.num_classes,
            num_params: info.model.num_params,
            setup: info.setup.clone(),
            preprocess: info.input.describe(),
            batch: info.batch,
            datasets,
            id_accuracy: self.id_accuracy(),
            methods,
            elapsed_secs: self.elapsed_secs,
            cancelled: self.finished.unwrap_or(true),
            warnings: self.warnings(),
            convention,
            groups: groups
                .iter()
                .map(|(name, sets)| GroupSummary {
                    name: name.clone(),
                    sets: sets
                        .iter()
                        .map(|&d| info.datasets[d].name.clone())
                        .collect(),
                })
                .collect(),
        })
    }

    /// One method's figures under `convention`: per OOD set, the average,
    /// per group the mean over its sets that have figures.
    fn figures(
        &self,
        convention: Convention,
        method: usize,
        oods: &[usize],
        groups: &[(String, Vec<usize>)],
    ) -> Figures {
        let Some(info) = &self.info else {
            return Figures::empty(convention);
        };
        let per_set: Vec<(usize, Measures)> = oods
            .iter()
            .filter_map(|&d| self.measures_in(convention, method, d).map(|ms| (d, ms)))
            .collect();
        let groups = groups
            .iter()
            .filter_map(|(name, sets)| {
                let of_group: Vec<Measures> = per_set
                    .iter()
                    .filter(|(d, _)| sets.contains(d))
                    .map(|(_, ms)| *ms)
                    .collect();
                metrics::mean(&of_group).map(|avg| (name.clone(), avg))
            })
            .collect();
        Figures {
            convention,
            average: average(&per_set.iter().map(|(_, m)| *m).collect::<Vec<_>>()),
            ood: per_set
                .into_iter()
                .map(|(d, ms)| (info.datasets[d].name.clone(), ms))
                .collect(),
            groups,
        }
    }
}

/// The groups of `datasets`' OOD sets, in order of first appearance, each
/// with its datasets' indices (the TUI's table and the summary share it).
pub fn dataset_groups(datasets: &[crate::run::DatasetInfo]) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (d, info) in datasets.iter().enumerate() {
        let Some(group) = info.group.as_ref().filter(|_| info.role == Role::Ood) else {
            continue;
        };
        match out.iter_mut().find(|(g, _)| g == group) {
            Some((_, sets)) => sets.push(d),
            None => out.push((group.clone(), vec![d])),
        }
    }
    out
}

fn average(all: &[Measures]) -> Option<Measures> {
    if all.is_empty() {
        return None;
    }
    let n = all.len() as f64;
    Some(Measures {
        auroc: all.iter().map(|m| m.auroc).sum::<f64>() / n,
        aupr_in: all.iter().map(|m| m.aupr_in).sum::<f64>() / n,
        aupr_out: all.iter().map(|m| m.aupr_out).sum::<f64>() / n,
        fpr95: all.iter().map(|m| m.fpr95).sum::<f64>() / n,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
    pub images: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetSummary {
    pub name: String,
    pub role: Role,
    pub path: PathBuf,
    /// Images listed (after --limit).
    pub images: usize,
    /// Images scored.
    pub evaluated: usize,
    pub skipped: Vec<Skipped>,
    /// The group of an OOD set, if any.
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MethodSummary {
    pub key: String,
    pub label: String,
    pub params: Method,
    /// Per OOD set, in dataset order, under `Summary::convention`.
    pub ood: Vec<(String, Measures)>,
    pub average: Option<Measures>,
    /// Per group (in `Summary::groups` order, those with figures): the
    /// mean over its sets, under `Summary::convention`.
    pub groups: Vec<(String, Measures)>,
    /// The same figures under the other convention.
    pub alternate: Figures,
}

/// A method's figures under one convention.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub convention: Convention,
    pub ood: Vec<(String, Measures)>,
    pub average: Option<Measures>,
    pub groups: Vec<(String, Measures)>,
}

impl Figures {
    fn empty(convention: Convention) -> Figures {
        Figures {
            convention,
            ood: Vec::new(),
            average: None,
            groups: Vec::new(),
        }
    }
}

/// A group of OOD sets (OpenOOD's near and far).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    pub name: String,
    /// Its sets, in run order.
    pub sets: Vec<String>,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub model: String,
    pub num_classes: usize,
    pub num_params: usize,
    pub setup: Setup,
    /// The preprocessing in words (`InputSpec::describe`).
    pub preprocess: String,
    pub batch: usize,
    pub datasets: Vec<DatasetSummary>,
    pub id_accuracy: Option<Accuracy>,
    pub methods: Vec<MethodSummary>,
    pub elapsed_secs: f64,
    pub cancelled: bool,
    /// [`RunResults::warnings`]: numbers not to be trusted, and why.
    pub warnings: Vec<String>,
    /// The convention of the methods' `ood`, `average` and `groups`.
    pub convention: Convention,
    /// The groups of the OOD sets, in order of first appearance.
    pub groups: Vec<GroupSummary>,
}

impl Summary {
    /// The JSON written to summary.json: methods keyed by name, OOD sets
    /// keyed by name, in run order.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let mut methods = Map::new();
        for m in &self.methods {
            let mut ood = Map::new();
            for (name, ms) in &m.ood {
                ood.insert(name.clone(), json!(ms));
            }
            let mut entry = json!({
                "label": m.label,
                "params": m.params,
                "ood": Value::Object(ood),
                "average": m.average,
            });
            // The other convention's figures, keyed by its name.
            let alt = &m.alternate;
            entry[alt.convention.name()] = json!({
                "ood": alt.ood.iter().map(|(n, ms)| (n.clone(), json!(ms))).collect::<Map<_, _>>(),
                "average": alt.average,
            });
            methods.insert(m.key.clone(), entry);
        }
        // Per group and method, both conventions keyed by name.
        let mut groups = Map::new();
        for g in &self.groups {
            let mut per_method = Map::new();
            for m in &self.methods {
                let of = |figures: &[(String, Measures)]| {
                    figures
                        .iter()
                        .find(|(n, _)| *n == g.name)
                        .map(|(_, ms)| *ms)
                };
                let mut both = Map::new();
                both.insert(self.convention.name().into(), json!(of(&m.groups)));
                both.insert(
                    m.alternate.convention.name().into(),
                    json!(of(&m.alternate.groups)),
                );
                per_method.insert(m.key.clone(), Value::Object(both));
            }
            groups.insert(
                g.name.clone(),
                json!({ "sets": g.sets, "methods": Value::Object(per_method) }),
            );
        }
        let conventions: Map<String, Value> = Convention::ALL
            .iter()
            .map(|c| (c.name().to_string(), json!(c.describe())))
            .collect();
        json!({
            "model": {
                "name": self.model,
                "checkpoint": self.setup.checkpoint,
                "num_classes": self.num_classes,
                "num_params": self.num_params,
            },
            "device": self.setup.device,
            "dtype": self.setup.dtype,
            "image_size": self.setup.image_size,
            "fit": self.setup.fit,
            "preprocess": self.preprocess,
            "batch": self.batch,
            "datasets": self.datasets.iter().map(|d| json!({
                "name": d.name,
                "role": d.role,
                "path": d.path,
                "images": d.images,
                "evaluated": d.evaluated,
                "skipped_count": d.skipped.len(),
                "skipped": d.skipped,
                "group": d.group,
            })).collect::<Vec<_>>(),
            "id_top1": self.id_accuracy.map(|a| a.top1),
            "id_top5": self.id_accuracy.map(|a| a.top5),
            "id_labelled": self.id_accuracy.map(|a| a.images),
            "convention": self.convention,
            "conventions": Value::Object(conventions),
            "methods": Value::Object(methods),
            "groups": Value::Object(groups),
            "elapsed_secs": self.elapsed_secs,
            "cancelled": self.cancelled,
            "warnings": self.warnings,
        })
    }
}

/// Writes `summary.json` and `scores.csv` into `dir` (created if needed).
pub fn write_run(dir: &Path, results: &RunResults) -> Result<()> {
    write_run_in(dir, results, Convention::Paper)
}

/// [`write_run`] with `convention`'s figures first in summary.json (it
/// holds both).
pub fn write_run_in(dir: &Path, results: &RunResults, convention: Convention) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if let Some(summary) = results.summary_in(convention) {
        let path = dir.join("summary.json");
        let text = serde_json::to_string_pretty(&summary.to_json())
            .map_err(|e| Error::data(&path, e.to_string()))?;
        std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))?;
    }
    write_scores_csv(&dir.join("scores.csv"), results)
}

/// The columns of the per-image scores (`scores.csv`, `--scores`): dataset,
/// path, label, top-1 class, its probability, one column per method.
pub fn scores_header(info: &RunInfo) -> Vec<String> {
    let mut header = vec![
        "dataset".to_string(),
        "path".into(),
        "label".into(),
        "top1".into(),
        "top1_prob".into(),
    ];
    header.extend(info.methods.iter().map(|m| m.name().to_string()));
    header
}

/// One row per image, the columns of [`scores_header`].
pub fn write_scores_csv(path: &Path, results: &RunResults) -> Result<()> {
    let Some(info) = &results.info else {
        return Ok(());
    };
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    let io = |e| Error::io(path, e);
    writeln!(w, "{}", scores_header(info).join(",")).map_err(io)?;
    for (d, records) in results.records.iter().enumerate() {
        let name = csv_field(&info.datasets[d].name);
        for r in records {
            let (top1, prob) = r.top.first().copied().unwrap_or((0, f32::NAN));
            write!(
                w,
                "{name},{},{},{top1},{prob}",
                csv_field(&r.path.to_string_lossy()),
                r.label.map(|l| l.to_string()).unwrap_or_default()
            )
            .map_err(io)?;
            for s in &r.scores {
                write!(w, ",{s}").map_err(io)?;
            }
            writeln!(w).map_err(io)?;
        }
    }
    w.flush().map_err(io)
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
