//! The setup screen: a form of model, datasets, methods and run settings
//! that becomes a `RunConfig`. Keys move a cursor over rows; ←/→ change a
//! choice, Space toggles, Enter edits a value or types a path.

use super::params::{param_text, params_of, set_param, Param};
use crate::model::ModelSpec;
use crate::run::{DatasetSpec, RunConfig};
use crate::score::Method;
use crate::tui::discover::{self, Candidate, Count};
use crate::tui::keymap::{self, Action, Mode};
use crossterm::event::{KeyCode, KeyEvent};
use std::path::{Path, PathBuf};

pub const DEVICES: [&str; 3] = ["auto", "cpu", "cuda"];
pub const DTYPES: [&str; 3] = ["f32", "bf16", "f16"];

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEntry {
    pub name: String,
    pub path: PathBuf,
    pub root: Option<PathBuf>,
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
                | Row::Id
                | Row::IdRoot
                | Row::AddDataset
                | Row::Param(_, super::params::Param::ParamsFile)
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetupState {
    pub checkpoints: Vec<PathBuf>,
    pub checkpoint: Option<usize>,
    /// None: inferred from the checkpoint.
    pub model: Option<String>,
    pub model_names: Vec<String>,
    pub class_names: Option<PathBuf>,
    pub class_order: Option<PathBuf>,
    pub datasets: Vec<DatasetEntry>,
    pub id: Option<usize>,
    pub methods: Vec<MethodEntry>,
    pub device: String,
    pub dtype: String,
    pub batch: usize,
    pub image_size: Option<usize>,
    pub limit: Option<usize>,
    /// Index into `rows()`.
    pub cursor: usize,
    /// Text being typed into the row under the cursor.
    pub edit: Option<String>,
    /// The popup list open over the row under the cursor.
    pub picker: Option<crate::tui::picker::Picker>,
    /// Names that fit the path being typed (after Tab).
    pub completions: Vec<String>,
    /// The loaded config, for the fields the form does not edit.
    base: Option<RunConfig>,
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
                count: Count::Pending,
                ood: i > 0,
            })
            .collect();
        let id = (!datasets.is_empty()).then_some(0);
        let methods = Method::KEYS
            .iter()
            .filter_map(|k| Method::from_key(k))
            .map(|m| MethodEntry {
                enabled: matches!(
                    m,
                    Method::Msp
                        | Method::Odin { .. }
                        | Method::Energy { .. }
                        | Method::GradNorm { .. }
                ),
                method: m,
            })
            .collect();
        let mut s = SetupState {
            checkpoint: (!checkpoints.is_empty()).then_some(0),
            checkpoints,
            model: None,
            model_names: crate::model::known_models(),
            class_names: None,
            class_order: None,
            datasets,
            id,
            methods,
            device: "auto".into(),
            dtype: "f32".into(),
            batch: 64,
            image_size: None,
            limit: None,
            cursor: 0,
            edit: None,
            picker: None,
            completions: Vec::new(),
            base: None,
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
        s.device = config.device.clone();
        s.dtype = config.dtype.clone();
        s.batch = config.batch;
        s.image_size = config.image_size;
        s.limit = config.limit;
        s.base = Some(config.clone());
        s.dedupe_names();
        s
    }

    fn add_checkpoint(&mut self, path: PathBuf) -> usize {
        if let Some(i) = self.checkpoints.iter().position(|c| *c == path) {
            return i;
        }
        self.checkpoints.push(path);
        self.checkpoints.len() - 1
    }

    /// The entry for `spec` (matched by path and root), added when new; the
    /// spec's name wins.
    fn add_dataset(&mut self, spec: &DatasetSpec) -> usize {
        if let Some(i) = self
            .datasets
            .iter()
            .position(|d| d.path == spec.path && d.root == spec.root)
        {
            self.datasets[i].name = spec.name.clone();
            return i;
        }
        self.datasets.push(DatasetEntry {
            name: spec.name.clone(),
            path: spec.path.clone(),
            root: spec.root.clone(),
            count: Count::Pending,
            ood: false,
        });
        self.datasets.len() - 1
    }

    /// Names must be unique: they key the metrics of each OOD set.
    fn dedupe_names(&mut self) {
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
                rows.extend(params_of(&m.method).iter().map(|&p| Row::Param(i, p)));
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
        if let Some(Method::Mahalanobis { params }) = methods
            .iter()
            .find(|m| matches!(m, Method::Mahalanobis { .. }))
        {
            if params.as_os_str().is_empty() {
                return Err("Mahalanobis needs its parameters file (from tune-mahalanobis)".into());
            }
        }
        let base = self.base.clone();
        Ok(RunConfig {
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
            },
            ood,
            methods,
            image_size: self.image_size,
            batch: self.batch,
            device: self.device.clone(),
            dtype: self.dtype.clone(),
            limit: self.limit,
            workers: base.as_ref().and_then(|b| b.workers),
        })
    }

    /// Images the run would evaluate, when every count is known.
    pub fn planned_images(&self) -> Option<usize> {
        let mut total = 0;
        for d in self.id_entry().into_iter().chain(self.ood_entries()) {
            match d.count {
                Count::Images(n) => total += self.limit.map_or(n, |l| n.min(l)),
                _ => return None,
            }
        }
        Some(total)
    }

    /// Handles a key; editing captures every key until Enter or Esc.
    /// Handles a key as the keymap reads it (tests and the app): editing
    /// captures every key until Enter or Esc.
    pub fn on_key(&mut self, key: KeyEvent) -> SetupAction {
        let mode = if self.picker.is_some() {
            Mode::Picker
        } else if self.edit.is_some() {
            Mode::Edit
        } else {
            Mode::Setup
        };
        match keymap::lookup(mode, &key) {
            Some(action) => self.act(action),
            None => {
                if let KeyCode::Char(c) = key.code {
                    self.type_char(c);
                }
                SetupAction::None
            }
        }
    }

    /// Types a character into the value being edited or the list's filter.
    pub fn type_char(&mut self, c: char) {
        if let Some(p) = self.picker.as_mut() {
            p.type_char(c);
        } else if let Some(buf) = self.edit.as_mut() {
            buf.push(c);
        }
    }

    /// Does what a form key asks; actions of other screens do nothing.
    pub fn act(&mut self, action: Action) -> SetupAction {
        let n = self.rows().len();
        if self.picker.is_some() {
            return self.on_picker(action);
        }
        if action == Action::Complete {
            self.complete_edit();
            return SetupAction::None;
        }
        if let Some(buf) = self.edit.as_mut() {
            match action {
                Action::EditCancel => {
                    self.edit = None;
                    self.completions.clear();
                }
                Action::EditConfirm => {
                    let text = self.edit.take().unwrap_or_default();
                    self.completions.clear();
                    return self.commit(text.trim());
                }
                Action::EditBackspace => {
                    buf.pop();
                }
                Action::EditClear => buf.clear(),
                _ => {}
            }
            return SetupAction::None;
        }
        match action {
            Action::Up => self.cursor = self.cursor.saturating_sub(1),
            Action::Down => self.cursor = (self.cursor + 1).min(n - 1),
            Action::NextField => self.cursor = (self.cursor + 1) % n,
            Action::PrevField => self.cursor = (self.cursor + n - 1) % n,
            Action::PageUp => self.cursor = self.cursor.saturating_sub(10),
            Action::PageDown => self.cursor = (self.cursor + 10).min(n - 1),
            Action::Top => self.cursor = 0,
            Action::Bottom => self.cursor = n - 1,
            Action::Left => return self.cycle(-1),
            Action::Right => return self.cycle(1),
            Action::Toggle => self.toggle(),
            Action::Activate => return self.activate(),
            Action::Start => return SetupAction::Start,
            Action::Save => return SetupAction::Save,
            _ => {}
        }
        SetupAction::None
    }

    /// The model changed: class names chosen for the previous one (a demo's
    /// ten names, say) would not fit it, so they are dropped, saying so.
    pub(super) fn model_changed(&mut self) -> SetupAction {
        match self.class_names.take() {
            Some(p) => SetupAction::Message(format!(
                "class names {} cleared: they were for the previous model",
                p.display()
            )),
            None => SetupAction::None,
        }
    }

    fn cycle(&mut self, step: isize) -> SetupAction {
        let wrap = |i: usize, n: usize| ((i as isize + step).rem_euclid(n as isize)) as usize;
        match self.current() {
            Row::Checkpoint if !self.checkpoints.is_empty() => {
                // The last position is "none" (random weights by model name).
                let n = self.checkpoints.len() + 1;
                let i = self.checkpoint.unwrap_or(n - 1);
                let j = wrap(i, n);
                self.checkpoint = (j < n - 1).then_some(j);
                return self.model_changed();
            }
            Row::Model => {
                let n = self.model_names.len() + 1;
                let i = self
                    .model
                    .as_ref()
                    .and_then(|m| self.model_names.iter().position(|x| x == m))
                    .map_or(0, |p| p + 1);
                let j = wrap(i, n);
                self.model = (j > 0).then(|| self.model_names[j - 1].clone());
                return self.model_changed();
            }
            Row::Id if !self.datasets.is_empty() => {
                let i = wrap(self.id.unwrap_or(0), self.datasets.len());
                self.id = Some(i);
            }
            Row::Device => self.device = cycle_str(&DEVICES, &self.device, step),
            Row::Dtype => self.dtype = cycle_str(&DTYPES, &self.dtype, step),
            Row::Batch => {
                self.batch = if step > 0 {
                    (self.batch * 2).min(4096)
                } else {
                    (self.batch / 2).max(1)
                }
            }
            Row::Ood(_) | Row::Method(_) => self.toggle(),
            _ => {}
        }
        SetupAction::None
    }

    fn toggle(&mut self) {
        match self.current() {
            Row::Ood(i) => self.datasets[i].ood = !self.datasets[i].ood,
            Row::Method(i) => self.methods[i].enabled = !self.methods[i].enabled,
            _ => {}
        }
    }

    fn activate(&mut self) -> SetupAction {
        match self.current() {
            Row::Ood(_) | Row::Method(_) => self.toggle(),
            row @ (Row::Checkpoint | Row::Model | Row::Id | Row::Device | Row::Dtype) => {
                self.picker = self.picker_for(row);
            }
            Row::Start => return SetupAction::Start,
            Row::Save => return SetupAction::Save,
            row => self.edit = Some(self.edit_text(row)),
        }
        SetupAction::None
    }

    /// What an edit of `row` starts from: paths start empty (a new entry),
    /// values from their current setting.
    fn edit_text(&self, row: Row) -> String {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match row {
            Row::ClassNames => path(&self.class_names).unwrap_or_default(),
            Row::ClassOrder => path(&self.class_order).unwrap_or_default(),
            Row::IdRoot => self
                .id_entry()
                .and_then(|d| path(&d.root))
                .unwrap_or_default(),
            Row::Param(i, p) => param_text(&self.methods[i].method, p),
            Row::Device => self.device.clone(),
            Row::Batch => self.batch.to_string(),
            Row::ImageSize => self.image_size.map(|s| s.to_string()).unwrap_or_default(),
            Row::Limit => self.limit.map(|s| s.to_string()).unwrap_or_default(),
            _ => String::new(),
        }
    }

    pub(super) fn commit(&mut self, text: &str) -> SetupAction {
        let opt_path = |t: &str| (!t.is_empty()).then(|| PathBuf::from(t));
        match self.current() {
            Row::Checkpoint => {
                if text.is_empty() {
                    return SetupAction::None;
                }
                let i = self.add_checkpoint(PathBuf::from(text));
                self.checkpoint = Some(i);
                if !Path::new(text).exists() {
                    return SetupAction::Message(format!("{text}: no such file (yet)"));
                }
            }
            Row::ClassOrder => self.class_order = opt_path(text),
            Row::ClassNames => self.class_names = opt_path(text),
            Row::Id | Row::AddDataset => {
                if text.is_empty() {
                    return SetupAction::None;
                }
                let path = PathBuf::from(text);
                let spec = DatasetSpec {
                    name: discover::name_of(&path),
                    path: path.clone(),
                    root: None,
                };
                let before = self.datasets.len();
                let i = self.add_dataset(&spec);
                if self.datasets.len() > before {
                    self.dedupe_names();
                }
                if self.current() == Row::Id {
                    self.id = Some(i);
                } else {
                    self.datasets[i].ood = true;
                }
                if self.datasets[i].count == Count::Pending {
                    return SetupAction::Count(path, None);
                }
            }
            Row::IdRoot => {
                if let Some(i) = self.id {
                    self.datasets[i].root = opt_path(text);
                    self.datasets[i].count = Count::Pending;
                    let d = &self.datasets[i];
                    return SetupAction::Count(d.path.clone(), d.root.clone());
                }
            }
            Row::Param(i, p) => {
                if let Err(e) = set_param(&mut self.methods[i].method, p, text) {
                    return SetupAction::Message(e);
                }
            }
            Row::Device if !text.is_empty() => self.device = text.to_string(),
            Row::Batch => match text.parse::<usize>() {
                Ok(b) if b > 0 => self.batch = b,
                _ => return SetupAction::Message("batch: a positive integer".into()),
            },
            Row::ImageSize => match text {
                "" => self.image_size = None,
                t => match t.parse::<usize>() {
                    Ok(s) if s >= 16 => self.image_size = Some(s),
                    _ => {
                        return SetupAction::Message(
                            "image size: an integer >= 16, or empty for the model's".into(),
                        )
                    }
                },
            },
            Row::Limit => match text {
                "" => self.limit = None,
                t => match t.parse::<usize>() {
                    Ok(l) if l > 0 => self.limit = Some(l),
                    _ => {
                        return SetupAction::Message(
                            "limit: a positive integer, or empty for every image".into(),
                        )
                    }
                },
            },
            _ => {}
        }
        SetupAction::None
    }
}

fn cycle_str(options: &[&str], current: &str, step: isize) -> String {
    let i = options.iter().position(|o| *o == current);
    let n = options.len() as isize;
    let j = match i {
        Some(i) => (i as isize + step).rem_euclid(n),
        None => 0,
    };
    options[j as usize].to_string()
}
