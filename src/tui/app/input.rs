//! What keys (through the keymap), the mouse and actions do to the app.

use super::{App, Level, Overlay, Screen};
use crate::tui::browser::Sort;
use crate::tui::keymap::{self, Action, Mode};
use crate::tui::mouse::Target;
use crate::tui::setup::SetupAction;
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
                    Mode::Setup | Mode::Browser | Mode::Runs | Mode::Help if up => Action::Up,
                    Mode::Setup | Mode::Browser | Mode::Runs | Mode::Help => Action::Down,
                    _ => return,
                };
                self.perform(action);
            }
            MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left) => {
                let down = matches!(m.kind, MouseEventKind::Down(_));
                if let Some(t) = self.targets.at(m.column, m.row).filter(|_| down) {
                    self.click(t);
                    return;
                }
                if mode_is_modal(mode) {
                    return;
                }
                if m.row == 0 {
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
            Target::ImageRow(k) => {
                self.browser.selected = k.min(self.browser.rows.len().saturating_sub(1));
            }
        }
    }

    /// Where keys are read now: an overlay, the form's edit, a browser's
    /// search or list, or the screen.
    pub fn mode(&self) -> Mode {
        match self.overlay {
            Some(Overlay::Help) => Mode::Help,
            Some(_) => Mode::Confirm,
            None if self.screen == Screen::Browser && self.browser.class_picker.is_some() => {
                Mode::Picker
            }
            None if self.screen == Screen::Browser && self.browser.prompt.is_some() => Mode::Edit,
            None if self.screen == Screen::Setup && self.setup.files.is_some() => Mode::Files,
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
                // Ctrl and Alt chords are not text.
                (Mode::Edit | Mode::Picker | Mode::Files, KeyCode::Char(c)) if plain(&key) => {
                    if self.screen == Screen::Browser {
                        self.browser.type_char(c);
                        self.sync_views();
                    } else {
                        self.setup.type_char(c)
                    }
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
                    _ => {}
                }
                return;
            }
            Mode::Edit | Mode::Picker | Mode::Files => {
                if action == Action::ForceQuit {
                    self.force_quit();
                } else if self.screen == Screen::Browser {
                    self.browser.act_capturing(action);
                    self.sync_views();
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
            Action::Go(screen) => self.go(screen),
            Action::NextScreen => {
                self.go(Screen::ALL[(self.screen.index() + 1) % Screen::ALL.len()])
            }
            Action::PrevScreen => {
                let n = Screen::ALL.len();
                self.go(Screen::ALL[(self.screen.index() + n - 1) % n])
            }
            Action::NextSecond => {
                let n = self.n_methods().max(1);
                self.second = (self.second + 1) % n;
            }
            Action::NextMethod => self.step_method(1),
            Action::PrevMethod => self.step_method(-1),
            Action::NextOod => self.step_ood(1),
            Action::PrevOod => self.step_ood(-1),
            Action::Misdetections => self.open_misdetections(),
            Action::ThresholdUp => self.move_threshold(1),
            Action::ThresholdDown => self.move_threshold(-1),
            Action::ThresholdReset => self.threshold = None,
            Action::LogScale => self.log_scale = !self.log_scale,
            Action::ToggleConvention => self.toggle_convention(),
            Action::AroundThreshold => self.browse_threshold(),
            a => match self.screen {
                Screen::Setup => {
                    let out = self.setup.act(a);
                    self.on_setup_action(out);
                }
                Screen::Browser => self.on_browser_action(a),
                Screen::Runs => {
                    self.runs.act(a);
                    self.poll_runs();
                }
                Screen::Dashboard | Screen::Anatomy | Screen::Inspect => {}
            },
        }
        self.sync_views();
    }

    /// Shows `screen`; the Runs screen reads the store on every visit.
    fn go(&mut self, screen: Screen) {
        if screen == Screen::Runs && self.screen != Screen::Runs {
            self.runs.refresh();
            self.poll_runs();
        }
        self.screen = screen;
    }

    /// The method compared with the one in view on the Inspect screen.
    pub fn second_method(&self) -> usize {
        let n = self.n_methods().max(1);
        let off = self.second % n;
        (self.method + if off == 0 && n > 1 { 1 } else { off }) % n
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
                    let count = match crate::tui::discover::count(&path, root.as_deref()) {
                        Ok(n) => crate::tui::discover::Count::Images(n),
                        Err(e) => crate::tui::discover::Count::Error(e.to_string()),
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
                self.browser.query.clear();
                self.browser.class = None;
            }
            Action::Search => self.browser.start_search(),
            Action::Jump => self.browser.start_jump(),
            Action::ClassFilter => self
                .browser
                .open_class_picker(&self.results, &self.analysis),
            _ => {}
        }
    }
}
