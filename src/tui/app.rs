//! The application state: what is shown, the run in progress and its
//! results, and how keys and engine events change them. Rendering reads it
//! (`impl Widget for &App` in `ui`); nothing here draws or blocks.

use super::analysis::{Analysis, Analyzer, Snapshot};
use super::browser::{BrowserState, Sort};
use super::discover::Counter;
use super::keymap::{self, Action, Mode};
use super::preview::Previews;
use super::session::{Launcher, RunSession};
use super::setup::{SetupAction, SetupState};
use super::wake::Wake;
use crate::run::Event;
use crate::run::{Accuracy, RunResults};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind};
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

fn mode_is_modal(mode: Mode) -> bool {
    matches!(mode, Mode::Edit | Mode::Picker | Mode::Help | Mode::Confirm)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    Help,
    ConfirmQuit,
    ConfirmCancel,
    /// Start a new run over the results shown.
    ConfirmReplace,
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
    /// The threshold the user moved to on the dashboard (None: the
    /// 95%-TPR one of the method and OOD set in view).
    pub threshold: Option<f64>,
    /// Where the dashboard drew its plot and the score range across it
    /// (for the mouse).
    pub plot: std::cell::Cell<(ratatui::layout::Rect, f64, f64)>,
    /// Whether the plot last drawn was on a log axis.
    pub log_plot: std::cell::Cell<bool>,
    /// Where the header drew each tab: (first column, last column).
    pub tabs: std::cell::Cell<[(u16, u16); 4]>,
    pub browser: BrowserState,
    pub previews: Previews,
    pub config_path: PathBuf,
    pub message: Option<(String, Level)>,
    pub should_quit: bool,
    /// The dashboard's histogram on a log axis.
    pub log_scale: bool,
    /// Draw without colours (`NO_COLOR` set).
    pub no_color: bool,
    /// First line of the help overlay in view.
    pub help_scroll: usize,
    /// Something changed since the last frame.
    pub dirty: bool,
    run: Option<RunSession>,
    launcher: Box<dyn Launcher>,
    /// None: analyses are computed inline (tests).
    analyzer: Option<Analyzer>,
    counter: Option<Counter>,
    /// Set when threaded: run sessions wake the loop too.
    wake: Option<Wake>,
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
            threshold: None,
            plot: Default::default(),
            tabs: Default::default(),
            log_plot: Default::default(),
            browser: BrowserState::default(),
            previews,
            config_path,
            message: None,
            should_quit: false,
            help_scroll: 0,
            no_color: false,
            log_scale: false,
            dirty: true,
            run: None,
            launcher,
            analyzer: None,
            counter: None,
            wake: None,
            generation: 0,
            analysed_generation: 0,
            submitted: (0, 0),
            last_submit: None,
        }
    }

    /// Analyses and image counts on worker threads, and the run's events,
    /// each waking the event loop through `wake`.
    pub fn threaded(mut self, wake: Wake) -> App {
        self.analyzer = Some(Analyzer::new(wake.clone()));
        let counter = Counter::new(wake.clone());
        for (path, root) in self.setup.pending_counts() {
            counter.request(&path, root.as_deref());
        }
        self.counter = Some(counter);
        self.wake = Some(wake);
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

    /// Starts the run the setup form describes; asks first when it would
    /// replace results on screen.
    pub fn start(&mut self) {
        if self.running() {
            self.say("a run is going: cancel it first (c)", Level::Warn);
            return;
        }
        if let Err(e) = self.setup.to_config() {
            self.say(e, Level::Warn);
            return;
        }
        if self.results.info.is_some() {
            self.overlay = Some(Overlay::ConfirmReplace);
            self.dirty = true;
            return;
        }
        self.launch();
    }

    /// Starts the form's run, dropping the results shown.
    fn launch(&mut self) {
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
        let session = self.launcher.launch(config);
        self.run = Some(match &self.wake {
            Some(w) => session.waking(w.clone()),
            None => session,
        });
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
            crossterm::event::Event::Mouse(m) => self.handle_mouse(m),
            crossterm::event::Event::Resize(..) => self.dirty = true,
            _ => {}
        }
    }

    /// Clicks on the tabs, the wheel over lists, the threshold dragged on
    /// the dashboard's plot.
    pub fn handle_mouse(&mut self, m: crossterm::event::MouseEvent) {
        use crossterm::event::{MouseButton, MouseEventKind};
        let mode = self.mode();
        match m.kind {
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let up = m.kind == MouseEventKind::ScrollUp;
                let action = match mode {
                    Mode::Dashboard if up => Action::PrevMethod,
                    Mode::Dashboard => Action::NextMethod,
                    Mode::Setup | Mode::Browser | Mode::Help if up => Action::Up,
                    Mode::Setup | Mode::Browser | Mode::Help => Action::Down,
                    _ => return,
                };
                self.perform(action);
            }
            MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left) => {
                if m.row == 0 && !mode_is_modal(mode) {
                    let tabs = self.tabs.get();
                    if let Some(i) = tabs
                        .iter()
                        .position(|&(a, b)| a <= m.column && m.column <= b)
                    {
                        self.perform(Action::Go(Screen::ALL[i]));
                    }
                    return;
                }
                let (plot, _, _) = self.plot.get();
                if mode == Mode::Dashboard
                    && plot.contains(ratatui::layout::Position::new(m.column, m.row))
                {
                    self.threshold_at_column(m.column);
                    self.dirty = true;
                }
            }
            _ => {}
        }
    }

    /// Where keys are read now: an overlay, the form's edit, or the screen.
    pub fn mode(&self) -> Mode {
        match self.overlay {
            Some(Overlay::Help) => Mode::Help,
            Some(_) => Mode::Confirm,
            None if self.screen == Screen::Setup && self.setup.picker.is_some() => Mode::Picker,
            None if self.screen == Screen::Setup && self.setup.edit.is_some() => Mode::Edit,
            None => Mode::of_screen(self.screen),
        }
    }

    /// A key, through the keymap.
    pub fn handle_key(&mut self, key: KeyEvent) {
        self.dirty = true;
        let mode = self.mode();
        match keymap::lookup(mode, &key) {
            Some(action) => self.perform(action),
            None => match (mode, key.code) {
                (Mode::Edit | Mode::Picker, KeyCode::Char(c)) => self.setup.type_char(c),
                // Any other key answers no.
                (Mode::Confirm, _) => self.perform(Action::No),
                _ => {}
            },
        }
    }

    /// Does what an action asks in the current mode.
    pub fn perform(&mut self, action: Action) {
        self.dirty = true;
        match self.mode() {
            Mode::Help => {
                match action {
                    Action::Close => self.overlay = None,
                    Action::Up => self.help_scroll = self.help_scroll.saturating_sub(1),
                    Action::Down => self.help_scroll += 1,
                    Action::PageUp => self.help_scroll = self.help_scroll.saturating_sub(10),
                    Action::PageDown => self.help_scroll += 10,
                    Action::ForceQuit => self.force_quit(),
                    _ => {}
                }
                return;
            }
            Mode::Confirm => {
                let overlay = self.overlay.take();
                match (action, overlay) {
                    (Action::ForceQuit, _) => self.force_quit(),
                    (Action::Yes, Some(Overlay::ConfirmQuit)) => self.force_quit(),
                    (Action::Yes, Some(Overlay::ConfirmCancel)) => self.cancel(),
                    (Action::Yes, Some(Overlay::ConfirmReplace)) => self.launch(),
                    _ => {}
                }
                return;
            }
            Mode::Edit | Mode::Picker => {
                if action == Action::ForceQuit {
                    self.force_quit();
                } else {
                    let a = self.setup.act(action);
                    self.on_setup_action(a);
                }
                return;
            }
            _ => {}
        }
        self.message = None;
        match action {
            Action::ForceQuit => self.force_quit(),
            Action::Help => {
                self.help_scroll = 0;
                self.overlay = Some(Overlay::Help);
            }
            Action::Quit => {
                if self.running() {
                    self.overlay = Some(Overlay::ConfirmQuit);
                } else {
                    self.should_quit = true;
                }
            }
            Action::CancelRun if self.running() => self.overlay = Some(Overlay::ConfirmCancel),
            Action::Go(screen) => self.screen = screen,
            Action::NextScreen => self.screen = Screen::ALL[(self.screen.index() + 1) % 4],
            Action::PrevScreen => self.screen = Screen::ALL[(self.screen.index() + 3) % 4],
            Action::NextMethod => self.step_method(1),
            Action::PrevMethod => self.step_method(-1),
            Action::NextOod => self.step_ood(1),
            Action::PrevOod => self.step_ood(-1),
            Action::Misdetections => self.open_misdetections(),
            Action::ThresholdUp => self.move_threshold(1),
            Action::ThresholdDown => self.move_threshold(-1),
            Action::ThresholdReset => self.threshold = None,
            Action::LogScale => self.log_scale = !self.log_scale,
            Action::AroundThreshold => self.browse_threshold(),
            a => match self.screen {
                Screen::Setup => {
                    let out = self.setup.act(a);
                    self.on_setup_action(out);
                }
                Screen::Browser => self.on_browser_action(a),
                Screen::Dashboard | Screen::Anatomy => {}
            },
        }
        self.sync_views();
    }

    /// The threshold in view: the user's, else the 95%-TPR one.
    pub fn current_threshold(&self) -> Option<f64> {
        let d = self.ood_dataset()?;
        self.threshold
            .or_else(|| self.analysis.point(self.method, d).map(|p| p.threshold))
    }

    /// ID and OOD-in-view scores of the method in view, merged ascending.
    fn pooled_scores(&self) -> Vec<f64> {
        let Some(d) = self.ood_dataset() else {
            return Vec::new();
        };
        let mut pool: Vec<f64> = self.analysis.sorted(0, self.method).to_vec();
        pool.extend_from_slice(self.analysis.sorted(d, self.method));
        pool.sort_by(f64::total_cmp);
        pool
    }

    /// Moves the threshold by about 1% of the scored images (at least one),
    /// from one score to another so each step changes the counts.
    pub fn move_threshold(&mut self, step: isize) {
        let pool = self.pooled_scores();
        let Some(t) = self.current_threshold() else {
            return;
        };
        if pool.is_empty() {
            return;
        }
        let k = (pool.len() / 100).max(1) as isize;
        let r = pool.partition_point(|&x| x < t) as isize;
        let to = (r + step * k).clamp(0, pool.len() as isize - 1) as usize;
        self.threshold = Some(pool[to]);
    }

    /// Sets the threshold where the plot was clicked or dragged.
    pub fn threshold_at_column(&mut self, column: u16) {
        let (area, lo, hi) = self.plot.get();
        if area.width < 2 || hi <= lo {
            return;
        }
        let f = (column.saturating_sub(area.x)) as f64 / (area.width - 1) as f64;
        let v = lo + f.clamp(0.0, 1.0) * (hi - lo);
        // The plot's axis is the log of the scores when log scale is on.
        self.threshold = Some(if self.log_plot.get() { v.exp() } else { v });
    }

    /// Every image sorted by the method's score, the selection on the first
    /// one below the threshold: the images just around it, both sides.
    fn browse_threshold(&mut self) {
        let Some(t) = self.current_threshold() else {
            self.say("no threshold yet: waiting for both sets", Level::Info);
            return;
        };
        self.browser.misdetections = false;
        self.browser.dataset = None;
        self.browser.sort = Sort::Descending;
        self.screen = Screen::Browser;
        self.sync_views();
        let m = self.method;
        let below = self.browser.rows.iter().position(|&(d, i)| {
            self.results.records[d][i]
                .scores
                .get(m)
                .is_some_and(|&s| (s as f64) < t)
        });
        self.browser.selected = below.unwrap_or(self.browser.rows.len().saturating_sub(1));
    }

    fn force_quit(&mut self) {
        self.cancel();
        self.should_quit = true;
    }

    /// The OOD set in view's images taken for ID at the 95%-TPR threshold,
    /// most confident (highest score) first.
    fn open_misdetections(&mut self) {
        self.browser.misdetections = true;
        self.browser.dataset = self.ood_dataset();
        self.browser.sort = Sort::Descending;
        self.browser.selected = 0;
        self.screen = Screen::Browser;
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
        // Another method's scores have another scale.
        self.threshold = None;
        if n > 0 {
            self.method = (self.method as isize + step).rem_euclid(n as isize) as usize;
        }
    }

    pub fn step_ood(&mut self, step: isize) {
        self.threshold = None;
        let n = self.ood_datasets().len();
        if n > 0 {
            self.ood = (self.ood as isize + step).rem_euclid(n as isize) as usize;
        }
    }

    fn on_browser_action(&mut self, action: Action) {
        let page = self.browser.page();
        match action {
            Action::Up => self.browser.move_by(-1),
            Action::Down => self.browser.move_by(1),
            Action::PageUp => self.browser.move_by(-page),
            Action::PageDown => self.browser.move_by(page),
            Action::Top => self.browser.selected = 0,
            Action::Bottom => self.browser.selected = self.browser.rows.len().saturating_sub(1),
            Action::Sort => self.browser.sort = self.browser.sort.next(),
            Action::Reverse => {
                self.browser.sort = match self.browser.sort {
                    Sort::Descending => Sort::Ascending,
                    Sort::Ascending => Sort::Descending,
                    Sort::Evaluation => Sort::Descending,
                }
            }
            Action::CycleDataset => {
                let n = self.results.info.as_ref().map_or(0, |i| i.datasets.len());
                self.browser.cycle_dataset(n);
            }
            Action::ToggleMisdetections => self.browser.misdetections = !self.browser.misdetections,
            Action::ClearFilters => {
                self.browser.misdetections = false;
                self.browser.dataset = None;
            }
            _ => {}
        }
    }
}
