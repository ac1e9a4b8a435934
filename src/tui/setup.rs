//! The setup screen: a form of model, datasets, methods and run settings
//! that becomes a `RunConfig`. Keys move a cursor over rows; ←/→ change a
//! choice, Space toggles, Enter edits a value or types a path.

use super::discover::{Candidate, Count};
use super::theme;
use crate::run::{DatasetSpec, RunConfig};
use crate::model::ModelSpec;
use crate::score::Method;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};
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

/// A hyperparameter row under a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Temperature,
    Epsilon,
    ParamsFile,
}

/// One selectable line of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Checkpoint,
    Model,
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
            class_names: base.as_ref().and_then(|b| b.class_names.clone()),
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
    pub fn on_key(&mut self, key: KeyEvent) -> SetupAction {
        if self.edit.is_some() {
            return self.on_edit_key(key);
        }
        let n = self.rows().len();
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.cursor = (self.cursor + 1).min(n - 1),
            KeyCode::PageUp => self.cursor = self.cursor.saturating_sub(10),
            KeyCode::PageDown => self.cursor = (self.cursor + 10).min(n - 1),
            KeyCode::Home | KeyCode::Char('g') => self.cursor = 0,
            KeyCode::End | KeyCode::Char('G') => self.cursor = n - 1,
            KeyCode::Left | KeyCode::Char('h') => self.cycle(-1),
            KeyCode::Right | KeyCode::Char('l') => self.cycle(1),
            KeyCode::Char(' ') => self.toggle(),
            KeyCode::Enter => return self.activate(),
            KeyCode::Char('s') => return SetupAction::Start,
            KeyCode::Char('w') => return SetupAction::Save,
            _ => {}
        }
        SetupAction::None
    }

    fn cycle(&mut self, step: isize) {
        let wrap = |i: usize, n: usize| ((i as isize + step).rem_euclid(n as isize)) as usize;
        match self.current() {
            Row::Checkpoint if !self.checkpoints.is_empty() => {
                // The last position is "none" (random weights by model name).
                let n = self.checkpoints.len() + 1;
                let i = self.checkpoint.unwrap_or(n - 1);
                let j = wrap(i, n);
                self.checkpoint = (j < n - 1).then_some(j);
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
            Row::Model => self.cycle(1),
            Row::Dtype => self.cycle(1),
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

    fn on_edit_key(&mut self, key: KeyEvent) -> SetupAction {
        let Some(buf) = self.edit.as_mut() else {
            return SetupAction::None;
        };
        match key.code {
            KeyCode::Esc => self.edit = None,
            KeyCode::Enter => {
                let text = self.edit.take().unwrap_or_default();
                return self.commit(text.trim());
            }
            KeyCode::Backspace => {
                buf.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => buf.clear(),
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => buf.push(c),
            _ => {}
        }
        SetupAction::None
    }

    fn commit(&mut self, text: &str) -> SetupAction {
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
            Row::Id | Row::AddDataset => {
                if text.is_empty() {
                    return SetupAction::None;
                }
                let path = PathBuf::from(text);
                let spec = DatasetSpec {
                    name: super::discover::name_of(&path),
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

    /// One line of help for the row under the cursor.
    pub fn hint(&self) -> &'static str {
        match self.current() {
            Row::Checkpoint => "←/→ choose a file found under checkpoints/ · Enter: type a path",
            Row::Model => "←/→ choose a variant; auto infers it from the checkpoint",
            Row::ClassOrder => {
                "Enter: wnid order of the model's outputs (e.g. the seed's val list); empty = sorted wnids"
            }
            Row::Id => "←/→ choose the in-distribution set · Enter: type a path",
            Row::IdRoot => "Enter: folder the ID list file's paths are relative to (empty = its folder)",
            Row::Ood(_) => "Space: use this set as OOD",
            Row::AddDataset => "Enter: type the path of a folder or list file to add as an OOD set",
            Row::Method(_) => "Space: run this score",
            Row::Param(_, Param::Temperature) => "Enter: edit the temperature T",
            Row::Param(_, Param::Epsilon) => {
                "Enter: edit ODIN's input perturbation (0 = the seed's setting, no backward pass)"
            }
            Row::Param(_, Param::ParamsFile) => {
                "Enter: the parameters file written by tune-mahalanobis"
            }
            Row::Device => "←/→ auto, cpu, cuda · Enter: type e.g. cuda:1",
            Row::Dtype => "←/→ f32, bf16, f16 (reduced precision is for CUDA)",
            Row::Batch => "←/→ halve or double · Enter: type",
            Row::ImageSize => "Enter: images are resized to N x N (empty = the model's default)",
            Row::Limit => "Enter: evaluate at most N images per dataset (empty = all)",
            Row::Start => "Enter or s: start the evaluation in the background",
            Row::Save => "Enter or w: write these settings to the config file",
        }
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

pub fn params_of(m: &Method) -> &'static [Param] {
    match m {
        Method::Odin { .. } => &[Param::Temperature, Param::Epsilon],
        Method::Energy { .. } | Method::GradNorm { .. } => &[Param::Temperature],
        Method::Mahalanobis { .. } => &[Param::ParamsFile],
        Method::Msp | Method::MaxLogit => &[],
    }
}

fn param_text(m: &Method, p: Param) -> String {
    match (m, p) {
        (Method::Odin { temperature, .. }, Param::Temperature)
        | (Method::Energy { temperature }, Param::Temperature)
        | (Method::GradNorm { temperature }, Param::Temperature) => temperature.to_string(),
        (Method::Odin { epsilon, .. }, Param::Epsilon) => epsilon.to_string(),
        (Method::Mahalanobis { params }, Param::ParamsFile) => params.display().to_string(),
        _ => String::new(),
    }
}

fn set_param(m: &mut Method, p: Param, text: &str) -> Result<(), String> {
    let number = |what: &str, positive: bool| -> Result<f64, String> {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && (v > 0.0 || (!positive && v >= 0.0)) => Ok(v),
            _ if positive => Err(format!("{what}: a positive number")),
            _ => Err(format!("{what}: a number >= 0")),
        }
    };
    match (m, p) {
        (Method::Odin { temperature, .. }, Param::Temperature)
        | (Method::Energy { temperature }, Param::Temperature)
        | (Method::GradNorm { temperature }, Param::Temperature) => {
            *temperature = number("temperature", true)?
        }
        (Method::Odin { epsilon, .. }, Param::Epsilon) => *epsilon = number("epsilon", false)?,
        (Method::Mahalanobis { params }, Param::ParamsFile) => *params = PathBuf::from(text),
        _ => {}
    }
    Ok(())
}

fn count_text(c: &Count) -> (String, Style) {
    match c {
        Count::Pending => ("counting…".into(), theme::dim()),
        Count::Images(n) => (format!("{} images", theme::count(*n)), Style::new()),
        Count::Error(e) => (format!("unreadable: {e}"), theme::error()),
    }
}

/// The form as text lines (section titles included) and the line of each row.
fn lines(s: &SetupState, width: usize) -> (Vec<Line<'static>>, Vec<usize>) {
    let rows = s.rows();
    let cursor = s.cursor.min(rows.len() - 1);
    let mut out: Vec<Line> = Vec::new();
    let mut at = Vec::with_capacity(rows.len());
    let label_w = 16usize;
    let mut section = "";
    for (k, row) in rows.iter().enumerate() {
        let sec = match row {
            Row::Checkpoint | Row::Model | Row::ClassOrder => "Model",
            Row::Id | Row::IdRoot | Row::Ood(_) | Row::AddDataset => "Data",
            Row::Method(_) | Row::Param(..) => "Methods",
            Row::Device | Row::Dtype | Row::Batch | Row::ImageSize | Row::Limit => "Run",
            Row::Start | Row::Save => "",
        };
        if sec != section {
            if !out.is_empty() {
                out.push(Line::raw(""));
            }
            if !sec.is_empty() {
                out.push(Line::styled(sec.to_string(), theme::title()));
            }
            section = sec;
        }
        let selected = k == cursor;
        let editing = selected && s.edit.is_some();
        let (label, value, style): (String, String, Style) = match *row {
            Row::Checkpoint => (
                "checkpoint".into(),
                match s.checkpoint {
                    Some(i) => choice(
                        &s.checkpoints[i].display().to_string(),
                        !s.checkpoints.is_empty(),
                    ),
                    None if s.checkpoints.is_empty() => {
                        "none found under checkpoints/ (Enter to type)".into()
                    }
                    None => choice("none (random weights)", true),
                },
                Style::new(),
            ),
            Row::Model => (
                "model".into(),
                choice(
                    s.model.as_deref().unwrap_or("auto (from the checkpoint)"),
                    true,
                ),
                Style::new(),
            ),
            Row::ClassOrder => (
                "class order".into(),
                s.class_order
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "sorted wnids".into()),
                Style::new(),
            ),
            Row::Id => match s.id_entry() {
                Some(d) => {
                    let (c, _) = count_text(&d.count);
                    (
                        "ID set".into(),
                        choice(&format!("{}  {}  {}", d.name, c, d.path.display()), true),
                        Style::new().fg(theme::ID),
                    )
                }
                None => (
                    "ID set".into(),
                    "none found under dataset/ (Enter to type a path)".into(),
                    theme::warn(),
                ),
            },
            Row::IdRoot => (
                "  list root".into(),
                s.id_entry()
                    .and_then(|d| d.root.as_ref().map(|r| r.display().to_string()))
                    .unwrap_or_else(|| "(the list file's folder)".into()),
                theme::dim(),
            ),
            Row::Ood(i) => {
                let d = &s.datasets[i];
                let (c, cs) = count_text(&d.count);
                let first = rows.iter().position(|r| matches!(r, Row::Ood(_))) == Some(k);
                let mut spans = vec![
                    Span::raw(format!("{} ", check(d.ood))),
                    Span::styled(
                        format!("{:<14}", theme::fit(&d.name, 14)),
                        if d.ood {
                            Style::new().fg(theme::OOD)
                        } else {
                            Style::new()
                        },
                    ),
                    Span::styled(format!("{c:>16}  "), cs),
                ];
                let used: usize = label_w + 2 + 2 + 14 + 18;
                spans.push(Span::styled(
                    theme::fit_left(&d.path.display().to_string(), width.saturating_sub(used)),
                    theme::dim(),
                ));
                out.push(row_line(
                    if first { "OOD sets" } else { "" },
                    spans,
                    selected,
                    label_w,
                ));
                at.push(out.len() - 1);
                continue;
            }
            Row::AddDataset => ("".into(), "+ add a dataset path…".into(), theme::dim()),
            Row::Method(i) => {
                let m = &s.methods[i];
                (
                    if rows.iter().position(|r| matches!(r, Row::Method(_))) == Some(k) {
                        "scores".into()
                    } else {
                        String::new()
                    },
                    format!("{} {}", check(m.enabled), m.method.label()),
                    if m.enabled {
                        Style::new().add_modifier(Modifier::BOLD)
                    } else {
                        Style::new()
                    },
                )
            }
            Row::Param(i, p) => {
                let m = &s.methods[i].method;
                let name = match p {
                    Param::Temperature => "temperature",
                    Param::Epsilon => "epsilon",
                    Param::ParamsFile => "params file",
                };
                let v = param_text(m, p);
                let v = if v.is_empty() {
                    "(none: Enter to set)".into()
                } else {
                    v
                };
                (String::new(), format!("    {name:<12} {v}"), Style::new())
            }
            Row::Device => ("device".into(), choice(&s.device, true), Style::new()),
            Row::Dtype => ("dtype".into(), choice(&s.dtype, true), Style::new()),
            Row::Batch => (
                "batch".into(),
                choice(&s.batch.to_string(), true),
                Style::new(),
            ),
            Row::ImageSize => (
                "image size".into(),
                s.image_size
                    .map(|n| format!("{n} x {n}"))
                    .unwrap_or_else(|| "the model's default".into()),
                Style::new(),
            ),
            Row::Limit => (
                "limit".into(),
                s.limit
                    .map(|n| format!("{} images per dataset", theme::count(n)))
                    .unwrap_or_else(|| "every image".into()),
                Style::new(),
            ),
            Row::Start => ("".into(), "[ Start evaluation ]".into(), theme::title()),
            Row::Save => ("".into(), "[ Write config file ]".into(), theme::title()),
        };
        let spans = if editing {
            vec![
                Span::raw("› "),
                Span::styled(
                    s.edit.clone().unwrap_or_default(),
                    Style::new().add_modifier(Modifier::UNDERLINED),
                ),
                Span::styled("█", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            ]
        } else {
            vec![Span::styled(
                theme::fit(&value, width.saturating_sub(label_w + 2)),
                style,
            )]
        };
        out.push(row_line(&label, spans, selected && !editing, label_w));
        at.push(out.len() - 1);
    }
    (out, at)
}

fn check(on: bool) -> &'static str {
    if on {
        "[x]"
    } else {
        "[ ]"
    }
}

fn choice(v: &str, arrows: bool) -> String {
    if arrows {
        format!("‹ {v} ›")
    } else {
        v.to_string()
    }
}

fn row_line(
    label: &str,
    spans: Vec<Span<'static>>,
    selected: bool,
    label_w: usize,
) -> Line<'static> {
    let marker = if selected { "▶ " } else { "  " };
    let mut all = vec![
        Span::styled(marker.to_string(), theme::title()),
        Span::styled(format!("{label:<w$}", w = label_w - 2), theme::dim()),
    ];
    all.extend(spans);
    let line = Line::from(all);
    if selected {
        line.style(Style::new().add_modifier(Modifier::BOLD))
    } else {
        line
    }
}

/// The setup screen: the form on the left, the plan (or what is missing)
/// on the right when there is room.
pub fn render(s: &SetupState, config_path: &Path, area: Rect, buf: &mut Buffer) {
    let wide = area.width >= 110;
    let [form_area, side] = if wide {
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(40)]).areas(area)
    } else {
        [area, Rect::default()]
    };
    let block = Block::bordered()
        .title(Span::styled(" Setup ", theme::title()))
        .title_bottom(Line::styled(format!(" {} ", s.hint()), theme::dim()));
    let inner = block.inner(form_area);
    block.render(form_area, buf);
    let (lines, at) = lines(s, inner.width as usize);
    let h = inner.height as usize;
    let cursor_line = at[s.cursor.min(at.len() - 1)];
    // Keep the cursor in view: scroll so it sits mid-screen when needed.
    let offset = if lines.len() <= h {
        0
    } else {
        cursor_line.saturating_sub(h / 2).min(lines.len() - h)
    };
    Paragraph::new(lines.into_iter().skip(offset).take(h).collect::<Vec<_>>()).render(inner, buf);
    if wide {
        render_plan(s, config_path, side, buf);
    }
}

fn render_plan(s: &SetupState, config_path: &Path, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(Span::styled(" Plan ", theme::title()));
    let mut lines: Vec<Line> = Vec::new();
    match s.to_config() {
        Ok(cfg) => {
            lines.push(Line::styled("Ready to start (s)", theme::best()));
            lines.push(Line::raw(""));
            if let Some(d) = s.id_entry() {
                lines.push(Line::from(vec![
                    Span::styled("ID  ", Style::new().fg(theme::ID)),
                    Span::raw(format!("{} ({})", d.name, count_text(&d.count).0)),
                ]));
            }
            for d in s.ood_entries() {
                lines.push(Line::from(vec![
                    Span::styled("OOD ", Style::new().fg(theme::OOD)),
                    Span::raw(format!("{} ({})", d.name, count_text(&d.count).0)),
                ]));
            }
            lines.push(Line::raw(""));
            let methods: Vec<String> = cfg.methods.iter().map(|m| m.to_string()).collect();
            lines.push(Line::raw(format!("scores: {}", methods.join(", "))));
            if let Some(n) = s.planned_images() {
                lines.push(Line::raw(format!(
                    "images to evaluate: {}",
                    theme::count(n)
                )));
            }
            for d in s.id_entry().into_iter().chain(s.ood_entries()) {
                if let Count::Error(_) = d.count {
                    lines.push(Line::styled(
                        format!("{} cannot be read: the run would fail", d.name),
                        theme::warn(),
                    ));
                }
            }
        }
        Err(e) => {
            lines.push(Line::styled("Not ready", theme::warn()));
            lines.push(Line::raw(""));
            lines.push(Line::raw(e));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        format!("config file: {}", config_path.display()),
        theme::dim(),
    ));
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block)
        .render(area, buf);
}
