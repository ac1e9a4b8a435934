//! Over 600 lines on purpose: the fields and the one place every answer
//! is folded into them (engine events, the checks, the fit, the run store)
//! stay together, because a new run resets results, thresholds, views and
//! the fit job as one step; keys (`input`) and reads (`access`) are apart.
//!
//! The application state: what is shown, the run in progress and its
//! results, and how engine events change them; `input` holds what keys,
//! the mouse and actions do, `access` what others read of it. Drawing
//! (`tui::render`) reads it and returns where things landed, which
//! `App::draw` keeps for the mouse; nothing here draws or blocks.

mod input;

mod access;

use super::analysis::{Analysis, Analyzer, Snapshot, Thresholds};
use super::anatomy::Anatomy;
use super::browser::BrowserState;
use super::component::Ctx;
use super::dashboard::Dashboard;
use super::discover::Counter;
use super::fitting::{FitMsg, FitTask};
use super::inspect::Inspect;
use super::mouse::Hits;
use super::preflight::{Answer, Checker};
use super::preview::Previews;
pub use super::screen::{Level, Overlay, Screen, Status};
use super::screens::runs::{Outcome as RunsOutcome, RunsState};
use super::session::{Launcher, RunSession};
use super::setup::SetupState;
use super::wake::Wake;
use gradnorm_core::run::Event;
use gradnorm_core::run::{Accuracy, RunResults};
use ratatui::layout::Size;
use std::path::PathBuf;
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

/// How often the analysis may be recomputed while a run goes: every
/// `REFRESH`, or less often when one takes long, so the analysis never
/// takes more than about a quarter of a core from the engine.
const REFRESH: Duration = Duration::from_millis(250);
const REFRESH_SHARE: f64 = 4.0;
/// Most engine events folded per tick, so a flood cannot starve input.
const EVENTS_PER_TICK: usize = 4096;

/// The app: every field is its own; screens read what they share through
/// `Ctx`, other modules and tests through the methods below.
pub struct App {
    screen: Screen,
    overlay: Option<Overlay>,
    setup: SetupState,
    dashboard: Dashboard,
    anatomy: Anatomy,
    browser: BrowserState,
    inspect: Inspect,
    /// The Runs screen (the run store, `./runs` unless `App::store`).
    runs: RunsState,
    results: RunResults,
    analysis: Analysis,
    accuracy: Option<Accuracy>,
    /// Index into `RunInfo::methods`.
    method: usize,
    /// Position among the OOD datasets (not a dataset index).
    ood: usize,
    /// The thresholds moved on the dashboard, per (method, OOD set); the
    /// others are the 95%-TPR ones. Every screen reads these.
    thresholds: Thresholds,
    /// Where the last frame put what the mouse reaches (kept by `draw`
    /// from what drawing returned).
    hits: Hits,
    previews: Previews,
    config_path: PathBuf,
    message: Option<(String, Level)>,
    should_quit: bool,
    /// The convention of the metrics table (`p` toggles it).
    convention: gradnorm_core::metrics::Convention,
    /// Draw without colours (`NO_COLOR` set).
    no_color: bool,
    /// First line of the help overlay in view.
    help_scroll: usize,
    /// Something changed since the last frame.
    dirty: bool,
    run: Option<RunSession>,
    launcher: Box<dyn Launcher>,
    /// None: analyses are computed inline (tests).
    analyzer: Option<Analyzer>,
    counter: Option<Counter>,
    /// The engine's pre-run checks of the form's run.
    checker: Checker,
    /// A fit being made from the form.
    fitting: Option<FitTask>,
    /// Set when threaded: run sessions wake the loop too.
    wake: Option<Wake>,
    /// Bumped per run, so a late analysis of an old run is dropped.
    generation: u64,
    analysed_generation: u64,
    submitted: (u64, usize),
    last_submit: Option<Instant>,
}

/// What the screens share, borrowed field by field (so a screen's own
/// state can be borrowed mutably beside it).
macro_rules! ctx {
    ($app:expr) => {
        Ctx {
            results: &$app.results,
            analysis: &$app.analysis,
            accuracy: $app.accuracy,
            method: $app.method,
            ood: $app.ood,
            thresholds: &$app.thresholds,
            status: $app.status(),
            running: $app.run.is_some(),
            previews: &$app.previews,
            config_path: &$app.config_path,
        }
    };
}
use ctx;

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
            thresholds: Thresholds::default(),
            hits: Hits::default(),
            dashboard: Dashboard::default(),
            anatomy: Anatomy,
            inspect: Inspect::default(),
            browser: BrowserState::default(),
            runs: RunsState::new(gradnorm_engine::store::DEFAULT_DIR.into()),
            previews,
            config_path,
            message: None,
            should_quit: false,
            help_scroll: 0,
            no_color: false,
            convention: gradnorm_core::metrics::Convention::default(),
            dirty: true,
            run: None,
            launcher,
            analyzer: None,
            counter: None,
            checker: Checker::inline(),
            fitting: None,
            wake: None,
            generation: 0,
            analysed_generation: 0,
            submitted: (0, 0),
            last_submit: None,
        }
    }

    /// The Runs screen on the store in `dir` (before `threaded`).
    pub fn store(mut self, dir: PathBuf) -> App {
        self.runs = RunsState::new(dir);
        self
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
        self.checker = Checker::threaded(wake.clone());
        self.runs.threaded(wake.clone());
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

    /// What the screens read.
    pub fn ctx(&self) -> Ctx<'_> {
        ctx!(self)
    }

    /// Dataset indices of the OOD sets of the run shown.
    pub fn ood_datasets(&self) -> Vec<usize> {
        self.ctx().ood_datasets()
    }

    /// The dataset index of the OOD set in view.
    pub fn ood_dataset(&self) -> Option<usize> {
        self.ctx().ood_dataset()
    }

    pub fn n_methods(&self) -> usize {
        self.ctx().n_methods()
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
        if self.fitting.is_some() {
            self.say(
                "a fit is being made: wait for it, or c cancels it",
                Level::Warn,
            );
            return;
        }
        // Known to fail at once: the results on screen stay.
        if let Some(first) = self.setup.problems().and_then(|p| p.first()) {
            self.say(format!("cannot start: {first}"), Level::Warn);
            // A file fixed since is seen at the next try.
            self.check_form(true);
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
    pub(crate) fn launch(&mut self) {
        let config = match self.setup.to_config() {
            Ok(c) => c,
            Err(e) => {
                self.say(e, Level::Warn);
                return;
            }
        };
        tracing::info!(?config, "starting a run from the TUI");
        self.replace_results(RunResults::new());
        let session = self.launcher.launch(config);
        self.run = Some(match &self.wake {
            Some(w) => session.waking(w.clone()),
            None => session,
        });
        self.screen = Screen::Dashboard;
        self.say("evaluation started", Level::Info);
    }

    /// Shows `results` in place of those on screen, with fresh views (an
    /// analysis of the old run arriving late is dropped).
    fn replace_results(&mut self, results: RunResults) {
        self.results = results;
        self.analysis = Analysis::default();
        self.accuracy = None;
        self.generation += 1;
        self.browser.reset();
        self.thresholds.clear();
        self.method = 0;
        self.ood = 0;
    }

    pub fn save_config(&mut self) {
        match self.setup.to_config() {
            Err(e) => self.say(format!("not written: {e}"), Level::Warn),
            Ok(cfg) => match gradnorm_core::run::file::save(&self.config_path, &cfg) {
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

    /// Closes the cancel question of a run that has just ended (nothing is
    /// left to cancel), and says so.
    fn unasked(&mut self) -> &'static str {
        if matches!(self.overlay, Some(Overlay::ConfirmCancel)) {
            self.overlay = None;
            " (it ended before your answer: nothing to cancel)"
        } else {
            ""
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
                self.message = Some((text + self.unasked(), Level::Info));
                self.run = None;
            }
            Event::Failed(e) => {
                let text = format!("run failed: {e}{}", self.unasked());
                self.message = Some((text, Level::Error));
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
        if self.screen == Screen::Runs {
            self.runs.follow();
        }
        self.poll_runs();
        self.poll_fit();
        self.sync_check();
        self.refresh_analysis(false);
        self.sync_views();
    }

    /// Keeps the form's pre-run checks current: the answers that arrived,
    /// and a new question when the form's run changed (on the Setup screen
    /// only, and not while a run goes: the check loads the model).
    pub(crate) fn sync_check(&mut self) {
        self.check_form(false);
    }

    /// `sync_check`; `again`: ask about an unchanged form too (the files
    /// it names may have changed), the last answer shown until the new one.
    pub(crate) fn check_form(&mut self, again: bool) {
        for answer in self.checker.poll() {
            self.take_answer(answer);
        }
        if self.screen != Screen::Setup || self.running() {
            return;
        }
        if !again && self.setup.problems().is_some() {
            return;
        }
        if let Ok(config) = self.setup.to_config() {
            if again {
                self.checker.forget();
            }
            if let Some(answer) = self.checker.ask(&config) {
                self.take_answer(answer);
            }
        }
    }

    /// What the checks answered: the problems for the Plan panel, and the
    /// model's stamp for the fit row (a fit left from another model is
    /// cleared, saying so).
    fn take_answer(&mut self, (config, checks): Answer) {
        if let Some(stamp) = checks.model.clone() {
            if let Some(note) = self.setup.model_loaded(config.model.clone(), stamp) {
                self.say(note, Level::Warn);
            }
        }
        self.setup.set_checked((config, checks));
        self.dirty = true;
    }

    /// Makes `job`'s fit on its own thread (one at a time).
    pub fn make_fit(&mut self, job: gradnorm_engine::engine::fit::FitJob) {
        if self.fitting.is_some() {
            self.say("a fit is being made: c cancels it", Level::Warn);
            return;
        }
        let out = job.out.display().to_string();
        let wake = self.wake.clone().unwrap_or_else(Wake::none);
        match FitTask::spawn(job, wake) {
            Ok(task) => {
                self.setup
                    .fit_progress(Some(format!("making {out}: loading the model")));
                self.say(
                    format!("making a fit from {} (c cancels) into {out}", task.set),
                    Level::Info,
                );
                self.fitting = Some(task);
            }
            Err(e) => self.say(format!("cannot start the fit: {e}"), Level::Error),
        }
    }

    /// Cancels the fit being made, if any.
    pub fn cancel_fit(&mut self) -> bool {
        match &self.fitting {
            Some(task) => {
                task.cancel();
                self.say("cancelling the fit", Level::Info);
                true
            }
            None => false,
        }
    }

    /// Whether a fit is being made.
    pub fn fitting(&self) -> bool {
        self.fitting.is_some()
    }

    /// Folds in what the fit's thread said.
    pub(crate) fn poll_fit(&mut self) {
        let Some(task) = &self.fitting else { return };
        let out = task.out.display().to_string();
        for msg in task.poll() {
            self.dirty = true;
            match msg {
                FitMsg::Step(gradnorm_engine::engine::fit::FitStep::Started {
                    model,
                    images,
                    size,
                    ..
                }) => self.setup.fit_progress(Some(format!(
                    "making {out}: {model} on {} images at {size} px",
                    super::theme::count(images)
                ))),
                FitMsg::Step(gradnorm_engine::engine::fit::FitStep::Images { done, total }) => {
                    self.setup.fit_progress(Some(format!(
                        "making {out}: {}/{} images",
                        super::theme::count(done),
                        super::theme::count(total)
                    )))
                }
                FitMsg::Made(found, skipped) => {
                    let text = format!(
                        "fit written: {} ({} images{})",
                        found.path.display(),
                        super::theme::count(found.info.images as usize),
                        if skipped > 0 {
                            format!(", {skipped} unreadable skipped")
                        } else {
                            String::new()
                        }
                    );
                    self.setup.fit_made(found);
                    self.fitting = None;
                    self.say(text, Level::Info);
                    // The new file answers the checks' "needs a fit".
                    self.check_form(true);
                    return;
                }
                FitMsg::Failed(e) => {
                    self.setup.fit_progress(None);
                    self.fitting = None;
                    self.say(format!("fit not made: {e}"), Level::Error);
                    return;
                }
            }
        }
    }

    /// Acts on what the Runs screen's store jobs answered.
    pub(crate) fn poll_runs(&mut self) {
        for outcome in self.runs.poll() {
            match outcome {
                RunsOutcome::Open(id, results) => self.reopen(id, *results),
                RunsOutcome::Say(text, error) => {
                    self.say(text, if error { Level::Error } else { Level::Info })
                }
                RunsOutcome::Redraw => {}
            }
            self.dirty = true;
        }
    }

    /// Shows a stored run as if its events had just arrived.
    fn reopen(&mut self, id: i64, mut results: RunResults) {
        if self.running() {
            self.say("a run is going: cancel it first (c)", Level::Warn);
            return;
        }
        if results.info.is_none() {
            self.say(
                format!("run {id} never started: nothing to show"),
                Level::Warn,
            );
            return;
        }
        let done: usize = results.records.iter().map(Vec::len).sum::<usize>()
            + results.skipped.iter().map(Vec::len).sum::<usize>();
        let total = results
            .info
            .as_ref()
            .map_or(0, |i| i.datasets.iter().map(|d| d.count).sum());
        results.progress = Some(gradnorm_core::run::Progress {
            dataset: 0,
            done,
            total,
            run_done: done,
            run_total: total,
            images_per_sec: done as f64 / results.elapsed_secs.max(1e-9),
            elapsed_secs: results.elapsed_secs,
        });
        self.replace_results(results);
        self.screen = Screen::Dashboard;
        self.say(format!("run {id} reopened from the run store"), Level::Info);
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
            if a.generation == self.generation && a.convention == self.convention {
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
        snap.convention = self.convention;
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

    /// The metrics in the other convention, recomputed at once (an
    /// analysis in flight in the old one is dropped when it arrives).
    pub fn toggle_convention(&mut self) {
        self.convention = self.convention.toggled();
        if self.results.info.is_some() {
            let mut snap = Snapshot::of(&self.results);
            snap.generation = self.generation;
            snap.convention = self.convention;
            self.install(Analysis::compute(&snap));
        }
        self.dirty = true;
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
        self.browser.sync(
            &self.results,
            &self.analysis,
            &self.thresholds,
            self.method,
            ood,
        );
    }

    /// Keeps where the frame just drawn put things (for the mouse and the
    /// browser's paging); the frame is up to date.
    pub(crate) fn keep_layout(&mut self, hits: Hits) {
        if let Some((page, offset)) = hits.list {
            self.browser.placed(page, offset);
        }
        self.hits = hits;
        self.dirty = false;
    }

    /// After a frame: ask for the preview of the image in view.
    pub fn after_draw(&mut self) {
        self.sync_check();
        if self.screen != Screen::Browser || self.overlay.is_some() {
            return;
        }
        let area = self.hits.preview;
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
}
