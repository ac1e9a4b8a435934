//! What keys (through the keymap), the mouse and actions do to the app.

use super::{ctx, App, Level, Overlay, Screen};
use crate::tui::browser::Sort;
use crate::tui::component::{Component, Ctx, Input, Outcome};
use crate::tui::keymap::{self, Action, Mode};
use crate::tui::mouse::Target;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// A key without Ctrl or Alt (Shift is part of the character).
fn plain(key: &KeyEvent) -> bool {
    !key.modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
}

fn mode_is_modal(mode: Mode) -> bool {
    matches!(
        mode,
        Mode::Edit | Mode::Picker | Mode::Files | Mode::Help | Mode::Confirm
    )
}

impl App {
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
                    Mode::Setup | Mode::Browser | Mode::Inspect | Mode::Runs | Mode::Help if up => {
                        Action::Up
                    }
                    Mode::Setup | Mode::Browser | Mode::Inspect | Mode::Runs | Mode::Help => {
                        Action::Down
                    }
                    _ => return,
                };
                self.perform(action);
            }
            MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left) => {
                let down = matches!(m.kind, MouseEventKind::Down(_));
                if let Some(t) = self.hits.targets.at(m.column, m.row).filter(|_| down) {
                    self.click(t);
                    return;
                }
                if mode_is_modal(mode) {
                    return;
                }
                if m.row == 0 {
                    if let Some(screen) = self.hits.tab_at(m.column) {
                        self.perform(Action::Go(screen));
                    }
                    return;
                }
                let plot = self.hits.plot.area;
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

    /// A click on something the last frame drew: rows select (a second
    /// click on the form's row activates it), buttons and hints act, list
    /// items are picked.
    pub fn click(&mut self, target: Target) {
        self.dirty = true;
        match target {
            Target::Act(a) => self.perform(a),
            Target::Method(m) => {
                if m != self.method {
                    self.step_method(m as isize - self.method as isize);
                }
            }
            Target::Ood(pos) => {
                if pos != self.ood {
                    self.step_ood(pos as isize - self.ood as isize);
                }
            }
            Target::FormRow(r) => {
                use crate::tui::setup::Row;
                let rows = self.setup.rows();
                let button = matches!(rows.get(r), Some(Row::Start | Row::Save));
                if self.setup.cursor == r || button {
                    self.setup.cursor = r;
                    self.perform(Action::Activate);
                } else {
                    self.setup.cursor = r;
                }
            }
            Target::ListItem(k) => {
                if let Some((p, _)) = self.browser.class_picker.as_mut() {
                    p.selected = k;
                } else if let Some(f) = self.setup.files.as_mut() {
                    f.selected = k;
                } else if let Some(p) = self.setup.picker.as_mut() {
                    p.selected = k;
                }
                self.perform(Action::EditConfirm);
            }
            Target::Disagreement(k) => {
                if self.inspect.click(k) {
                    self.perform(Action::Activate);
                }
            }
            Target::ImageRow(k) => {
                self.browser.selected = k.min(self.browser.rows.len().saturating_sub(1));
            }
        }
    }

    /// Where keys are read now: an overlay, or the screen (its popups and
    /// text fields first).
    pub fn mode(&self) -> Mode {
        match self.overlay {
            Some(Overlay::Help) => Mode::Help,
            Some(_) => Mode::Confirm,
            None => self.component().mode(),
        }
    }

    /// The footer's key hints: the overlay's, else the screen's.
    pub fn hints(&self) -> Vec<(&'static str, &'static str, Action)> {
        match self.overlay {
            Some(_) => keymap::hints(self.mode(), self.running()),
            None => self.component().hints(&self.ctx()),
        }
    }

    /// Hands `input` to the screen in view and does what it asks.
    fn screen_input(&mut self, input: Input) {
        let ctx: Ctx = ctx!(self);
        let outcome = match self.screen {
            Screen::Setup => self.setup.keys(&ctx, input),
            Screen::Dashboard => self.dashboard.keys(&ctx, input),
            Screen::Anatomy => self.anatomy.keys(&ctx, input),
            Screen::Browser => self.browser.keys(&ctx, input),
            Screen::Inspect => self.inspect.keys(&ctx, input),
            Screen::Runs => self.runs.keys(&ctx, input),
        };
        self.on_outcome(outcome);
        self.sync_check();
        if self.screen == Screen::Runs {
            self.poll_runs();
        }
        self.sync_views();
    }

    /// A key, through the keymap.
    pub fn handle_key(&mut self, key: KeyEvent) {
        self.dirty = true;
        let mode = self.mode();
        match keymap::lookup(mode, &key) {
            Some(action) => self.perform(action),
            None => match (mode, key.code) {
                // Ctrl and Alt chords are not text.
                (Mode::Edit | Mode::Picker | Mode::Files, KeyCode::Char(c)) if plain(&key) => {
                    self.screen_input(Input::Char(c))
                }
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
                    (answer, Some(Overlay::ConfirmSize)) => {
                        if let Some(m) = self.setup.answer_size(answer == Action::Yes) {
                            self.say(m, Level::Info);
                        }
                    }
                    _ => {}
                }
                return;
            }
            Mode::Edit | Mode::Picker | Mode::Files => {
                if action == Action::ForceQuit {
                    self.force_quit();
                } else {
                    self.screen_input(Input::Action(action));
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
            Action::CancelRun if self.fitting() => {
                self.cancel_fit();
            }
            Action::Go(screen) => self.go(screen),
            Action::NextScreen => {
                self.go(Screen::ALL[(self.screen.index() + 1) % Screen::ALL.len()])
            }
            Action::PrevScreen => {
                let n = Screen::ALL.len();
                self.go(Screen::ALL[(self.screen.index() + n - 1) % n])
            }
            Action::NextMethod => self.step_method(1),
            Action::PrevMethod => self.step_method(-1),
            Action::NextOod => self.step_ood(1),
            Action::PrevOod => self.step_ood(-1),
            Action::ToggleConvention => self.toggle_convention(),
            a => self.screen_input(Input::Action(a)),
        }
        self.sync_views();
    }

    /// Shows `screen`; the Runs screen reads the store on every visit.
    fn go(&mut self, screen: Screen) {
        if screen == Screen::Runs && self.screen != Screen::Runs {
            self.runs.refresh();
            // Inline, the list is there already; threaded, the worker's
            // answer folds in at a tick, so the key neither waits for it
            // nor shows it sooner or later by chance.
            if self.runs.answers_inline() {
                self.poll_runs();
            }
        }
        let back = screen == Screen::Setup && self.screen != Screen::Setup;
        self.screen = screen;
        if back {
            // Files may have changed while away (a fit made, say).
            self.check_form(true);
        }
    }

    /// Sets the threshold where the plot was clicked or dragged.
    pub fn threshold_at_column(&mut self, column: u16) {
        if let (Some(t), Some(d)) = (self.hits.plot.score_at(column), self.ood_dataset()) {
            self.thresholds.set(self.method, d, Some(t));
        }
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

    /// The OOD set in view's images taken for ID at its threshold (the one
    /// on the dashboard), most confident (highest score) first.
    fn open_misdetections(&mut self) {
        self.browser.misdetections = true;
        self.browser.dataset = self.ood_dataset();
        self.browser.sort = Sort::Descending;
        self.browser.selected = 0;
        self.screen = Screen::Browser;
    }

    /// The browser on image `i` of dataset `d`: its set only, no other
    /// filter, the selection on it.
    fn open_image(&mut self, d: usize, i: usize) {
        self.browser.misdetections = false;
        self.browser.query.clear();
        self.browser.class = None;
        self.browser.dataset = Some(d);
        self.browser.detail = false;
        self.screen = Screen::Browser;
        self.sync_views();
        if let Some(k) = self.browser.rows.iter().position(|&r| r == (d, i)) {
            self.browser.selected = k;
        }
    }

    /// What a screen's keys asked for.
    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::None => {}
            Outcome::Start => self.start(),
            Outcome::Save => self.save_config(),
            Outcome::Threshold(t) => {
                if let Some(d) = self.ood_dataset() {
                    self.thresholds.set(self.method, d, t);
                }
            }
            Outcome::Misdetections => self.open_misdetections(),
            Outcome::AroundThreshold => self.browse_threshold(),
            Outcome::OpenImage(d, i) => self.open_image(d, i),
            Outcome::Count(path, root) => match &self.counter {
                Some(c) => c.request(&path, root.as_deref()),
                None => {
                    let count = match crate::tui::discover::count(&path, root.as_deref()) {
                        Ok(n) => crate::tui::discover::Count::Images(n),
                        Err(e) => crate::tui::discover::Count::Error(e.to_string()),
                    };
                    self.setup.set_count(&path, count);
                }
            },
            Outcome::Say(m, level) => self.say(m, level),
            Outcome::ConfirmSize => self.overlay = Some(Overlay::ConfirmSize),
            Outcome::MakeFit(job) => self.make_fit(*job),
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
}
