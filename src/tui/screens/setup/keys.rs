//! What the form's keys do: moving, choosing, toggling, typing a value
//! and committing it.

use super::params::{choices, layer_default, param_text, set_param};
use super::state::{Row, SetupAction, SetupState};
use crate::tui::component::Component;
use crate::tui::discover::{self, Count};
use crate::tui::keymap::{self, Action};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use gradnorm_core::run::DatasetSpec;
use gradnorm_core::run::{Batch, DType, Device};
use std::path::{Path, PathBuf};

impl SetupState {
    /// Handles a key; editing captures every key until Enter or Esc.
    /// Handles a key as the keymap reads it (tests and the app): editing
    /// captures every key until Enter or Esc.
    pub fn on_key(&mut self, key: KeyEvent) -> SetupAction {
        match keymap::lookup(Component::mode(self), &key) {
            Some(action) => self.act(action),
            None => {
                let chord = key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
                if let (KeyCode::Char(c), false) = (key.code, chord) {
                    self.type_char(c);
                }
                SetupAction::None
            }
        }
    }

    /// Types a character into the value being edited or the list's filter.
    pub fn type_char(&mut self, c: char) {
        if let Some(f) = self.files.as_mut() {
            f.type_char(c);
        } else if let Some(p) = self.picker.as_mut() {
            p.type_char(c);
        } else if let Some(buf) = self.edit.as_mut() {
            buf.push(c);
        }
    }

    /// Does what a form key asks; actions of other screens do nothing.
    pub fn act(&mut self, action: Action) -> SetupAction {
        let n = self.rows().len();
        if self.files.is_some() {
            return self.on_files(action);
        }
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
                    self.renaming = false;
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
            Action::Browse => return self.open_files(),
            Action::Remove => return self.remove_dataset(),
            Action::Rename => {
                let d = match self.current() {
                    Row::Ood(i) => Some(i),
                    Row::Id => self.id,
                    _ => None,
                };
                if let Some(d) = d {
                    self.renaming = true;
                    self.edit = Some(self.datasets[d].name.clone());
                }
            }
            _ => {}
        }
        SetupAction::None
    }

    /// The model changed: class names chosen for the previous one (a demo's
    /// ten names, say) would not fit it, so they are dropped (the model's
    /// own apply: ImageNet's, or the ID set's folders), and an image size
    /// the user did not type (a config's) gives way to the new model's,
    /// saying so. A size the user typed stays, unless it is far from the
    /// new model's own: then the user is asked.
    pub(super) fn model_changed(&mut self) -> SetupAction {
        // The fit is held against the new model once the checks load it.
        self.fit_unchecked = self.fit.is_some();
        let mut notes = Vec::new();
        if let Some(p) = self.class_names.take() {
            notes.push(format!("class names {} cleared", p.display()));
        }
        if !self.image_size_typed {
            if let Some(old) = self.image_size.take() {
                let new = self
                    .default_size()
                    .map_or("the model's".to_string(), |(n, _)| n.to_string());
                notes.push(format!("image size {old} -> {new}"));
            }
        } else if let Some(q) = self.image_size.and_then(|s| self.question_for(s)) {
            self.size_question = Some(q);
            return SetupAction::ConfirmSize;
        }
        if notes.is_empty() {
            SetupAction::None
        } else {
            SetupAction::Message(format!(
                "{}: they were for the previous model",
                notes.join(", ")
            ))
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
            Row::Fit if !self.fits.is_empty() => {
                // The last position is "none".
                let n = self.fits.len() + 1;
                let j = wrap(self.fit.unwrap_or(n - 1), n);
                self.fit = (j < n - 1).then_some(j);
                self.fit_unchecked = false;
            }
            Row::Id if !self.datasets.is_empty() => {
                let i = wrap(self.id.unwrap_or(0), self.datasets.len());
                self.id = Some(i);
            }
            Row::Device => self.device = cycle(&Device::CHOICES, self.device, step),
            Row::Dtype => self.dtype = cycle(&DType::CHOICES, self.dtype, step),
            Row::Batch => {
                let b = self.batch.get();
                let next = if step > 0 { b * 2 } else { b / 2 };
                self.batch = Batch::new(next.clamp(Batch::MIN, Batch::MAX)).unwrap_or(self.batch);
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
            row
            @ (Row::Checkpoint | Row::Model | Row::Fit | Row::Id | Row::Device | Row::Dtype) => {
                self.picker = self.picker_for(row);
            }
            row @ Row::Param(i, p) if choices(&self.methods[i].method, p).is_some() => {
                self.picker = self.picker_for(row);
            }
            row @ Row::Param(i, p) if layer_default(&self.methods[i].method, p).is_some() => {
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
            Row::Device => self.device.to_string(),
            Row::Batch => self.batch.to_string(),
            Row::ImageSize => self.image_size.map(|s| s.to_string()).unwrap_or_default(),
            Row::Limit => self.limit.map(|s| s.to_string()).unwrap_or_default(),
            _ => String::new(),
        }
    }

    pub(super) fn commit(&mut self, text: &str) -> SetupAction {
        if std::mem::take(&mut self.renaming) {
            return self.rename(text);
        }
        let opt_path = |t: &str| (!t.is_empty()).then(|| PathBuf::from(t));
        match self.current() {
            Row::Checkpoint => {
                if text.is_empty() {
                    return SetupAction::None;
                }
                let before = self.checkpoint;
                let i = self.add_checkpoint(PathBuf::from(text));
                self.checkpoint = Some(i);
                // Typed, or picked in the file browser: a new model as much
                // as one picked from the list.
                let out = if before != self.checkpoint {
                    self.model_changed()
                } else {
                    SetupAction::None
                };
                if !Path::new(text).exists() && out != SetupAction::ConfirmSize {
                    return SetupAction::Message(format!("{text}: no such file (yet)"));
                }
                return out;
            }
            Row::ClassOrder => self.class_order = opt_path(text),
            Row::Fit => {
                self.fit = opt_path(text).map(|p| self.add_fit(p));
                self.fit_unchecked = false;
                if let Some(f) = self.fit.map(|i| &self.fits[i]) {
                    if f.info.feature_dim == 0 {
                        return SetupAction::Message(format!(
                            "{}: not a readable fit file",
                            f.path.display()
                        ));
                    }
                }
            }
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
                    format: None,
                    group: None,
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
            // The same parsers as the flags and the config file.
            Row::Device if !text.is_empty() => match text.parse() {
                Ok(d) => self.device = d,
                Err(e) => return SetupAction::Message(format!("device: {e}")),
            },
            Row::Batch => match text.parse() {
                Ok(b) => self.batch = b,
                Err(e) => return SetupAction::Message(format!("batch: {e}")),
            },
            Row::ImageSize => match parse_optional(text) {
                Ok(s) => {
                    // Empty: the model's again, following later models too.
                    self.image_size_typed = s.is_some();
                    self.image_size = s;
                    if let Some(q) = s.and_then(|s| self.question_for(s)) {
                        self.size_question = Some(q);
                        return SetupAction::ConfirmSize;
                    }
                }
                Err(e) => {
                    return SetupAction::Message(format!(
                        "image size: {e} (or empty for the model's)"
                    ))
                }
            },
            Row::Limit => match parse_optional(text) {
                Ok(l) => self.limit = l,
                Err(e) => {
                    return SetupAction::Message(format!("limit: {e} (or empty for every image)"))
                }
            },
            _ => {}
        }
        SetupAction::None
    }
}

impl SetupState {
    /// Removes the OOD set under the cursor from the form's list (not from
    /// the disk); the ID set is chosen, not removed.
    fn remove_dataset(&mut self) -> SetupAction {
        let Row::Ood(i) = self.current() else {
            return SetupAction::Message("d removes an OOD set: move to one".into());
        };
        let gone = self.datasets.remove(i);
        if let Some(id) = self.id.as_mut() {
            if *id > i {
                *id -= 1;
            }
        }
        SetupAction::Message(format!(
            "removed {} ({}) from the form; its files stay",
            gone.name,
            gone.path.display()
        ))
    }

    /// Renames the dataset under the cursor; names stay unique (they key
    /// each OOD set's metrics).
    fn rename(&mut self, name: &str) -> SetupAction {
        let d = match self.current() {
            Row::Ood(i) => i,
            Row::Id => match self.id {
                Some(i) => i,
                None => return SetupAction::None,
            },
            _ => return SetupAction::None,
        };
        if name.is_empty() {
            return SetupAction::Message("a dataset needs a name".into());
        }
        if self
            .datasets
            .iter()
            .enumerate()
            .any(|(j, x)| j != d && x.name == name)
        {
            return SetupAction::Message(format!("{name}: another dataset has this name"));
        }
        self.datasets[d].name = name.to_string();
        SetupAction::None
    }
}

fn cycle<T: Copy + PartialEq>(options: &[T], current: T, step: isize) -> T {
    let n = options.len() as isize;
    let j = match options.iter().position(|o| *o == current) {
        Some(i) => (i as isize + step).rem_euclid(n),
        None => 0,
    };
    options[j as usize]
}

/// `None` for empty text, else the text parsed.
fn parse_optional<T: std::str::FromStr>(text: &str) -> Result<Option<T>, T::Err> {
    if text.is_empty() {
        Ok(None)
    } else {
        text.parse().map(Some)
    }
}
