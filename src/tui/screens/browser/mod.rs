//! The image browser: every evaluated image, filtered (dataset,
//! misdetections, a file-name search, the top-1 class) and sorted, with its
//! predictions, scores, ID percentiles and a preview. `view` draws it.

mod view;

use view::View;

use crate::tui::analysis::{Analysis, Thresholds};
use crate::tui::component::{Component, Ctx, Input, Outcome};
use crate::tui::keymap::Action;
use crate::tui::keymap::Mode;
use crate::tui::mouse::Hits;
use crate::tui::picker::{Picked, Picker};
use gradnorm_core::run::RunResults;
use gradnorm_core::run::{ImageRecord, Role, RunInfo};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// The order the engine evaluated them in.
    #[default]
    Evaluation,
    /// By the current method's score, highest (most ID-like) first.
    Descending,
    Ascending,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::Evaluation => Sort::Descending,
            Sort::Descending => Sort::Ascending,
            Sort::Ascending => Sort::Evaluation,
        }
    }
}

/// What the rows were built from; a change rebuilds them.
#[derive(Debug, Clone, PartialEq)]
struct RowsKey {
    counts: Vec<usize>,
    dataset: Option<usize>,
    misdetections: bool,
    sort: Sort,
    method: usize,
    ood: Option<usize>,
    query: String,
    class: Option<usize>,
    /// The thresholds the misdetections are judged at.
    thresholds: Thresholds,
}

/// A line being typed under the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// `/`: the file-name search, applied as typed; Esc puts back `before`.
    Search { before: String },
    /// `:`: a row number to jump to.
    Jump(String),
}

#[derive(Debug, Default)]
pub struct BrowserState {
    /// Show one dataset only (None: all).
    pub dataset: Option<usize>,
    /// Only images the current method gets wrong at its threshold (the
    /// dashboard's: moved, else at 95% TPR).
    pub misdetections: bool,
    pub sort: Sort,
    /// Only images whose path (as listed) holds this text, any case.
    pub query: String,
    /// Only images whose top-1 is this class.
    pub class: Option<usize>,
    /// A search or a jump being typed.
    pub prompt: Option<Prompt>,
    /// The popup list of top-1 classes (`p`) and the class of each item
    /// (None: any class).
    pub class_picker: Option<(Picker, Vec<Option<usize>>)>,
    /// The image selected in full (Enter): a large preview, every score
    /// and its call, the top-5.
    pub detail: bool,
    /// `(dataset, record)` of every row shown, in display order.
    pub rows: Vec<(usize, usize)>,
    /// Index into `rows`.
    pub selected: usize,
    key: Option<RowsKey>,
    /// The first row and the rows in view, where the last frame put them.
    offset: usize,
    page: usize,
}

/// Whether `method` misdetects an image at the thresholds in use: an OOD
/// image scoring at or above its set's threshold (accepted as ID), or an ID
/// image below the threshold of the OOD set in view (rejected).
pub fn misdetected(
    analysis: &Analysis,
    thresholds: &Thresholds,
    rec: &ImageRecord,
    role: Role,
    method: usize,
    ood: Option<usize>,
) -> Option<bool> {
    let score = *rec.scores.get(method)? as f64;
    match role {
        Role::Ood => thresholds
            .get(analysis, method, rec.dataset)
            .map(|t| score >= t),
        Role::Id => thresholds.get(analysis, method, ood?).map(|t| score < t),
    }
}

impl BrowserState {
    pub fn reset(&mut self) {
        *self = BrowserState::default();
    }

    pub fn current(&self) -> Option<(usize, usize)> {
        self.rows.get(self.selected).copied()
    }

    /// Rebuilds the rows when the analysis, the filters or the sort changed.
    /// Only analysed records are listed, so rows change a few times per
    /// second at most while a run goes.
    pub fn sync(
        &mut self,
        results: &RunResults,
        analysis: &Analysis,
        thresholds: &Thresholds,
        method: usize,
        ood: Option<usize>,
    ) {
        let key = RowsKey {
            counts: analysis.counts.clone(),
            dataset: self.dataset,
            misdetections: self.misdetections,
            sort: self.sort,
            method,
            ood,
            query: self.query.to_lowercase(),
            class: self.class,
            // Only a filter by them depends on them.
            thresholds: if self.misdetections {
                thresholds.clone()
            } else {
                Thresholds::default()
            },
        };
        if self.key.as_ref() == Some(&key) {
            return;
        }
        let keep = self.current();
        let Some(info) = &results.info else {
            self.rows.clear();
            self.key = Some(key);
            return;
        };
        let mut rows = Vec::new();
        for (d, &n) in analysis.counts.iter().enumerate() {
            if self.dataset.is_some_and(|f| f != d) {
                continue;
            }
            let role = info.datasets[d].role;
            let records = &results.records[d][..n.min(results.records[d].len())];
            for (i, rec) in records.iter().enumerate() {
                if self.misdetections
                    && misdetected(analysis, thresholds, rec, role, method, ood) != Some(true)
                {
                    continue;
                }
                if self.class.is_some() && rec.top.first().map(|t| t.0) != self.class {
                    continue;
                }
                if !key.query.is_empty()
                    && !display_path(info, rec).to_lowercase().contains(&key.query)
                {
                    continue;
                }
                rows.push((d, i));
            }
        }
        if self.sort != Sort::Evaluation {
            // Keys first, then one sort: 90,000 rows in a few milliseconds.
            // Stable, so ties keep the evaluation order.
            let mut keyed: Vec<(f32, (usize, usize))> = rows
                .iter()
                .map(|&(d, i)| {
                    let s = results.records[d][i].scores.get(method).copied();
                    (s.unwrap_or(f32::NAN), (d, i))
                })
                .collect();
            if self.sort == Sort::Descending {
                keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            } else {
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            rows = keyed.into_iter().map(|(_, r)| r).collect();
        }
        // New images keep the selection on its image; a new sort or filter
        // shows its top.
        let same_view = self.key.as_ref().is_some_and(|k| {
            (k.dataset, k.misdetections, k.sort, &k.query, k.class)
                == (
                    key.dataset,
                    key.misdetections,
                    key.sort,
                    &key.query,
                    key.class,
                )
        });
        self.rows = rows;
        self.selected = keep
            .filter(|_| same_view)
            .and_then(|k| self.rows.iter().position(|r| *r == k))
            .unwrap_or(0);
        self.key = Some(key);
    }

    pub fn move_by(&mut self, delta: isize) {
        if self.rows.is_empty() {
            self.selected = 0;
            return;
        }
        let max = self.rows.len() as isize - 1;
        self.selected = (self.selected as isize + delta).clamp(0, max) as usize;
    }

    pub fn page(&self) -> isize {
        self.page.max(1) as isize
    }

    /// Where the last frame put the list: (rows in view, first row shown).
    pub(crate) fn placed(&mut self, page: usize, offset: usize) {
        (self.page, self.offset) = (page, offset);
    }

    /// Next dataset filter: all, then each dataset in turn.
    pub fn cycle_dataset(&mut self, n_datasets: usize) {
        self.dataset = match self.dataset {
            None if n_datasets > 0 => Some(0),
            Some(d) if d + 1 < n_datasets => Some(d + 1),
            _ => None,
        };
    }
}

/// The set column: as wide as the longest name, up to a fifth of `width`.
pub fn set_width(info: &RunInfo, width: usize) -> usize {
    let longest = info.datasets.iter().map(|d| d.name.chars().count()).max();
    longest.unwrap_or(10).clamp(6, (width / 5).max(6))
}

/// The first synonym of a class name ("tench, Tinca tinca" -> "tench").
pub fn short_name(info: &RunInfo, class: usize) -> String {
    info.class_names
        .get(class)
        .map(|n| n.split(',').next().unwrap_or(n).trim().to_string())
        .unwrap_or_else(|| class.to_string())
}

/// A record's path relative to its dataset's folder, when it lies inside.
pub fn display_path(info: &RunInfo, rec: &ImageRecord) -> String {
    // A list file's paths are relative to its folder; decided by name, not
    // by a file-system call per row and frame.
    let base = info.datasets.get(rec.dataset).map(|d| {
        let list = d
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(gradnorm_engine::data::dataset::is_list_name);
        if list {
            d.path.parent().unwrap_or(Path::new("")).to_path_buf()
        } else {
            d.path.clone()
        }
    });
    base.and_then(|b| rec.path.strip_prefix(&b).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| rec.path.clone())
        .display()
        .to_string()
}

impl BrowserState {
    /// Whether a search or jump is being typed or the class list is open:
    /// keys go there first.
    pub fn capturing(&self) -> bool {
        self.prompt.is_some() || self.class_picker.is_some()
    }

    /// `/`: a search typed over the current one (Esc puts it back).
    pub fn start_search(&mut self) {
        self.prompt = Some(Prompt::Search {
            before: self.query.clone(),
        });
    }

    /// `:`: a row number to jump to.
    pub fn start_jump(&mut self) {
        self.prompt = Some(Prompt::Jump(String::new()));
    }

    /// `p`: the top-1 classes of the images listed under the other filters
    /// (and the dataset filter), most frequent first, to keep one.
    pub fn open_class_picker(&mut self, results: &RunResults, analysis: &Analysis) {
        let Some(info) = &results.info else {
            return;
        };
        let mut counts = std::collections::BTreeMap::<usize, usize>::new();
        for (d, &n) in analysis.counts.iter().enumerate() {
            if self.dataset.is_some_and(|f| f != d) {
                continue;
            }
            for rec in results.records[d].iter().take(n) {
                if let Some(&(c, _)) = rec.top.first() {
                    *counts.entry(c).or_default() += 1;
                }
            }
        }
        let mut by_count: Vec<(usize, usize)> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut items = vec!["any class".to_string()];
        let mut classes = vec![None];
        for (c, n) in by_count {
            items.push(format!(
                "{} ({})",
                short_name(info, c),
                crate::tui::theme::count(n)
            ));
            classes.push(Some(c));
        }
        let at = classes.iter().position(|c| *c == self.class);
        let picker = Picker::new("top-1 class · type to filter", items, at);
        self.class_picker = Some((picker, classes));
    }

    /// A character typed into the search, the jump or the class list.
    pub fn type_char(&mut self, c: char) {
        if let Some((p, _)) = self.class_picker.as_mut() {
            p.type_char(c);
            return;
        }
        match &mut self.prompt {
            Some(Prompt::Search { .. }) => self.query.push(c),
            Some(Prompt::Jump(text)) if c.is_ascii_digit() => text.push(c),
            _ => {}
        }
    }

    /// An editing key while capturing (Enter, Esc, Backspace, Ctrl-U, the
    /// list's moves).
    pub fn act_capturing(&mut self, action: Action) {
        if let Some((p, classes)) = self.class_picker.as_mut() {
            if p.edit(action) {
                return;
            }
            match action {
                Action::EditCancel => self.class_picker = None,
                Action::EditConfirm => {
                    if let Some(Picked::Item(i)) = p.pick() {
                        self.class = classes[i];
                    }
                    self.class_picker = None;
                }
                _ => {}
            }
            return;
        }
        let Some(prompt) = self.prompt.as_mut() else {
            return;
        };
        match (action, prompt) {
            (Action::EditBackspace, Prompt::Search { .. }) => {
                self.query.pop();
            }
            (Action::EditBackspace, Prompt::Jump(t)) => {
                t.pop();
            }
            (Action::EditClear, Prompt::Search { .. }) => self.query.clear(),
            (Action::EditClear, Prompt::Jump(t)) => t.clear(),
            (Action::EditCancel, Prompt::Search { before }) => {
                self.query = std::mem::take(before);
                self.prompt = None;
            }
            (Action::EditCancel, Prompt::Jump(_)) => self.prompt = None,
            (Action::EditConfirm, Prompt::Search { .. }) => self.prompt = None,
            (Action::EditConfirm, Prompt::Jump(t)) => {
                if let Ok(n) = t.parse::<usize>() {
                    self.jump_to(n);
                }
                self.prompt = None;
            }
            _ => {}
        }
    }

    /// Selects row `n` (counted from 1, as the position shows), or the
    /// last when there are fewer.
    pub fn jump_to(&mut self, n: usize) {
        self.selected = n.saturating_sub(1).min(self.rows.len().saturating_sub(1));
    }
}

impl BrowserState {
    /// A key's action on the list (no search or popup open).
    fn act(&mut self, ctx: &Ctx, action: Action) {
        let page = self.page();
        if self.detail {
            // The image in full: moves go to the next image, Enter and Esc
            // back to the list; the list's filters wait.
            match action {
                Action::Activate | Action::ClearFilters => self.detail = false,
                Action::Up => self.move_by(-1),
                Action::Down => self.move_by(1),
                Action::PageUp => self.move_by(-page),
                Action::PageDown => self.move_by(page),
                _ => {}
            }
            return;
        }
        match action {
            Action::Activate => self.detail = !self.rows.is_empty(),
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-page),
            Action::PageDown => self.move_by(page),
            Action::Top => self.selected = 0,
            Action::Bottom => self.selected = self.rows.len().saturating_sub(1),
            Action::Sort => self.sort = self.sort.next(),
            Action::Reverse => {
                self.sort = match self.sort {
                    Sort::Descending => Sort::Ascending,
                    Sort::Ascending => Sort::Descending,
                    Sort::Evaluation => Sort::Descending,
                }
            }
            Action::CycleDataset => {
                let n = ctx.results.info.as_ref().map_or(0, |i| i.datasets.len());
                self.cycle_dataset(n);
            }
            Action::ToggleMisdetections => self.misdetections = !self.misdetections,
            Action::ClearFilters => {
                self.misdetections = false;
                self.dataset = None;
                self.query.clear();
                self.class = None;
            }
            Action::Search => self.start_search(),
            Action::Jump => self.start_jump(),
            Action::ClassFilter => self.open_class_picker(ctx.results, ctx.analysis),
            _ => {}
        }
    }
}

impl Component for BrowserState {
    /// The class popup, then a search or jump being typed, take the keys
    /// before the list.
    fn mode(&self) -> Mode {
        if self.class_picker.is_some() {
            Mode::Picker
        } else if self.prompt.is_some() {
            Mode::Edit
        } else {
            Mode::Browser
        }
    }

    /// The rows follow in the app's `sync_views`.
    fn keys(&mut self, ctx: &Ctx, input: Input) -> Outcome {
        match input {
            Input::Char(c) => self.type_char(c),
            Input::Action(a) if self.capturing() => self.act_capturing(a),
            Input::Action(a) => self.act(ctx, a),
        }
        Outcome::None
    }

    /// In the image view: moving and going back only.
    fn hints(&self, ctx: &Ctx) -> Vec<(&'static str, &'static str, Action)> {
        let all = crate::tui::keymap::hints(self.mode(), ctx.running());
        if !self.detail || self.capturing() {
            return all;
        }
        let mut hints = vec![("Esc", "back", Action::ClearFilters)];
        hints.extend(
            all.into_iter()
                .filter(|h| matches!(h.2, Action::Up | Action::Help | Action::Quit)),
        );
        hints
    }

    fn draw(&self, ctx: &Ctx, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
        View {
            state: self,
            results: ctx.results,
            analysis: ctx.analysis,
            thresholds: ctx.thresholds,
            previews: ctx.previews,
            method: ctx.method,
            ood: ctx.ood_dataset(),
        }
        .render(area, buf, hits)
    }
}
