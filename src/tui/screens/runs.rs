//! Over 600 lines: the worker's jobs, the screen's state and its drawing
//! of one store view (list, details, deltas); the drawing is the part to
//! move out first when it grows.
//!
//! The Runs screen: the run store's runs (id, when, model, sets, methods,
//! state); Enter reopens one into the dashboard and the browser, Space
//! marks two to compare (the metric deltas of `report ID1 ID2`), `e`
//! exports one (the report as Markdown, CSV and JSON, scores.csv and the plots),
//! `d` twice deletes one.
//!
//! SQLite never runs on the UI thread: every store access is a job for a
//! worker thread whose answers wake the event loop, as the engine's events
//! do. Without a wake (tests) the jobs run at once, inline.

use crate::tui::component::{self, Component, Ctx, Input};
use crate::tui::keymap::{Action, Mode};
use crate::tui::mouse::Hits;
use crate::tui::theme;
use crate::tui::wake::{Queue, Wake, Worker};
use gradnorm_core::run::RunResults;
use gradnorm_engine::store::{self, export, Comparison, RunRow, Store};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};
use std::path::{Path, PathBuf};

/// What the worker is asked to do.
#[derive(Debug, Clone, PartialEq)]
enum Job {
    List,
    Open(i64),
    Compare(i64, i64),
    Export(i64),
    Remove(i64),
}

/// What the screen tells the app once a job is done.
#[derive(Debug)]
pub enum Outcome {
    /// A run's records, to be shown as the engine's events would.
    Open(i64, Box<RunResults>),
    /// A line for the status bar; `true` for an error.
    Say(String, bool),
    /// The screen's own state changed (the list, the deltas): redraw.
    Redraw,
}

/// A job's answer.
enum Reply {
    Listed(Result<Vec<RunRow>, String>),
    Opened(i64, Result<RunResults, String>),
    Compared(i64, i64, Result<Comparison, String>),
    Exported(i64, Result<PathBuf, String>),
    Removed(i64, Result<(), String>),
}

/// Does one job against the store in `dir`.
fn work(dir: &Path, job: Job) -> Reply {
    let open = || Store::open_existing(dir).map_err(|e| e.to_string());
    match job {
        // No store yet: no runs, not an error.
        Job::List if !dir.join(store::FILE_NAME).is_file() => Reply::Listed(Ok(Vec::new())),
        Job::List => Reply::Listed(open().and_then(|s| s.list().map_err(|e| e.to_string()))),
        Job::Open(id) => Reply::Opened(
            id,
            open().and_then(|s| s.load(id).map_err(|e| e.to_string())),
        ),
        Job::Compare(a, b) => Reply::Compared(a, b, open().and_then(|s| compare(&s, a, b))),
        Job::Export(id) => Reply::Exported(id, open().and_then(|s| export_run(&s, dir, id))),
        Job::Remove(id) => Reply::Removed(
            id,
            open().and_then(|mut s| s.remove(id).map_err(|e| e.to_string())),
        ),
    }
}

fn summary(store: &Store, id: i64) -> Result<gradnorm_core::run::Summary, String> {
    store
        .load(id)
        .map_err(|e| e.to_string())?
        .summary()
        .ok_or_else(|| format!("run {id} has nothing to measure yet"))
}

fn compare(store: &Store, a: i64, b: i64) -> Result<Comparison, String> {
    // OOD sets pair by their files, whatever each run named them.
    let files = |id| store.set_files(id).map_err(|e| e.to_string());
    Ok(store::compare_files(
        &summary(store, a)?,
        &files(a)?,
        &summary(store, b)?,
        &files(b)?,
    ))
}

/// Writes run `id`'s report (md, csv, json), scores.csv and its plots
/// (`plots/`, PNG and SVG, as `report --plots`) into `DIR/export-ID/`
/// beside the store.
fn export_run(store: &Store, dir: &Path, id: i64) -> Result<PathBuf, String> {
    let results = store.load(id).map_err(|e| e.to_string())?;
    let summary = results
        .summary()
        .ok_or_else(|| format!("run {id} has nothing to measure yet"))?;
    let out = dir.join(format!("export-{id}"));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, format) in [
        ("report.md", export::Format::Md),
        ("report.csv", export::Format::Csv),
        ("report.json", export::Format::Json),
    ] {
        let path = out.join(name);
        std::fs::write(&path, export::summary(&summary, format))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    gradnorm_core::run::write_scores_csv(&out.join("scores.csv"), &results)
        .map_err(|e| e.to_string())?;
    store::plots::write_all(&out.join("plots"), &results).map_err(|e| e.to_string())?;
    Ok(out)
}

/// What the store's files look like (modification time and length of the
/// folder, the database and its write-ahead log): SQLite in WAL mode
/// writes the log as runs go and the database at checkpoints.
#[derive(Debug, Clone, PartialEq)]
struct Stamp(Vec<Option<(std::time::SystemTime, u64)>>);

impl Stamp {
    fn of(dir: &Path) -> Stamp {
        let db = dir.join(store::FILE_NAME);
        let wal = dir.join(format!("{}-wal", store::FILE_NAME));
        Stamp(
            [dir.to_path_buf(), db, wal]
                .iter()
                .map(|p| {
                    let m = std::fs::metadata(p).ok()?;
                    Some((m.modified().ok()?, m.len()))
                })
                .collect(),
        )
    }
}

/// The Runs screen's state.
pub struct RunsState {
    /// The store's folder.
    pub dir: PathBuf,
    pub rows: Vec<RunRow>,
    pub selected: usize,
    /// Runs marked for comparison (at most two, in the order marked).
    pub marked: Vec<i64>,
    /// The deltas of the two marked runs, once loaded.
    pub comparison: Option<(i64, i64, Comparison)>,
    /// Whether the list has been asked for (it is, on the first visit).
    pub listed: bool,
    /// Jobs sent and not answered yet.
    pub pending: usize,
    /// A `List` job is out (another waits for its answer).
    listing: bool,
    /// A list has come back: an empty one means no runs, not "reading".
    read: bool,
    /// The store's files when the list was last asked for: a change (a run
    /// recorded, finished, another process's run) asks again.
    stamp: Option<Stamp>,
    /// Jobs in, replies out (each reply wakes the loop).
    worker: Option<Worker<Job, Reply>>,
    wake: Option<Wake>,
    /// Inline replies (no worker), read by `poll`.
    ready: Vec<Reply>,
    /// The run a first `d` asked about: a second `d` on it deletes it.
    removing: Option<i64>,
    /// What a key said (read by `poll`).
    said: Vec<Outcome>,
}

impl RunsState {
    pub fn new(dir: PathBuf) -> RunsState {
        RunsState {
            dir,
            rows: Vec::new(),
            selected: 0,
            marked: Vec::new(),
            comparison: None,
            listed: false,
            pending: 0,
            listing: false,
            read: false,
            stamp: None,
            worker: None,
            wake: None,
            ready: Vec::new(),
            removing: None,
            said: Vec::new(),
        }
    }

    /// Store jobs go to a worker thread that wakes the loop through `wake`.
    pub fn threaded(&mut self, wake: Wake) {
        self.wake = Some(wake);
    }

    /// Whether store jobs are answered during the call that submits them
    /// (no worker thread).
    pub fn answers_inline(&self) -> bool {
        self.wake.is_none()
    }

    fn submit(&mut self, job: Job) {
        self.pending += 1;
        match &self.wake {
            Some(wake) => {
                let dir = &self.dir;
                let worker = self.worker.get_or_insert_with(|| {
                    let dir = dir.clone();
                    Worker::spawn("run-store", Queue::Each, wake.clone(), move |job| {
                        work(&dir, job)
                    })
                });
                worker.send(job);
            }
            None => {
                let reply = work(&self.dir, job);
                self.ready.push(reply);
            }
        }
    }

    /// Reads the store's runs again.
    pub fn refresh(&mut self) {
        self.listed = true;
        self.listing = true;
        self.stamp = Some(Stamp::of(&self.dir));
        self.submit(Job::List);
    }

    /// Reads the store again when its files changed since the last read
    /// (a few `stat`s: cheap enough for every tick while the screen shows);
    /// never a second read while one is out.
    pub fn follow(&mut self) {
        if self.listed && !self.listing && self.stamp.as_ref() != Some(&Stamp::of(&self.dir)) {
            self.refresh();
        }
    }

    pub fn current(&self) -> Option<&RunRow> {
        self.rows.get(self.selected)
    }

    /// A key's action on this screen.
    pub fn act(&mut self, action: Action) {
        let n = self.rows.len();
        let asked = self.removing.take();
        match action {
            Action::Remove => {
                let Some(r) = self.current() else {
                    return;
                };
                let (id, running) = (r.id, r.state == "running");
                let what = format!("{}, {} images", r.model, r.images);
                let say = |text: String| Outcome::Say(text, false);
                if running {
                    // Its recorder may be writing it now: the CLI removes
                    // one that was killed.
                    self.said.push(Outcome::Say(
                        format!(
                            "run {id} is running (or was killed while running): \
                             once stopped, `gradnorm-tui runs rm {id}` deletes it"
                        ),
                        true,
                    ));
                } else if asked == Some(id) {
                    self.submit(Job::Remove(id));
                } else {
                    self.removing = Some(id);
                    self.said.push(say(format!(
                        "delete run {id} ({what}) from the store (its image records stay as a cache)? d again deletes it"
                    )));
                }
            }
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = (self.selected + 1).min(n.saturating_sub(1)),
            Action::Top => self.selected = 0,
            Action::Bottom => self.selected = n.saturating_sub(1),
            Action::Refresh => self.refresh(),
            Action::Activate => {
                if let Some(id) = self.current().map(|r| r.id) {
                    self.submit(Job::Open(id));
                }
            }
            Action::Export => {
                if let Some(id) = self.current().map(|r| r.id) {
                    self.submit(Job::Export(id));
                }
            }
            Action::Toggle => {
                let Some(id) = self.current().map(|r| r.id) else {
                    return;
                };
                if let Some(k) = self.marked.iter().position(|&m| m == id) {
                    self.marked.remove(k);
                } else {
                    if self.marked.len() == 2 {
                        self.marked.remove(0);
                    }
                    self.marked.push(id);
                }
                self.comparison = None;
                if let [a, b] = self.marked[..] {
                    self.submit(Job::Compare(a, b));
                }
            }
            _ => {}
        }
    }

    /// Folds in the answers that arrived; what the app must act on.
    pub fn poll(&mut self) -> Vec<Outcome> {
        let mut replies = std::mem::take(&mut self.ready);
        if let Some(w) = &self.worker {
            replies.extend(w.replies());
        }
        let mut out = std::mem::take(&mut self.said);
        for reply in replies {
            self.pending = self.pending.saturating_sub(1);
            if matches!(reply, Reply::Listed(_)) {
                self.listing = false;
                self.read = true;
            }
            match reply {
                Reply::Listed(Ok(rows)) => {
                    out.push(Outcome::Redraw);
                    self.rows = rows;
                    self.selected = self.selected.min(self.rows.len().saturating_sub(1));
                    let ids: Vec<i64> = self.rows.iter().map(|r| r.id).collect();
                    self.marked.retain(|m| ids.contains(m));
                }
                Reply::Listed(Err(e)) => out.push(Outcome::Say(e, true)),
                Reply::Opened(id, Ok(results)) => out.push(Outcome::Open(id, Box::new(results))),
                Reply::Opened(id, Err(e)) => {
                    out.push(Outcome::Say(format!("run {id} not opened: {e}"), true))
                }
                Reply::Compared(a, b, Ok(c)) => {
                    // Only the pair still marked is shown.
                    if self.marked == [a, b] {
                        self.comparison = Some((a, b, c));
                        out.push(Outcome::Redraw);
                    }
                }
                Reply::Compared(a, b, Err(e)) => out.push(Outcome::Say(
                    format!("runs {a} and {b} not compared: {e}"),
                    true,
                )),
                Reply::Exported(id, Ok(dir)) => out.push(Outcome::Say(
                    format!(
                        "exported run {id} to {} (report.md, report.csv, report.json, scores.csv, plots/)",
                        dir.display()
                    ),
                    false,
                )),
                Reply::Exported(id, Err(e)) => {
                    out.push(Outcome::Say(format!("run {id} not exported: {e}"), true))
                }
                Reply::Removed(id, Ok(())) => {
                    out.push(Outcome::Say(format!("deleted run {id}"), false));
                    self.marked.retain(|&m| m != id);
                    if self.comparison.as_ref().is_some_and(|c| c.0 == id || c.1 == id) {
                        self.comparison = None;
                    }
                    self.refresh();
                }
                Reply::Removed(id, Err(e)) => {
                    out.push(Outcome::Say(format!("run {id} not deleted: {e}"), true))
                }
            }
        }
        out
    }
}

impl Component for RunsState {
    fn mode(&self) -> Mode {
        Mode::Runs
    }

    /// Store jobs answer later, through `poll`.
    fn keys(&mut self, _: &Ctx, input: Input) -> component::Outcome {
        if let Input::Action(a) = input {
            self.act(a);
        }
        component::Outcome::None
    }

    fn draw(&self, _: &Ctx, area: Rect, buf: &mut Buffer, _: &mut Hits) {
        render(self, area, buf)
    }
}

/// Draws the list of runs and, when two are marked, their deltas.
fn render(state: &RunsState, area: Rect, buf: &mut Buffer) {
    let Some((a, b, c)) = &state.comparison else {
        render_list(state, area, buf);
        return;
    };
    // The deltas get what the list (header, rows, details, borders) leaves,
    // the list at least 8 rows.
    let list_need = state.rows.len() as u16 + 6;
    let deltas_need = c.deltas.len() as u16 + 4;
    let list_h = list_need.min(area.height.saturating_sub(deltas_need).max(8));
    let [list, deltas] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Fill(1)]).areas(area);
    render_list(state, list, buf);
    render_deltas(*a, *b, c, deltas, buf);
}

fn render_list(state: &RunsState, area: Rect, buf: &mut Buffer) {
    let title = format!(" Runs in {} ", state.dir.display());
    let block = Block::bordered().title(Span::styled(title, theme::title()));
    let inner = block.inner(area);
    block.render(area, buf);
    if state.rows.is_empty() {
        let text = if !state.read {
            "reading the run store…".to_string()
        } else {
            format!(
                "no runs recorded in {} yet: every run started from Setup (or by `eval`) is",
                state.dir.display()
            )
        };
        Paragraph::new(vec![
            Line::styled(text, theme::dim()),
            Line::styled(
                "recorded there as it goes, and can be reopened, compared and exported here.",
                theme::dim(),
            ),
        ])
        .render(inner, buf);
        return;
    }
    // The selected run in full below the table (the columns cut).
    let [inner, details] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(3)]).areas(inner);
    if let Some(r) = state.current() {
        render_details(r, details, buf);
    }
    let w = inner.width as usize;
    let wide = w >= 110;
    let (when_w, model_w) = if wide { (16, 18) } else { (11, 14) };
    // id, when, model, state, images; sets and methods share the rest.
    let fixed = 2 + 5 + 1 + when_w + 1 + model_w + 1 + 1 + 1 + 9 + 1 + 7;
    let rest = w.saturating_sub(fixed);
    let sets_w = rest * 3 / 5;
    let methods_w = rest - sets_w;
    let row_line = |cells: [String; 8]| {
        format!(
            "{:<2}{:>5} {:<when_w$} {:<model_w$} {:<sets_w$} {:<methods_w$} {:<9} {:>7}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7],
        )
    };
    let header = row_line([
        String::new(),
        "id".into(),
        "when (UTC)".into(),
        "model".into(),
        "sets".into(),
        "methods".into(),
        "state".into(),
        "images".into(),
    ]);
    let mut lines = vec![Line::styled(header, theme::dim())];
    let visible = (inner.height as usize).saturating_sub(1);
    let first = state.selected.saturating_sub(visible.saturating_sub(1));
    for (i, r) in state.rows.iter().enumerate().skip(first).take(visible) {
        let mark = match state.marked.iter().position(|&m| m == r.id) {
            Some(0) => "a",
            Some(_) => "b",
            None => "",
        };
        let state_text = match r.shard {
            Some(s) => format!("{} {}/{}", r.state, s.index, s.count),
            None => r.state.clone(),
        };
        let text = row_line([
            mark.into(),
            r.id.to_string(),
            // `YYYY-MM-DD HH:MM`, or `MM-DD HH:MM` when narrow.
            r.created
                .chars()
                .skip(if wide { 0 } else { 5 })
                .take(when_w)
                .collect(),
            theme::fit(&r.model, model_w),
            theme::fit(&r.sets.join(", "), sets_w),
            theme::fit(&r.methods.join(","), methods_w),
            theme::fit(&state_text, 9),
            theme::count(r.images),
        ]);
        let style = match r.state.as_str() {
            "failed" => theme::error(),
            "running" | "cancelled" => theme::warn(),
            _ => Style::new(),
        };
        let style = if i == state.selected {
            theme::selected().add_modifier(Modifier::BOLD)
        } else {
            style
        };
        lines.push(Line::styled(text, style));
    }
    Paragraph::new(lines).render(inner, buf);
}

/// The selected run's every set and method, its device and time.
fn render_details(r: &RunRow, area: Rect, buf: &mut Buffer) {
    let mut sets = r.sets.clone();
    if let Some(id) = sets.first_mut() {
        id.push_str(" (ID)");
    }
    let mut head = format!(
        "run {}: {} on {}, {} images in {}",
        r.id,
        r.model,
        r.device,
        theme::count(r.images),
        theme::duration(r.elapsed_secs)
    );
    if let Some(e) = &r.error {
        head.push_str(&format!(" · failed: {e}"));
    }
    Paragraph::new(vec![
        Line::styled(head, theme::dim()),
        Line::styled(
            format!(
                "sets: {} · methods: {}{}",
                sets.join(", "),
                r.methods.join(", "),
                r.fit
                    .as_ref()
                    .map_or(String::new(), |f| format!(" · fit: {}", f.display()))
            ),
            theme::dim(),
        ),
    ])
    .wrap(ratatui::widgets::Wrap { trim: true })
    .render(area, buf);
}

fn render_deltas(a: i64, b: i64, c: &Comparison, area: Rect, buf: &mut Buffer) {
    let title = format!(" Run {b} − run {a} (percentage points) ");
    let block = Block::bordered().title(Span::styled(title, theme::title()));
    let inner = block.inner(area);
    block.render(area, buf);
    let mut lines = vec![Line::styled(
        format!(
            "{:<12} {:<14} {:>22} {:>22}",
            "method", "set", "FPR95 a → b (Δ)", "AUROC a → b (Δ)"
        ),
        theme::dim(),
    )];
    let cell = |x: f64, y: f64| {
        format!(
            "{} → {} ({:+.2})",
            theme::pct(x),
            theme::pct(y),
            100.0 * (y - x)
        )
    };
    // Where not every row fits, the unchanged ones give way.
    let room = (inner.height as usize).saturating_sub(2);
    let changed = |d: &&gradnorm_engine::store::Delta| {
        let x = d.diff();
        x.fpr95.abs() >= 5e-5 || x.auroc.abs() >= 5e-5
    };
    let shown: Vec<&gradnorm_engine::store::Delta> = if c.deltas.len() <= room {
        c.deltas.iter().collect()
    } else {
        c.deltas.iter().filter(changed).collect()
    };
    let hidden = c.deltas.len() - shown.len();
    for d in shown {
        // Lower FPR95 and higher AUROC are better: colour the change.
        let diff = d.diff();
        let tone = |better: bool, x: f64| {
            if x.abs() < 5e-5 {
                Style::new()
            } else if better {
                theme::best()
            } else {
                theme::warn()
            }
        };
        lines.push(Line::from(vec![
            Span::raw(format!(
                "{:<12} {:<14} ",
                theme::fit(&d.label, 12),
                theme::fit(&d.set, 14)
            )),
            Span::styled(
                format!("{:>22}", cell(d.a.fpr95, d.b.fpr95)),
                tone(diff.fpr95 < 0.0, diff.fpr95),
            ),
            Span::raw(" "),
            Span::styled(
                format!("{:>22}", cell(d.a.auroc, d.b.auroc)),
                tone(diff.auroc > 0.0, diff.auroc),
            ),
        ]));
    }
    let mut only: Vec<String> = c
        .only_a
        .iter()
        .map(|x| format!("{x} (only {a})"))
        .chain(c.only_b.iter().map(|x| format!("{x} (only {b})")))
        .collect();
    if hidden > 0 {
        only.insert(0, format!("{hidden} unchanged rows not shown"));
    }
    if !only.is_empty() {
        lines.push(Line::styled(only.join(" · "), theme::dim()));
    }
    Paragraph::new(lines).render(inner, buf);
}
