//! The application state: what is shown, the run in progress and its
//! results, and how keys and engine events change them. Rendering reads it
//! (`impl Widget for &App` in `ui`); nothing here draws or blocks.

use super::analysis::{Analysis, Analyzer, Snapshot};
use super::browser::{BrowserState, Sort};
use super::discover::Counter;
use super::preview::Previews;
use super::session::{Launcher, RunSession};
use super::setup::{SetupAction, SetupState};
use crate::run::Event;
use crate::run::{Accuracy, RunResults};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::Size;
use std::path::PathBuf;
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Setup,
    Dashboard,
    Anatomy,
    Browser,
}

impl Screen {
    pub const ALL: [Screen; 4] = [
        Screen::Setup,
        Screen::Dashboard,
        Screen::Anatomy,
        Screen::Browser,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Setup => "Setup",
            Screen::Dashboard => "Dashboard",
            Screen::Anatomy => "GradNorm anatomy",
            Screen::Browser => "Browser",
        }
    }

    /// The name on the tab bar.
    pub fn tab(self) -> &'static str {
        match self {
            Screen::Anatomy => "Anatomy",
            s => s.title(),
        }
    }

    fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// The smallest terminal (columns, rows) the screen can be drawn in.
    pub fn min_size(self) -> (u16, u16) {
        match self {
            Screen::Setup => (60, 14),
            Screen::Dashboard | Screen::Anatomy => (70, 20),
            Screen::Browser => (70, 16),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    Help,
    ConfirmQuit,
    ConfirmCancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The run's state as the header shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Idle,
    Running,
    Finished,
    Cancelled,
    Failed(String),
}

/// How often the analysis may be recomputed while a run goes: every
/// `REFRESH`, or less often when one takes long, so the analysis never
/// takes more than about a quarter of a core from the engine.
const REFRESH: Duration = Duration::from_millis(250);
const REFRESH_SHARE: f64 = 4.0;
/// Most engine events folded per tick, so a flood cannot starve input.
const EVENTS_PER_TICK: usize = 4096;

pub struct App {
    pub screen: Screen,
    pub overlay: Option<Overlay>,
    pub setup: SetupState,
    pub results: RunResults,
    pub analysis: Analysis,
    pub accuracy: Option<Accuracy>,
    /// Index into `RunInfo::methods`.
    pub method: usize,
    /// Position among the OOD datasets (not a dataset index).
    pub ood: usize,
    pub browser: BrowserState,
    pub previews: Previews,
    pub config_path: PathBuf,
    pub message: Option<(String, Level)>,
    pub should_quit: bool,
    /// Something changed since the last frame.
    pub dirty: bool,
    run: Option<RunSession>,
    launcher: Box<dyn Launcher>,
    /// None: analyses are computed inline (tests).
    analyzer: Option<Analyzer>,
    counter: Option<Counter>,
    /// Bumped per run, so a late analysis of an old run is dropped.
    generation: u64,
    analysed_generation: u64,
    submitted: (u64, usize),
    last_submit: Option<Instant>,
}

impl App {
    /// An app that computes analyses inline and counts nothing: tests drive
    /// it step by step. `App::threaded` is the interactive one.
    pub fn new(
        setup: SetupState,
        config_path: PathBuf,
        launcher: Box<dyn Launcher>,
        previews: Previews,
    ) -> App {
        App {
            screen: Screen::Setup,
            overlay: None,
            setup,
            results: RunResults::new(),
            analysis: Analysis::default(),
            accuracy: None,
            method: 0,
            ood: 0,
            browser: BrowserState::default(),
            previews,
            config_path,
            message: None,
            should_quit: false,
            dirty: true,
            run: None,
            launcher,
            analyzer: None,
            counter: None,
            generation: 0,
            analysed_generation: 0,
            submitted: (0, 0),
            last_submit: None,
        }
    }

    /// Analyses and image counts on worker threads.
    pub fn threaded(mut self) -> App {
        self.analyzer = Some(Analyzer::new());
        let counter = Counter::new();
        for (path, root) in self.setup.pending_counts() {
            counter.request(&path, root.as_deref());
        }
        self.counter = Some(counter);
        self
    }

    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    pub fn status(&self) -> Status {
        if let Some(e) = &self.results.failed {
            Status::Failed(e.clone())
        } else if self.running() {
            Status::Running
        } else {
            match self.results.finished {
                Some(true) => Status::Cancelled,
                Some(false) => Status::Finished,
                None if self.results.info.is_some() => Status::Cancelled,
                None => Status::Idle,
            }
        }
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

    pub fn say(&mut self, text: impl Into<String>, level: Level) {
        self.message = Some((text.into(), level));
        self.dirty = true;
    }

    /// Starts the run the setup form describes.
    pub fn start(&mut self) {
        if self.running() {
            self.say("a run is going: cancel it first (c)", Level::Warn);
            return;
        }
        let config = match self.setup.to_config() {
            Ok(c) => c,
            Err(e) => {
                self.say(e, Level::Warn);
                return;
            }
        };
        tracing::info!(?config, "starting a run from the TUI");
        self.results = RunResults::new();
        self.analysis = Analysis::default();
        self.accuracy = None;
        self.generation += 1;
        self.browser.reset();
        self.method = 0;
        self.ood = 0;
        self.run = Some(self.launcher.launch(config));
        self.screen = Screen::Dashboard;
        self.say("evaluation started", Level::Info);
    }

    pub fn save_config(&mut self) {
        match self.setup.to_config() {
            Err(e) => self.say(format!("not written: {e}"), Level::Warn),
            Ok(cfg) => match super::config::save(&self.config_path, &cfg) {
                Ok(()) => self.say(format!("wrote {}", self.config_path.display()), Level::Info),
                Err(e) => self.say(e.to_string(), Level::Error),
            },
        }
    }

    pub fn cancel(&mut self) {
        if let Some(run) = &self.run {
            run.cancel();
            self.say("cancelling: what was computed is kept", Level::Info);
        }
    }

    /// Folds one engine event in.
    pub fn apply(&mut self, event: Event) {
        match &event {
            Event::Started(_) => {
                self.analysis = Analysis::default();
                self.accuracy = None;
                self.browser.reset();
            }
            Event::Finished {
                cancelled,
                elapsed_secs,
            } => {
                let n: usize = self.results.records.iter().map(Vec::len).sum();
                let text = if *cancelled {
                    format!(
                        "cancelled after {}: {} images kept",
                        super::theme::duration(*elapsed_secs),
                        super::theme::count(n)
                    )
                } else {
                    format!(
                        "finished: {} images in {}",
                        super::theme::count(n),
                        super::theme::duration(*elapsed_secs)
                    )
                };
                self.message = Some((text, Level::Info));
                self.run = None;
            }
            Event::Failed(e) => {
                self.message = Some((format!("run failed: {e}"), Level::Error));
                self.run = None;
            }
            Event::Notice(n) => self.message = Some((n.clone(), Level::Warn)),
            _ => {}
        }
        self.results.apply(event);
        self.dirty = true;
    }

    /// Polls every source without blocking: engine events, image counts,
    /// previews, analyses. Called by the loop between input polls.
    pub fn tick(&mut self) {
        self.drain_run();
        if let Some(counter) = &self.counter {
            for (path, count) in counter.poll() {
                self.setup.set_count(&path, count);
                self.dirty = true;
            }
        }
        if self.previews.poll() {
            self.dirty = true;
        }
        self.refresh_analysis(false);
        self.sync_views();
    }

    fn drain_run(&mut self) {
        let mut folded = 0;
        while folded < EVENTS_PER_TICK {
            let Some(run) = &self.run else { return };
            match run.events().try_recv() {
                Ok(ev) => {
                    self.apply(ev);
                    folded += 1;
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.run = None;
                    if self.results.finished.is_none() && self.results.failed.is_none() {
                        self.results.failed = Some("the engine stopped without finishing".into());
                        self.say("the engine stopped without finishing", Level::Error);
                    }
                    return;
                }
            }
        }
    }

    /// Brings the analysis up to the records: inline (tests, or `now`), or
    /// by handing a snapshot to the worker at most every `REFRESH`.
    pub fn refresh_analysis(&mut self, now: bool) {
        if let Some(a) = self.analyzer.as_mut().and_then(Analyzer::poll) {
            if a.generation == self.generation {
                self.install(a);
            }
        }
        let total: usize = self.results.records.iter().map(Vec::len).sum();
        let wanted = (self.generation, total);
        let stale = self.results.info.is_some()
            && (self.analysed_generation != self.generation || self.analysis.total() != total);
        if !stale || self.submitted == wanted && !now {
            return;
        }
        let inline = now || self.analyzer.is_none();
        if !inline {
            let gap = REFRESH.max(Duration::from_secs_f64(
                REFRESH_SHARE * self.analysis.compute_secs,
            ));
            let due = !self.running() || self.last_submit.is_none_or(|t| t.elapsed() >= gap);
            if !due || self.analyzer.as_ref().is_some_and(Analyzer::busy) {
                return;
            }
        }
        let mut snap = Snapshot::of(&self.results);
        snap.generation = self.generation;
        self.submitted = wanted;
        match self.analyzer.as_mut() {
            Some(an) if !inline => {
                an.submit(snap);
                self.last_submit = Some(Instant::now());
            }
            _ => {
                let a = Analysis::compute(&snap);
                self.install(a);
            }
        }
    }

    fn install(&mut self, a: Analysis) {
        self.analysed_generation = a.generation;
        self.analysis = a;
        self.accuracy = self.results.id_accuracy();
        self.dirty = true;
    }

    /// Keeps the selections in range and the browser rows current.
    pub fn sync_views(&mut self) {
        let n = self.n_methods();
        self.method = self.method.min(n.saturating_sub(1));
        self.ood = self.ood.min(self.ood_datasets().len().saturating_sub(1));
        let ood = self.ood_dataset();
        self.browser
            .sync(&self.results, &self.analysis, self.method, ood);
    }

    /// After a frame: ask for the preview of the image in view.
    pub fn after_draw(&mut self) {
        if self.screen != Screen::Browser || self.overlay.is_some() {
            return;
        }
        let area = self.browser.preview_area.get();
        if let Some((d, i)) = self.browser.current() {
            let path = self.results.records[d][i].path.clone();
            let size = Size::new(area.width, area.height);
            if self.previews.get(&path, size).is_none() {
                self.previews.request(&path, size);
                // An inline decode is ready at once; a threaded one arrives
                // through `tick`.
                if self.previews.get(&path, size).is_some() {
                    self.dirty = true;
                }
            }
        }
    }

    pub fn handle_event(&mut self, event: crossterm::event::Event) {
        match event {
            crossterm::event::Event::Key(k) if k.kind != KeyEventKind::Release => {
                self.handle_key(k)
            }
            crossterm::event::Event::Resize(..) => self.dirty = true,
            _ => {}
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) {
        self.dirty = true;
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('q')) {
            self.cancel();
            self.should_quit = true;
            return;
        }
        if let Some(overlay) = self.overlay {
            self.on_overlay_key(overlay, key);
            return;
        }
        if self.screen == Screen::Setup && self.setup.edit.is_some() {
            let action = self.setup.on_key(key);
            self.on_setup_action(action);
            return;
        }
        self.message = None;
        match key.code {
            KeyCode::Char('?') | KeyCode::F(1) => self.overlay = Some(Overlay::Help),
            KeyCode::Char('q') => {
                if self.running() {
                    self.overlay = Some(Overlay::ConfirmQuit);
                } else {
                    self.should_quit = true;
                }
            }
            KeyCode::Char('c') if self.running() => self.overlay = Some(Overlay::ConfirmCancel),
            KeyCode::Tab => self.screen = Screen::ALL[(self.screen.index() + 1) % 4],
            KeyCode::BackTab => self.screen = Screen::ALL[(self.screen.index() + 3) % 4],
            KeyCode::Char(c @ '1'..='4') => {
                self.screen = Screen::ALL[c as usize - '1' as usize];
            }
            KeyCode::Char('m') => self.step_method(1),
            KeyCode::Char('M') => self.step_method(-1),
            KeyCode::Char('o') => self.step_ood(1),
            KeyCode::Char('O') => self.step_ood(-1),
            _ => match self.screen {
                Screen::Setup => {
                    let action = self.setup.on_key(key);
                    self.on_setup_action(action);
                }
                Screen::Dashboard => self.on_dashboard_key(key),
                Screen::Anatomy => self.on_anatomy_key(key),
                Screen::Browser => self.on_browser_key(key),
            },
        }
        self.sync_views();
    }

    fn on_overlay_key(&mut self, overlay: Overlay, key: KeyEvent) {
        let yes = matches!(
            key.code,
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter
        );
        match overlay {
            Overlay::Help => {
                if matches!(
                    key.code,
                    KeyCode::Esc
                        | KeyCode::Char('?')
                        | KeyCode::Char('q')
                        | KeyCode::Enter
                        | KeyCode::F(1)
                ) {
                    self.overlay = None;
                }
            }
            Overlay::ConfirmQuit => {
                self.overlay = None;
                if yes {
                    self.cancel();
                    self.should_quit = true;
                }
            }
            Overlay::ConfirmCancel => {
                self.overlay = None;
                if yes {
                    self.cancel();
                }
            }
        }
    }

    fn on_setup_action(&mut self, action: SetupAction) {
        match action {
            SetupAction::None => {}
            SetupAction::Start => self.start(),
            SetupAction::Save => self.save_config(),
            SetupAction::Count(path, root) => match &self.counter {
                Some(c) => c.request(&path, root.as_deref()),
                None => {
                    let count = match super::discover::count(&path, root.as_deref()) {
                        Ok(n) => super::discover::Count::Images(n),
                        Err(e) => super::discover::Count::Error(e.to_string()),
                    };
                    self.setup.set_count(&path, count);
                }
            },
            SetupAction::Message(m) => self.say(m, Level::Warn),
        }
    }

    pub fn step_method(&mut self, step: isize) {
        let n = self.n_methods();
        if n > 0 {
            self.method = (self.method as isize + step).rem_euclid(n as isize) as usize;
        }
    }

    pub fn step_ood(&mut self, step: isize) {
        let n = self.ood_datasets().len();
        if n > 0 {
            self.ood = (self.ood as isize + step).rem_euclid(n as isize) as usize;
        }
    }

    fn on_dashboard_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.step_method(-1),
            KeyCode::Down | KeyCode::Char('j') => self.step_method(1),
            KeyCode::Left | KeyCode::Char('h') => self.step_ood(-1),
            KeyCode::Right | KeyCode::Char('l') => self.step_ood(1),
            KeyCode::Enter => {
                self.browser.misdetections = true;
                self.browser.dataset = None;
                self.screen = Screen::Browser;
            }
            _ => {}
        }
    }

    fn on_anatomy_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Left | KeyCode::Char('h') | KeyCode::Up | KeyCode::Char('k') => {
                self.step_ood(-1)
            }
            KeyCode::Right | KeyCode::Char('l') | KeyCode::Down | KeyCode::Char('j') => {
                self.step_ood(1)
            }
            _ => {}
        }
    }

    fn on_browser_key(&mut self, key: KeyEvent) {
        let page = self.browser.page();
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.browser.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.browser.move_by(1),
            KeyCode::PageUp => self.browser.move_by(-page),
            KeyCode::PageDown | KeyCode::Char(' ') => self.browser.move_by(page),
            KeyCode::Home | KeyCode::Char('g') => self.browser.selected = 0,
            KeyCode::End | KeyCode::Char('G') => {
                self.browser.selected = self.browser.rows.len().saturating_sub(1)
            }
            KeyCode::Char('s') => self.browser.sort = self.browser.sort.next(),
            KeyCode::Char('r') => {
                self.browser.sort = match self.browser.sort {
                    Sort::Descending => Sort::Ascending,
                    Sort::Ascending => Sort::Descending,
                    Sort::Evaluation => Sort::Descending,
                }
            }
            KeyCode::Char('d') => {
                let n = self.results.info.as_ref().map_or(0, |i| i.datasets.len());
                self.browser.cycle_dataset(n);
            }
            KeyCode::Char('x') => self.browser.misdetections = !self.browser.misdetections,
            KeyCode::Esc => {
                self.browser.misdetections = false;
                self.browser.dataset = None;
            }
            _ => {}
        }
    }
}
