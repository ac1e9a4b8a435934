//! Over 600 lines: the form's fields and the two conversions that must
//! agree (`from_config` and `to_config`), with what a model change, a
//! check's answer and a fit job do to them; keys (`keys`), lists
//! (`choose`) and drawing (`view`) are apart.
//!
//! The setup screen: a form of model, datasets, methods and run settings
//! that becomes a `RunConfig`. Keys move a cursor over rows; ←/→ change a
//! choice, Space toggles, Enter edits a value or types a path.

use super::params::{is_path, params_of, Param};
use crate::tui::discover::{Candidate, Count, FitInfo, FoundFit};
use gradnorm_core::method::registry;
use gradnorm_core::run::{Batch, DType, DatasetSpec, Device, ImageSize, Limit, RunConfig};
use gradnorm_engine::engine::fit::FitJob;
use gradnorm_engine::model::ModelSpec;
use gradnorm_engine::score::mahalanobis::ModelStamp;
use gradnorm_engine::score::Method;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEntry {
    pub name: String,
    pub path: PathBuf,
    pub root: Option<PathBuf>,
    /// A config's list format and group, kept for the run it starts.
    pub format: Option<gradnorm_core::run::ListFormat>,
    pub group: Option<String>,
    pub count: Count,
    /// Selected as an OOD set (ignored for the entry chosen as ID).
    pub ood: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MethodEntry {
    pub enabled: bool,
    /// The method with its hyperparameters (kept while disabled).
    pub method: Method,
}

/// One selectable line of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Checkpoint,
    Model,
    /// A file of class names (one a line); none: ImageNet's, or the ID
    /// folders' names when they match the model.
    ClassNames,
    ClassOrder,
    /// The fit file of the fit-based methods (ReAct, KNN, ViM, ...).
    Fit,
    Id,
    IdRoot,
    Ood(usize),
    AddDataset,
    Method(usize),
    Param(usize, Param),
    Device,
    Dtype,
    Batch,
    ImageSize,
    Limit,
    Start,
    Save,
}

impl Row {
    /// Whether the row's value is typed as a path (Tab completes it).
    pub fn takes_path(self) -> bool {
        matches!(
            self,
            Row::Checkpoint
                | Row::ClassNames
                | Row::ClassOrder
                | Row::Fit
                | Row::Id
                | Row::IdRoot
                | Row::AddDataset
        )
    }
}

/// What a key in the form asks the app to do.
#[derive(Debug, Clone, PartialEq)]
pub enum SetupAction {
    None,
    Start,
    Save,
    /// Count the images of a newly typed dataset.
    Count(PathBuf, Option<PathBuf>),
    Message(String),
    /// Ask whether to keep an image size far from the model's own
    /// (`SetupState::size_question`).
    ConfirmSize,
    /// Make a fit (in the background) and select it when written.
    MakeFit(Box<gradnorm_engine::engine::fit::FitJob>),
}

/// An image size the user asked for, far from the model's own: kept only
/// when confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeQuestion {
    pub size: usize,
    /// The model's own size, and the model's name.
    pub own: usize,
    pub model: String,
}

impl SizeQuestion {
    /// A size less than half or more than twice the model's own: the model
    /// sees its objects at a scale it never learnt (EfficientNet-Lite0 at
    /// 64 px falls to 19% top-1), so the user is asked first.
    pub fn far(size: usize, own: usize) -> bool {
        2 * size < own || size > 2 * own
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetupState {
    pub(crate) checkpoints: Vec<PathBuf>,
    pub(crate) checkpoint: Option<usize>,
    /// None: inferred from the checkpoint.
    pub model: Option<String>,
    pub(crate) model_names: Vec<String>,
    pub(crate) class_names: Option<PathBuf>,
    pub(crate) class_order: Option<PathBuf>,
    pub datasets: Vec<DatasetEntry>,
    pub(crate) id: Option<usize>,
    pub methods: Vec<MethodEntry>,
    pub device: Device,
    pub(crate) dtype: DType,
    pub(crate) batch: Batch,
    pub image_size: Option<ImageSize>,
    /// The image size was typed here (kept when the model changes); one
    /// from a config follows the model.
    pub(crate) image_size_typed: bool,
    pub(crate) limit: Option<Limit>,
    /// Index into `rows()`.
    pub cursor: usize,
    /// Text being typed into the row under the cursor.
    pub(crate) edit: Option<String>,
    /// The popup list open over the row under the cursor.
    pub picker: Option<crate::tui::picker::Picker>,
    /// The file browser open for the row under the cursor's path.
    pub files: Option<crate::tui::files::FileBrowser>,
    /// The folder of the last pick in the file browser: it opens there next.
    pub(crate) last_browsed: Option<PathBuf>,
    /// The text being typed is the dataset's new name, not a path.
    pub(crate) renaming: bool,
    /// Names that fit the path being typed (after Tab).
    pub(crate) completions: Vec<String>,
    /// The loaded config, for the fields the form does not edit.
    base: Option<RunConfig>,
    /// A size far from the model's own, waiting for the user's answer.
    pub size_question: Option<SizeQuestion>,
    /// The engine's pre-run checks of a config of this form and what they
    /// found (empty: it would start).
    checked: Option<crate::tui::preflight::Answer>,
    /// The fit files found or given, and the one the run reads.
    pub(crate) fits: Vec<FoundFit>,
    pub fit: Option<usize>,
    /// Where a fit made from the form is written.
    pub(crate) fit_dir: PathBuf,
    /// The stamp of the form's model once the checks loaded it: which fits
    /// were made for it.
    model_stamp: Option<(ModelSpec, ModelStamp)>,
    /// The model changed since the chosen fit was held against it: the
    /// next stamp decides whether the fit stays.
    pub(crate) fit_unchecked: bool,
    /// The popup list open is the labelled set to make a fit from.
    pub(crate) picking_fit_set: bool,
    /// A fit being made: what it says of its progress.
    pub fitting: Option<String>,
}

impl SetupState {
    /// A form over what was found on disk, with the paper's methods.
    pub fn new(checkpoints: Vec<PathBuf>, candidates: Vec<Candidate>) -> SetupState {
        let datasets: Vec<DatasetEntry> = candidates
            .into_iter()
            .enumerate()
            .map(|(i, c)| DatasetEntry {
                name: c.name,
                path: c.path,
                root: c.root,
                format: None,
                group: None,
                count: Count::Pending,
                ood: i > 0,
            })
            .collect();
        let id = (!datasets.is_empty()).then_some(0);
        let methods = registry::METHODS
            .iter()
            .filter_map(|d| Method::from_key(d.key))
            .map(|m| MethodEntry {
                enabled: registry::DEFAULT_METHODS.contains(&m.key()),
                method: m,
            })
            .collect();
        let mut s = SetupState {
            checkpoint: (!checkpoints.is_empty()).then_some(0),
            checkpoints,
            model: None,
            model_names: gradnorm_engine::model::known_models(),
            class_names: None,
            class_order: None,
            datasets,
            id,
            methods,
            device: Device::Auto,
            dtype: DType::F32,
            batch: Batch::new(64).expect("64 is a valid batch"),
            image_size: None,
            image_size_typed: false,
            limit: None,
            cursor: 0,
            edit: None,
            picker: None,
            files: None,
            last_browsed: None,
            renaming: false,
            completions: Vec::new(),
            base: None,
            size_question: None,
            checked: None,
            fits: Vec::new(),
            fit: None,
            fit_dir: PathBuf::from(crate::tui::discover::FIT_DIR),
            model_stamp: None,
            fit_unchecked: false,
            picking_fit_set: false,
            fitting: None,
        };
        s.dedupe_names();
        s
    }

    /// The form filled from a config, with what was found on disk offered too.
    pub fn from_config(
        config: &RunConfig,
        checkpoints: Vec<PathBuf>,
        candidates: Vec<Candidate>,
    ) -> SetupState {
        let mut s = SetupState::new(checkpoints, candidates);
        for d in &mut s.datasets {
            d.ood = false;
        }
        s.checkpoint = config
            .model
            .checkpoint
            .as_ref()
            .map(|c| s.add_checkpoint(c.clone()));
        s.model = config.model.name.clone();
        s.class_names = config.class_names.clone();
        s.class_order = config.class_order.clone();
        s.fit = config.fit.clone().map(|f| s.add_fit(f));
        // The config's sets first, in its order (the run's dataset order),
        // then the others found on disk.
        let mut order = vec![s.add_dataset(&config.id)];
        for spec in &config.ood {
            let i = s.add_dataset(spec);
            s.datasets[i].ood = true;
            order.push(i);
        }
        let rest: Vec<usize> = (0..s.datasets.len())
            .filter(|i| !order.contains(i))
            .collect();
        order.extend(rest);
        s.datasets = order.iter().map(|&i| s.datasets[i].clone()).collect();
        s.id = Some(0);
        for entry in &mut s.methods {
            entry.enabled = false;
            if let Some(m) = config
                .methods
                .iter()
                .find(|m| m.key() == entry.method.key())
            {
                entry.enabled = true;
                entry.method = m.clone();
            }
        }
        s.device = config.device;
        s.dtype = config.dtype;
        s.batch = config.batch;
        s.image_size = config.image_size;
        s.limit = config.limit;
        s.base = Some(config.clone());
        s.dedupe_names();
        s
    }

    /// The fit files offered (found on disk), and where a fit made from
    /// the form goes.
    pub fn with_fits(mut self, found: Vec<FoundFit>, dir: PathBuf) -> SetupState {
        let chosen = self.fit.map(|i| self.fits[i].path.clone());
        for f in found {
            if !self.fits.iter().any(|x| same_file(&x.path, &f.path)) {
                self.fits.push(f);
            }
        }
        self.fit = chosen.map(|p| self.add_fit(p));
        self.fit_dir = dir;
        self
    }

    /// The entry of the fit file `path`, added when new (read when it is
    /// one: a missing or foreign file stays, for the checks to name).
    pub(crate) fn add_fit(&mut self, path: PathBuf) -> usize {
        if let Some(i) = self.fits.iter().position(|f| same_file(&f.path, &path)) {
            return i;
        }
        let found = crate::tui::discover::fit_file(&path).unwrap_or(FoundFit {
            path,
            info: FitInfo {
                model: ModelStamp {
                    name: "(not a readable fit file)".into(),
                    num_classes: 0,
                    tap_dims: Vec::new(),
                    image_size: 0,
                    head_fingerprint: String::new(),
                },
                feature_dim: 0,
                images: 0,
                classes: 0,
            },
        });
        self.fits.push(found);
        self.fits.len() - 1
    }

    /// The chosen fit file.
    pub fn fit_path(&self) -> Option<&Path> {
        self.fit.map(|i| self.fits[i].path.as_path())
    }

    /// Whether fit `i` was made for the form's model: None until the
    /// checks have loaded that model.
    pub fn fit_matches(&self, i: usize) -> Option<bool> {
        let (spec, stamp) = self.model_stamp.as_ref()?;
        if *spec != self.model_spec() {
            return None;
        }
        Some(self.fits.get(i)?.info.model.same_model(stamp))
    }

    /// The model the form names (checkpoint and name).
    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            name: self.model.clone(),
            checkpoint: self.checkpoint.map(|i| self.checkpoints[i].clone()),
        }
    }

    /// The checks loaded `spec`'s model, whose stamp is `stamp`. After a
    /// model change, a chosen fit made for another model is cleared
    /// (saying so).
    pub fn model_loaded(&mut self, spec: ModelSpec, stamp: ModelStamp) -> Option<String> {
        self.model_stamp = Some((spec, stamp));
        if !self.fit_unchecked {
            return None;
        }
        let i = self.fit?;
        let matches = self.fit_matches(i)?;
        self.fit_unchecked = false;
        if matches {
            return None;
        }
        self.fit = None;
        let f = &self.fits[i];
        let others = (0..self.fits.len())
            .filter(|&j| self.fit_matches(j) == Some(true))
            .count();
        Some(format!(
            "fit {} cleared: it was made for {}, not this model ({})",
            f.path.display(),
            f.info.model.name,
            match others {
                0 => "Enter on the fit row makes one".to_string(),
                n => format!("{n} found fit(s) match it"),
            }
        ))
    }

    /// A fit is being made: `text` says how far it is.
    pub fn fit_progress(&mut self, text: Option<String>) {
        self.fitting = text;
    }

    /// A fit was made and written: offered and chosen.
    pub fn fit_made(&mut self, found: FoundFit) {
        let i = match self.fits.iter().position(|f| f.path == found.path) {
            Some(i) => {
                self.fits[i] = found;
                i
            }
            None => {
                self.fits.push(found);
                self.fits.len() - 1
            }
        };
        self.fit = Some(i);
        self.fit_unchecked = false;
        self.fitting = None;
    }

    /// The job that makes a fit of the form's model (its device, dtype,
    /// input, batch and limit) from the labelled set `set`, written under
    /// the form's fit folder with a name of its own.
    pub fn fit_job(&self, set: DatasetSpec) -> Result<FitJob, String> {
        let checkpoint = self.checkpoint.map(|i| self.checkpoints[i].clone());
        if checkpoint.is_none() && self.model.is_none() {
            return Err("choose a checkpoint (or a model) to make a fit for".into());
        }
        let base = self.base.as_ref();
        let model = self
            .model_name()
            .or_else(|| checkpoint.as_deref().map(crate::tui::discover::name_of))
            .unwrap_or_else(|| "model".into());
        let stem: String = format!("{model}-{}", set.name)
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut out = self.fit_dir.join(format!("{stem}.safetensors"));
        let mut k = 2;
        while out.exists() || self.fits.iter().any(|f| f.path == out) {
            out = self.fit_dir.join(format!("{stem}-{k}.safetensors"));
            k += 1;
        }
        Ok(FitJob {
            model: self.model_spec(),
            device: self.device,
            dtype: self.dtype,
            image_size: self.run_image_size().map(|s| s.get()),
            preprocess: base.and_then(|b| b.preprocess),
            sets: vec![set],
            limit: self.limit.map(|l| l.get()),
            bank: gradnorm_engine::score::fit::DEFAULT_BANK,
            nac_rows: gradnorm_engine::score::nac::DEFAULT_FIT_ROWS,
            batch: self.batch.get(),
            workers: base.and_then(|b| b.workers).map_or(0, |w| w.get()),
            out,
        })
    }

    /// The image size the run is given: the form's, else the demo
    /// checkpoint's training size (the engine would take BiT's 480).
    fn run_image_size(&self) -> Option<ImageSize> {
        self.image_size.or_else(|| {
            let c = self.checkpoints.get(self.checkpoint?)?;
            ImageSize::new(gradnorm_engine::demo::trained_image_size(c)?).ok()
        })
    }

    pub(super) fn add_checkpoint(&mut self, path: PathBuf) -> usize {
        if let Some(i) = self.checkpoints.iter().position(|c| *c == path) {
            return i;
        }
        self.checkpoints.push(path);
        self.checkpoints.len() - 1
    }

    /// The entry for `spec` (matched by path and root), added when new; the
    /// spec's name wins.
    pub(super) fn add_dataset(&mut self, spec: &DatasetSpec) -> usize {
        if let Some(i) = self
            .datasets
            .iter()
            .position(|d| d.path == spec.path && d.root == spec.root)
        {
            self.datasets[i].name = spec.name.clone();
            self.datasets[i].format = spec.format;
            self.datasets[i].group = spec.group.clone();
            return i;
        }
        self.datasets.push(DatasetEntry {
            name: spec.name.clone(),
            path: spec.path.clone(),
            root: spec.root.clone(),
            format: spec.format,
            group: spec.group.clone(),
            count: Count::Pending,
            ood: false,
        });
        self.datasets.len() - 1
    }

    /// Names must be unique: they key the metrics of each OOD set.
    pub(super) fn dedupe_names(&mut self) {
        for i in 1..self.datasets.len() {
            let base = self.datasets[i].name.clone();
            let mut k = 2;
            while self.datasets[..i]
                .iter()
                .any(|d| d.name == self.datasets[i].name)
            {
                self.datasets[i].name = format!("{base}-{k}");
                k += 1;
            }
        }
    }

    /// Stores an image count that the counter reports.
    pub fn set_count(&mut self, path: &Path, count: Count) {
        for d in self.datasets.iter_mut().filter(|d| d.path == path) {
            d.count = count.clone();
        }
    }

    /// Datasets whose count is still unknown.
    pub fn pending_counts(&self) -> Vec<(PathBuf, Option<PathBuf>)> {
        self.datasets
            .iter()
            .filter(|d| d.count == Count::Pending)
            .map(|d| (d.path.clone(), d.root.clone()))
            .collect()
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = vec![
            Row::Checkpoint,
            Row::Model,
            Row::ClassNames,
            Row::ClassOrder,
            Row::Fit,
            Row::Id,
            Row::IdRoot,
        ];
        rows.extend(
            (0..self.datasets.len())
                .filter(|&i| Some(i) != self.id)
                .map(Row::Ood),
        );
        rows.push(Row::AddDataset);
        for (i, m) in self.methods.iter().enumerate() {
            rows.push(Row::Method(i));
            if m.enabled {
                rows.extend(params_of(&m.method).map(|p| Row::Param(i, p)));
            }
        }
        rows.extend([
            Row::Device,
            Row::Dtype,
            Row::Batch,
            Row::ImageSize,
            Row::Limit,
            Row::Start,
            Row::Save,
        ]);
        rows
    }

    /// Whether the row under the cursor takes a path (Tab completes it).
    pub fn current_takes_path(&self) -> bool {
        match self.current() {
            Row::Param(i, p) => is_path(&self.methods[i].method, p),
            row => row.takes_path(),
        }
    }

    /// The row under the cursor.
    pub fn current(&self) -> Row {
        let rows = self.rows();
        rows[self.cursor.min(rows.len() - 1)]
    }

    /// Puts the cursor on `row` when the form has it.
    pub fn select(&mut self, row: Row) -> bool {
        match self.rows().iter().position(|r| *r == row) {
            Some(i) => {
                self.cursor = i;
                true
            }
            None => false,
        }
    }

    pub fn id_entry(&self) -> Option<&DatasetEntry> {
        self.id.and_then(|i| self.datasets.get(i))
    }

    pub fn ood_entries(&self) -> impl Iterator<Item = &DatasetEntry> {
        self.datasets
            .iter()
            .enumerate()
            .filter(move |(i, d)| Some(*i) != self.id && d.ood)
            .map(|(_, d)| d)
    }

    /// The run this form describes, or what is missing.
    pub fn to_config(&self) -> Result<RunConfig, String> {
        let checkpoint = self.checkpoint.map(|i| self.checkpoints[i].clone());
        if checkpoint.is_none() && self.model.is_none() {
            return Err("choose a checkpoint (or a model name for random weights)".into());
        }
        let id = self.id_entry().ok_or("choose an ID dataset")?;
        let ood: Vec<DatasetSpec> = self
            .ood_entries()
            .map(|d| DatasetSpec {
                name: d.name.clone(),
                path: d.path.clone(),
                root: d.root.clone(),
                format: d.format,
                group: d.group.clone(),
            })
            .collect();
        if ood.is_empty() {
            return Err("select at least one OOD dataset (Space)".into());
        }
        let methods: Vec<Method> = self
            .methods
            .iter()
            .filter(|m| m.enabled)
            .map(|m| m.method.clone())
            .collect();
        if methods.is_empty() {
            return Err("select at least one method (Space)".into());
        }
        for m in &methods {
            m.require_paths().map_err(|e| e.0)?;
        }
        let base = self.base.clone();
        let config = RunConfig {
            model: ModelSpec {
                name: self.model.clone(),
                checkpoint,
            },
            class_names: self.class_names.clone(),
            class_order: self.class_order.clone(),
            id: DatasetSpec {
                name: id.name.clone(),
                path: id.path.clone(),
                root: id.root.clone(),
                format: id.format,
                group: None,
            },
            ood,
            methods,
            fit: self.fit_path().map(Path::to_path_buf),
            preprocess: base.as_ref().and_then(|b| b.preprocess),
            // The demo checkpoint runs at its training size unless told
            // (the engine would take BiT's 480).
            image_size: self.run_image_size(),
            batch: self.batch,
            device: self.device,
            dtype: self.dtype,
            limit: self.limit,
            workers: base.as_ref().and_then(|b| b.workers),
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// The model the form names, or the one its checkpoint's file name
    /// suggests (the longest known name inside it, ignoring case, - and _).
    pub fn model_name(&self) -> Option<String> {
        if self.model.is_some() {
            return self.model.clone();
        }
        let file = self.checkpoints.get(self.checkpoint?)?.file_name()?;
        let squash = |s: &str| s.to_lowercase().replace(['-', '_'], "");
        let file = squash(&file.to_string_lossy());
        self.model_names
            .iter()
            .filter(|m| file.contains(&squash(m)))
            .max_by_key(|m| m.len())
            .cloned()
    }

    /// The image size the run gets with none set: the demo checkpoint's
    /// training size, else the named (or guessed) model's default, with
    /// that model's name.
    pub fn default_size(&self) -> Option<(usize, String)> {
        let checkpoint = self.checkpoint.map(|i| &self.checkpoints[i]);
        if let Some(n) = checkpoint.and_then(|c| gradnorm_engine::demo::trained_image_size(c)) {
            return Some((n, "the demo model".into()));
        }
        let name = self.model_name()?;
        gradnorm_engine::model::default_input(&name).map(|i| (i.size, name))
    }

    /// The question to ask about `size` when it is far from the model's
    /// own (None when near, or when the model is not known without reading
    /// its checkpoint).
    pub(super) fn question_for(&self, size: ImageSize) -> Option<SizeQuestion> {
        let (own, model) = self.default_size()?;
        SizeQuestion::far(size.get(), own).then_some(SizeQuestion {
            size: size.get(),
            own,
            model,
        })
    }

    /// The answer to `size_question`: keep the size asked for, or take the
    /// model's own again.
    pub fn answer_size(&mut self, keep: bool) -> Option<String> {
        let q = self.size_question.take()?;
        if keep {
            return Some(format!("image size {} kept for {}", q.size, q.model));
        }
        self.image_size = None;
        self.image_size_typed = false;
        Some(format!("image size {} ({}'s own)", q.own, q.model))
    }

    /// Keeps what the engine's checks said of `checked.0`.
    pub fn set_checked(&mut self, checked: crate::tui::preflight::Answer) {
        self.checked = Some(checked);
    }

    /// What the engine's checks found wrong with the form's run: None
    /// while they have not answered for it (or it is incomplete), empty
    /// when it would start.
    pub fn problems(&self) -> Option<&[String]> {
        let config = self.to_config().ok()?;
        match &self.checked {
            Some((c, found)) if *c == config => Some(found.problems.as_slice()),
            _ => None,
        }
    }

    /// The weight layers of the form's model (`layer=` takes one), from the
    /// last check of a run with that model: empty until one answered.
    pub fn layers(&self) -> &[String] {
        let model = self.to_config().ok().map(|c| c.model);
        match &self.checked {
            Some((c, found)) if Some(&c.model) == model.as_ref() => &found.layers,
            _ => &[],
        }
    }

    /// Images the run would evaluate, when every count is known.
    pub fn planned_images(&self) -> Option<usize> {
        let mut total = 0;
        for d in self.id_entry().into_iter().chain(self.ood_entries()) {
            match d.count {
                Count::Images(n) => total += self.limit.map_or(n, |l| n.min(l.get())),
                _ => return None,
            }
        }
        Some(total)
    }
}

/// The same file under two spellings (a config's absolute path, the
/// relative one found on disk).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}
