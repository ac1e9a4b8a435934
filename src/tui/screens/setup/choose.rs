//! The form's choosers: Enter on the model, checkpoint, ID set, device,
//! dtype, a choice parameter or a layer (the model's weights) opens a popup
//! list filtered as one types; Tab completes a path being typed.

use super::state::{Row, SetupAction, SetupState};
use crate::tui::files::{FileBrowser, Outcome, Pick};
use crate::tui::keymap::Action;
use crate::tui::picker::{complete_path, Picked, Picker};
use gradnorm_core::run::{DType, DatasetSpec, Device};

/// The fit list's last item.
pub(crate) const MAKE_FIT: &str = "make a fit from a labelled set…";

impl SetupState {
    /// A popup list for `row`, or None when the row is typed or toggled.
    pub(super) fn picker_for(&self, row: Row) -> Option<Picker> {
        let p = match row {
            Row::Checkpoint => {
                let mut items: Vec<String> = self
                    .checkpoints
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect();
                items.push("none (random weights)".into());
                let at = self.checkpoint.unwrap_or(items.len() - 1);
                Picker::new(
                    "checkpoint · type to filter, or a path (Tab completes)",
                    items,
                    Some(at),
                )
                .with_free_text()
            }
            Row::Model => {
                let mut items = vec!["auto (from the checkpoint)".to_string()];
                items.extend(self.model_names.iter().cloned());
                let at = self
                    .model
                    .as_ref()
                    .and_then(|m| self.model_names.iter().position(|x| x == m))
                    .map_or(0, |p| p + 1);
                Picker::new("model · type to filter", items, Some(at))
            }
            Row::Fit => {
                let mut items: Vec<String> =
                    (0..self.fits.len()).map(|i| self.fit_label(i)).collect();
                items.push("none".into());
                items.push(MAKE_FIT.into());
                let at = self.fit.unwrap_or(self.fits.len());
                Picker::new(
                    "fit · for ReAct, DICE, KNN, ViM, ... · type to filter, or a path",
                    items,
                    Some(at),
                )
                .with_free_text()
            }
            Row::Id => {
                let items = self.set_items();
                Picker::new(
                    "ID set · type to filter, or a path (Tab completes)",
                    items,
                    self.id,
                )
                .with_free_text()
            }
            Row::Device => {
                let at = Device::CHOICES.iter().position(|d| *d == self.device);
                Picker::new(
                    "device · or type one (cuda:1)",
                    Device::CHOICES.map(|d| d.to_string()).to_vec(),
                    at,
                )
                .with_free_text()
            }
            Row::Dtype => {
                let at = DType::CHOICES.iter().position(|d| *d == self.dtype);
                Picker::new(
                    "dtype",
                    DType::CHOICES.map(|d| d.name().to_string()).to_vec(),
                    at,
                )
            }
            Row::Param(i, p)
                if super::params::layer_default(&self.methods[i].method, p).is_some() =>
            {
                self.layer_picker(i, p)
            }
            Row::Param(i, p) => {
                let m = &self.methods[i].method;
                let names = super::params::choices(m, p)?;
                let at = names.iter().position(|n| m.values()[p].to_string() == *n);
                let title = format!("{} · {}", m.def().params[p].name, m.def().params[p].help);
                Picker::new(&title, names.iter().map(|n| n.to_string()).collect(), at)
            }
            _ => return None,
        };
        Some(p)
    }

    /// The model's weight layers for a `layer=` parameter, its default
    /// (the head) first; a name may be typed before the checks have listed
    /// them (the run's checks then judge it).
    fn layer_picker(&self, i: usize, p: super::params::Param) -> Picker {
        let m = &self.methods[i].method;
        let default = super::params::layer_default(m, p).unwrap_or_default();
        let mut items = vec![default.to_string()];
        items.extend(self.layers().iter().cloned());
        let current = m.values()[p].to_string();
        let at = items.iter().position(|n| *n == current);
        let def = &m.def().params[p];
        let title = if self.layers().is_empty() {
            format!(
                "{} · type a name: the model's layers are listed once its checks answer",
                def.name
            )
        } else {
            format!(
                "{} · {} layers, type to filter · {}",
                def.name,
                items.len() - 1,
                def.help
            )
        };
        Picker::new(title, items, at).with_free_text()
    }

    /// A fit as its list shows it: the file, the model it was made for and
    /// on how many images, and whether that is the form's model.
    pub(crate) fn fit_label(&self, i: usize) -> String {
        let f = &self.fits[i];
        let mark = match self.fit_matches(i) {
            Some(true) => "this model · ",
            Some(false) => "other model · ",
            None => "",
        };
        if f.info.feature_dim == 0 {
            return format!("{} · not a readable fit file", f.path.display());
        }
        // The model first: the list is read for it; long paths keep
        // their file names.
        format!(
            "{mark}{}, {} images · {}",
            f.info.model.name,
            crate::tui::theme::count(f.info.images as usize),
            crate::tui::theme::fit_path(&f.path, 28)
        )
    }

    /// The form's sets as a picker lists them: name, then path.
    fn set_items(&self) -> Vec<String> {
        self.datasets
            .iter()
            .map(|d| format!("{}  {}", d.name, d.path.display()))
            .collect()
    }

    /// The list of labelled sets a fit can be made from: the form's sets,
    /// or a path typed.
    fn fit_set_picker(&self) -> Picker {
        let items = self.set_items();
        Picker::new(
            "make a fit from · a labelled set (list file or ImageFolder), or a path",
            items,
            Some(0),
        )
        .with_free_text()
    }

    /// The fit job of the set picked (`i` among the form's sets, or a path).
    fn make_fit_from(&mut self, picked: Picked) -> SetupAction {
        let set = match picked {
            Picked::Item(i) => match self.datasets.get(i) {
                Some(d) => DatasetSpec {
                    name: d.name.clone(),
                    path: d.path.clone(),
                    root: d.root.clone(),
                    format: d.format,
                    group: None,
                },
                None => return SetupAction::None,
            },
            Picked::Text(t) => {
                let path = std::path::PathBuf::from(t.trim());
                DatasetSpec {
                    name: crate::tui::discover::name_of(&path),
                    path,
                    root: None,
                    format: None,
                    group: None,
                }
            }
        };
        match self.fit_job(set) {
            Ok(job) => SetupAction::MakeFit(Box::new(job)),
            Err(e) => SetupAction::Message(e),
        }
    }

    /// A key while the popup list is open.
    pub(super) fn on_picker(&mut self, action: Action) -> SetupAction {
        let paths = self.current_takes_path();
        let Some(p) = self.picker.as_mut() else {
            return SetupAction::None;
        };
        if p.edit(action) {
            return SetupAction::None;
        }
        match action {
            Action::Complete if p.free_text && paths => {
                let (text, fits) = complete_path(&p.filter);
                p.filter = text;
                p.selected = 0;
                self.completions = fits;
            }
            Action::EditCancel => {
                self.picker = None;
                self.picking_fit_set = false;
            }
            Action::EditConfirm => {
                let picked = p.pick();
                self.picker = None;
                self.completions.clear();
                if std::mem::take(&mut self.picking_fit_set) {
                    return match picked {
                        Some(x) => self.make_fit_from(x),
                        None => SetupAction::Message("nothing matches: Esc closes the list".into()),
                    };
                }
                return match picked {
                    Some(x) => self.apply_pick(x),
                    None => SetupAction::Message("nothing matches: Esc closes the list".into()),
                };
            }
            _ => {}
        }
        SetupAction::None
    }

    fn apply_pick(&mut self, picked: Picked) -> SetupAction {
        let row = self.current();
        match (row, picked) {
            (_, Picked::Text(t)) => return self.commit(&t),
            (Row::Checkpoint, Picked::Item(i)) => {
                let before = self.checkpoint;
                self.checkpoint = (i < self.checkpoints.len()).then_some(i);
                if before != self.checkpoint {
                    return self.model_changed();
                }
            }
            (Row::Model, Picked::Item(i)) => {
                let model = (i > 0).then(|| self.model_names[i - 1].clone());
                if model != self.model {
                    self.model = model;
                    return self.model_changed();
                }
            }
            (Row::Fit, Picked::Item(i)) if i == self.fits.len() + 1 => {
                if self.fitting.is_some() {
                    return SetupAction::Message("a fit is being made: c cancels it".into());
                }
                self.picker = Some(self.fit_set_picker());
                self.picking_fit_set = true;
            }
            (Row::Fit, Picked::Item(i)) => {
                self.fit = (i < self.fits.len()).then_some(i);
                self.fit_unchecked = false;
            }
            (Row::Id, Picked::Item(i)) => self.id = Some(i),
            (Row::Device, Picked::Item(i)) => self.device = Device::CHOICES[i],
            (Row::Dtype, Picked::Item(i)) => self.dtype = DType::CHOICES[i],
            (Row::Param(m, p), Picked::Item(k))
                if super::params::layer_default(&self.methods[m].method, p).is_some() =>
            {
                let name = match k {
                    0 => super::params::layer_default(&self.methods[m].method, p)
                        .unwrap_or_default()
                        .to_string(),
                    k => self.layers().get(k - 1).cloned().unwrap_or_default(),
                };
                let method = &mut self.methods[m].method;
                if let Err(e) = super::params::set_param(method, p, &name) {
                    return SetupAction::Message(e);
                }
            }
            (Row::Param(m, p), Picked::Item(k)) => {
                let method = &mut self.methods[m].method;
                if let Some(name) = super::params::choices(method, p).and_then(|n| n.get(k)) {
                    if let Err(e) = super::params::set_param(method, p, name) {
                        return SetupAction::Message(e);
                    }
                }
            }
            _ => {}
        }
        SetupAction::None
    }

    /// Tab while typing a path: complete it from the disk.
    pub(super) fn complete_edit(&mut self) {
        if !self.current_takes_path() {
            return;
        }
        if let Some(text) = self.edit.as_mut() {
            let (done, fits) = complete_path(text);
            *text = done;
            self.completions = fits;
        }
    }
}

impl SetupState {
    /// `f` on a path row: a file browser from the row's current path, or,
    /// for a row with none, where the last pick was.
    pub(super) fn open_files(&mut self) -> SetupAction {
        if !self.current_takes_path() {
            return SetupAction::Message("f browses files on a path row".into());
        }
        let row_path = match self.current() {
            Row::Checkpoint => self.checkpoint.map(|i| self.checkpoints[i].clone()),
            Row::ClassNames => self.class_names.clone(),
            Row::ClassOrder => self.class_order.clone(),
            Row::Fit => self.fit_path().map(|p| p.to_path_buf()),
            Row::Id | Row::AddDataset => self.id_entry().map(|d| d.path.clone()),
            Row::IdRoot => self.id_entry().and_then(|d| d.root.clone()),
            _ => None,
        };
        let start = row_path.or_else(|| self.last_browsed.clone());
        let pick = match self.current() {
            Row::Id | Row::AddDataset => Pick::Dataset,
            Row::IdRoot => Pick::Folder,
            _ => Pick::File,
        };
        self.files = Some(FileBrowser::open(start.as_deref(), pick));
        SetupAction::None
    }

    /// A key while the file browser is open; a pick is committed as if
    /// typed into the row.
    pub(super) fn on_files(&mut self, action: Action) -> SetupAction {
        let Some(f) = self.files.as_mut() else {
            return SetupAction::None;
        };
        if let Some(step) = crate::tui::keymap::list_step(action) {
            f.move_by(step);
            return SetupAction::None;
        }
        match action {
            Action::EditBackspace => f.backspace(),
            Action::Right => f.right(),
            Action::EditClear => {
                f.filter.clear();
                f.selected = 0;
            }
            Action::EditCancel => self.files = None,
            Action::EditConfirm => {
                if let Outcome::Picked(path) = f.enter() {
                    // A folder picked is where the next browse starts; a
                    // file's folder, for a file.
                    self.last_browsed = Some(f.dir.clone());
                    self.files = None;
                    return self.commit(&path.display().to_string());
                }
            }
            _ => {}
        }
        SetupAction::None
    }
}
