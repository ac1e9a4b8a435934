//! What other modules and tests read of the app, and the little they may
//! set from outside (a test's store folder, the `NO_COLOR` setting).

use super::{App, Level, Overlay, Screen};
use crate::tui::analysis::{Analysis, Thresholds};
use crate::tui::browser::BrowserState;
use crate::tui::component::Component;
use crate::tui::runs::RunsState;
use crate::tui::setup::SetupState;
use gradnorm_core::run::RunResults;
use ratatui::layout::Rect;

impl App {
    pub fn screen(&self) -> Screen {
        self.screen
    }

    pub fn overlay(&self) -> Option<Overlay> {
        self.overlay
    }

    pub fn setup(&self) -> &SetupState {
        &self.setup
    }

    pub fn setup_mut(&mut self) -> &mut SetupState {
        self.dirty = true;
        &mut self.setup
    }

    pub fn browser(&self) -> &BrowserState {
        &self.browser
    }

    pub fn browser_mut(&mut self) -> &mut BrowserState {
        self.dirty = true;
        &mut self.browser
    }

    pub fn runs(&self) -> &RunsState {
        &self.runs
    }

    pub fn runs_mut(&mut self) -> &mut RunsState {
        self.dirty = true;
        &mut self.runs
    }

    pub fn results(&self) -> &RunResults {
        &self.results
    }

    pub fn analysis(&self) -> &Analysis {
        &self.analysis
    }

    /// Index into `RunInfo::methods` of the method in view.
    pub fn method(&self) -> usize {
        self.method
    }

    /// Position among the OOD datasets of the set in view.
    pub fn ood(&self) -> usize {
        self.ood
    }

    /// Shows method `method` against the OOD set at position `ood` (kept in
    /// range by `sync_views`).
    pub fn set_view(&mut self, method: usize, ood: usize) {
        (self.method, self.ood) = (method, ood);
        self.dirty = true;
    }

    /// The threshold the user moved to for the method and OOD set in view
    /// (None: the 95%-TPR one).
    pub fn threshold(&self) -> Option<f64> {
        self.ctx().moved_threshold()
    }

    /// Every threshold moved, per (method, OOD set).
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    pub fn message(&self) -> Option<&(String, Level)> {
        self.message.as_ref()
    }

    pub fn clear_message(&mut self) {
        self.message = None;
        self.dirty = true;
    }

    pub fn should_quit(&self) -> bool {
        self.should_quit
    }

    /// Something changed since the last frame.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    pub fn no_color(&self) -> bool {
        self.no_color
    }

    /// Draw without colours (`NO_COLOR`).
    pub fn set_no_color(&mut self, no_color: bool) {
        self.no_color = no_color;
        self.dirty = true;
    }

    /// First line of the help overlay in view.
    pub fn help_scroll(&self) -> usize {
        self.help_scroll
    }

    /// Where the last frame drew the dashboard's plot and the score range
    /// across it.
    pub fn plot(&self) -> (Rect, f64, f64) {
        let p = self.hits.plot;
        (p.area, p.lo, p.hi)
    }

    /// Where the last frame drew each tab: (first column, last column).
    pub fn tabs(&self) -> &[(u16, u16)] {
        &self.hits.tabs
    }

    /// The screen in view, as a component.
    pub fn component(&self) -> &dyn Component {
        match self.screen {
            Screen::Setup => &self.setup,
            Screen::Dashboard => &self.dashboard,
            Screen::Anatomy => &self.anatomy,
            Screen::Browser => &self.browser,
            Screen::Inspect => &self.inspect,
            Screen::Runs => &self.runs,
        }
    }

    /// The method compared with the one in view on the Inspect screen.
    pub fn second_method(&self) -> usize {
        self.inspect.second_method(&self.ctx())
    }

    /// The threshold in view: the user's, else the 95%-TPR one.
    pub fn current_threshold(&self) -> Option<f64> {
        self.ctx().current_threshold()
    }
}
