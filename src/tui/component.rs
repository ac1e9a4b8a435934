//! The one shape of a screen (as gitui's components): keys in, a drawing,
//! footer hints. Each screen reads what all share (the run shown, its
//! analysis, the method and OOD set in view) through `Ctx`, and asks the
//! app for what reaches beyond it through the `Outcome` its keys return.
//! Drawing takes `&self` and writes where things landed into `Hits`, which
//! the loop keeps for the mouse: it writes nothing back into the state.

use super::analysis::{Analysis, Thresholds};
use super::keymap::{self, Action, Mode};
use super::mouse::Hits;
use super::preview::Previews;
use super::screen::{Level, Status};
use gradnorm_core::run::{Accuracy, RunResults};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use std::path::{Path, PathBuf};

/// What every screen may read: the run shown and the selection in view.
pub struct Ctx<'a> {
    pub results: &'a RunResults,
    pub analysis: &'a Analysis,
    pub accuracy: Option<Accuracy>,
    /// Index into `RunInfo::methods`.
    pub method: usize,
    /// Position among the OOD datasets (not a dataset index).
    pub ood: usize,
    /// One threshold per (method, OOD set): every screen judges by these.
    pub thresholds: &'a Thresholds,
    pub status: Status,
    /// A run is going.
    pub running: bool,
    pub previews: &'a Previews,
    pub config_path: &'a Path,
}

impl Ctx<'_> {
    pub fn running(&self) -> bool {
        self.running
    }

    pub fn status(&self) -> Status {
        self.status.clone()
    }

    /// Dataset indices of the OOD sets of the run shown.
    pub fn ood_datasets(&self) -> Vec<usize> {
        self.results.ood_datasets()
    }

    /// The dataset index of the OOD set in view.
    pub fn ood_dataset(&self) -> Option<usize> {
        let oods = self.ood_datasets();
        oods.get(self.ood.min(oods.len().saturating_sub(1)))
            .copied()
    }

    pub fn n_methods(&self) -> usize {
        self.results.methods().len()
    }

    /// The threshold of `method` against OOD dataset `dataset`: the
    /// user's, else the 95%-TPR one.
    pub fn threshold(&self, method: usize, dataset: usize) -> Option<f64> {
        self.thresholds.get(self.analysis, method, dataset)
    }

    /// The threshold in view: the user's, else the 95%-TPR one.
    pub fn current_threshold(&self) -> Option<f64> {
        self.threshold(self.method, self.ood_dataset()?)
    }

    /// The threshold the user moved to for the pair in view (None: the
    /// 95%-TPR one).
    pub fn moved_threshold(&self) -> Option<f64> {
        self.thresholds.moved(self.method, self.ood_dataset()?)
    }
}

/// What reaches a screen: an action its mode binds, or a typed character
/// while it takes text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Action(Action),
    Char(char),
}

/// What a screen's keys ask of the app, beyond the screen's own state.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    None,
    /// Start the run the form describes.
    Start,
    /// Write the form to the config file.
    Save,
    /// Count the images of a dataset (its path and root).
    Count(PathBuf, Option<PathBuf>),
    Say(String, Level),
    /// Ask whether to keep the image size the form's `size_question` names.
    ConfirmSize,
    /// Make this fit in the background, then choose it in the form.
    MakeFit(Box<gradnorm_engine::engine::fit::FitJob>),
    /// The threshold of the method and OOD set in view (None: back to the
    /// 95%-TPR one).
    Threshold(Option<f64>),
    /// The OOD set's false positives in the browser.
    Misdetections,
    /// The browser at the images just around the threshold.
    AroundThreshold,
    /// The browser on one image: (dataset, record).
    OpenImage(usize, usize),
}

/// A screen.
pub trait Component {
    /// Where its keys are read now (its popups and text fields first).
    fn mode(&self) -> Mode;

    /// An action of its mode, or a character typed into it.
    fn keys(&mut self, ctx: &Ctx, input: Input) -> Outcome;

    /// Draws into `area`, recording in `hits` what a click can reach.
    fn draw(&self, ctx: &Ctx, area: Rect, buf: &mut Buffer, hits: &mut Hits);

    /// The footer's key hints: (keys, what, action), from the keymap.
    fn hints(&self, ctx: &Ctx) -> Vec<(&'static str, &'static str, Action)> {
        keymap::hints(self.mode(), ctx.running())
    }
}
