//! The image browser: every evaluated image, filtered and sorted, with its
//! predictions, scores, ID percentiles and a preview.

use crate::run::RunResults;
use crate::run::{ImageRecord, Role, RunInfo};
use crate::tui::analysis::Analysis;
use crate::tui::preview::Previews;
use crate::tui::theme;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect, Size};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Paragraph, Scrollbar, ScrollbarOrientation, ScrollbarState, StatefulWidget, Widget, Wrap,
};
use std::cell::Cell;
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
}

#[derive(Debug, Default)]
pub struct BrowserState {
    /// Show one dataset only (None: all).
    pub dataset: Option<usize>,
    /// Only images the current method gets wrong at its 95%-TPR threshold.
    pub misdetections: bool,
    pub sort: Sort,
    /// `(dataset, record)` of every row shown, in display order.
    pub rows: Vec<(usize, usize)>,
    /// Index into `rows`.
    pub selected: usize,
    key: Option<RowsKey>,
    offset: Cell<usize>,
    page: Cell<usize>,
    /// Where the last frame drew the preview (the app asks for it there).
    pub preview_area: Cell<Rect>,
}

/// Whether the current method misdetects an image: an OOD image scoring at
/// or above its set's threshold (accepted as ID), or an ID image below the
/// threshold of the OOD set in view (rejected).
pub fn misdetected(
    analysis: &Analysis,
    rec: &ImageRecord,
    role: Role,
    method: usize,
    ood: Option<usize>,
) -> Option<bool> {
    let score = *rec.scores.get(method)? as f64;
    match role {
        Role::Ood => analysis
            .point(method, rec.dataset)
            .map(|p| score >= p.threshold),
        Role::Id => analysis.point(method, ood?).map(|p| score < p.threshold),
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
                if self.misdetections && misdetected(analysis, rec, role, method, ood) != Some(true)
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
            (k.dataset, k.misdetections, k.sort) == (key.dataset, key.misdetections, key.sort)
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
        self.page.get().max(1) as isize
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
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("txt") || e.eq_ignore_ascii_case("lst"));
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

pub struct View<'a> {
    pub state: &'a BrowserState,
    pub results: &'a RunResults,
    pub analysis: &'a Analysis,
    pub previews: &'a Previews,
    pub method: usize,
    pub ood: Option<usize>,
}

impl View<'_> {
    pub fn render(&self, area: Rect, buf: &mut Buffer) {
        let Some(info) = &self.results.info else {
            Paragraph::new("No images yet: start an evaluation on the setup screen (1).")
                .block(Block::bordered().title(Span::styled(" Images ", theme::title())))
                .render(area, buf);
            return;
        };
        let side_w = (area.width * 2 / 5).clamp(30, 60);
        let [list, side] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(side_w)]).areas(area);
        self.render_list(info, list, buf);
        // Short terminals give the details (scores) the room.
        let preview_h = if side.height >= 30 {
            side.height / 2
        } else {
            (side.height / 3).max(5)
        };
        let [preview, details] =
            Layout::vertical([Constraint::Length(preview_h), Constraint::Fill(1)]).areas(side);
        self.render_preview(preview, buf);
        self.render_details(info, details, buf);
    }

    fn render_list(&self, info: &RunInfo, area: Rect, buf: &mut Buffer) {
        let s = self.state;
        let method = info.methods.get(self.method);
        let mname = method.map(|m| m.label()).unwrap_or("-");
        let filter = match s.dataset {
            None => "all sets".to_string(),
            Some(d) => info.datasets[d].name.clone(),
        };
        let sort = match s.sort {
            Sort::Evaluation => "evaluation order".to_string(),
            Sort::Descending => format!("{mname} ↓"),
            Sort::Ascending => format!("{mname} ↑"),
        };
        let mut title = vec![
            Span::styled(" Images ", theme::title()),
            Span::raw(format!(
                "{} · {filter} · {sort}",
                theme::count(s.rows.len())
            )),
        ];
        if s.misdetections {
            title.push(Span::styled(
                format!(" · ✗ {mname} misdetections"),
                theme::warn(),
            ));
        }
        title.push(Span::raw(" "));
        let position = match s.rows.len() {
            0 => String::new(),
            n => format!(
                " {}/{} ",
                theme::count(s.selected.min(n - 1) + 1),
                theme::count(n)
            ),
        };
        let block = Block::bordered()
            .title(Line::from(title))
            .title_bottom(Line::styled(
                " ≠: top-1 is not the label · ID pct: ID scores below ",
                theme::dim(),
            ))
            .title_bottom(
                Line::styled(position, theme::dim()).alignment(ratatui::layout::Alignment::Right),
            );
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 {
            return;
        }
        let w = inner.width as usize;
        // Narrow lists drop the top-1 column (the details pane has it).
        let (set_w, score_w, pct_w) = (set_width(info, w), 11usize, 7usize);
        let top_w = if w >= 64 { 20usize } else { 0 };
        let gap = |n: usize| usize::from(n > 0);
        let file_w = w.saturating_sub(2 + set_w + 1 + top_w + gap(top_w) + score_w + pct_w + 1);
        let header = format!(
            "  {:<set_w$} {:<file_w$} {:<top_w$}{}{:>score_w$}{:>pct_w$}",
            "set",
            "file",
            if top_w > 0 { "top-1" } else { "" },
            if top_w > 0 { " " } else { "" },
            theme::fit(mname, score_w),
            "ID pct",
        );
        Line::styled(
            theme::fit(&header, w),
            theme::dim().add_modifier(Modifier::BOLD),
        )
        .render(Rect { height: 1, ..inner }, buf);
        let body = Rect {
            y: inner.y + 1,
            height: inner.height - 1,
            ..inner
        };
        let h = body.height as usize;
        s.page.set(h);
        if s.rows.is_empty() {
            let msg = if s.misdetections {
                "No misdetections (or no threshold yet: the OOD set needs images)."
            } else {
                "No images match."
            };
            Line::styled(msg, theme::dim()).render(body, buf);
            return;
        }
        let mut offset = s.offset.get().min(s.rows.len().saturating_sub(1));
        if s.selected < offset {
            offset = s.selected;
        } else if s.selected >= offset + h {
            offset = s.selected + 1 - h;
        }
        s.offset.set(offset);
        let span = self
            .analysis
            .sorted
            .iter()
            .filter_map(|d| d.get(self.method))
            .filter(|v| !v.is_empty())
            .map(|v| v[v.len() - 1] - v[0])
            .fold(0.0, f64::max);
        for (k, &(d, i)) in s.rows.iter().enumerate().skip(offset).take(h) {
            let rec = &self.results.records[d][i];
            let ds = &info.datasets[d];
            let role_style = Style::new().fg(match ds.role {
                Role::Id => theme::ID,
                Role::Ood => theme::OOD,
            });
            // ≠: an ID image whose top-1 class is not its label.
            let top = match rec.top.first() {
                Some(&(c, p)) if top_w > 0 => {
                    let wrong = rec.label.is_some_and(|l| l != c);
                    format!(
                        "{:<top_w$} ",
                        format!(
                            "{}{} {}",
                            if wrong { "≠" } else { "" },
                            theme::fit(&short_name(info, c), top_w - 5 - usize::from(wrong)),
                            theme::percent(p as f64, 0)
                        )
                    )
                }
                _ => String::new(),
            };
            let score = rec.scores.get(self.method).map(|&v| v as f64);
            let pct = score
                .and_then(|v| self.analysis.id_percentile(self.method, v))
                .map(|p| theme::percent(p, 1))
                .unwrap_or_else(|| "-".into());
            let wrong = misdetected(self.analysis, rec, ds.role, self.method, self.ood);
            let mark = if wrong == Some(true) { "✗" } else { " " };
            let line = Line::from(vec![
                Span::styled(format!("{mark} "), theme::warn()),
                Span::styled(
                    format!("{:<set_w$} ", theme::fit(&ds.name, set_w)),
                    role_style,
                ),
                Span::raw(format!(
                    "{:<file_w$} ",
                    theme::fit_left(&display_path(info, rec), file_w)
                )),
                Span::raw(top),
                Span::raw(format!(
                    "{:>score_w$}",
                    score
                        .map(|v| theme::num(v, span))
                        .unwrap_or_else(|| "-".into())
                )),
                Span::styled(format!("{pct:>pct_w$}"), theme::dim()),
            ]);
            let line = if k == s.selected {
                line.style(theme::selected())
            } else {
                line
            };
            line.render(
                Rect {
                    y: body.y + (k - offset) as u16,
                    height: 1,
                    ..body
                },
                buf,
            );
        }
        if s.rows.len() > h {
            let mut bar = ScrollbarState::new(s.rows.len()).position(s.selected);
            let track = Rect {
                y: area.y + 1,
                height: area.height.saturating_sub(2),
                ..area
            };
            Scrollbar::new(ScrollbarOrientation::VerticalRight)
                .begin_symbol(None)
                .end_symbol(None)
                .render(track, buf, &mut bar);
        }
    }

    fn render_preview(&self, area: Rect, buf: &mut Buffer) {
        let block = Block::bordered().title(Span::styled(" Preview ", theme::title()));
        let inner = block.inner(area);
        block.render(area, buf);
        self.state.preview_area.set(inner);
        let Some((d, i)) = self.state.current() else {
            return;
        };
        let path = &self.results.records[d][i].path;
        let size = Size::new(inner.width, inner.height);
        if !self.previews.enabled() {
            Line::styled("previews are off", theme::dim()).render(inner, buf);
            return;
        }
        match self.previews.get(path, size) {
            Some(Ok(proto)) => {
                // Centre the (aspect-kept) image in the pane.
                let s = proto.size();
                let x = inner.x + inner.width.saturating_sub(s.width) / 2;
                let y = inner.y + inner.height.saturating_sub(s.height) / 2;
                let at = Rect::new(x, y, s.width.min(inner.width), s.height.min(inner.height));
                ratatui_image::Image::new(proto).render(at, buf);
            }
            Some(Err(e)) => Paragraph::new(e.as_str())
                .style(theme::error())
                .wrap(Wrap { trim: true })
                .render(inner, buf),
            None => Line::styled("loading…", theme::dim()).render(inner, buf),
        }
    }

    fn render_details(&self, info: &RunInfo, area: Rect, buf: &mut Buffer) {
        let block = Block::bordered().title(Span::styled(" Details ", theme::title()));
        let Some((d, i)) = self.state.current() else {
            block.render(area, buf);
            return;
        };
        let rec = &self.results.records[d][i];
        let ds = &info.datasets[d];
        let role = match ds.role {
            Role::Id => Span::styled("ID", Style::new().fg(theme::ID)),
            Role::Ood => Span::styled("OOD", Style::new().fg(theme::OOD)),
        };
        let mut head = vec![Span::raw(format!("{} ", ds.name)), role];
        if let Some(l) = rec.label {
            head.push(Span::raw(format!(" · label {l} {}", short_name(info, l))));
        }
        let mut lines = vec![
            Line::from(head),
            Line::styled(rec.path.display().to_string(), theme::dim()),
            Line::styled("score        value ID pct call", theme::title()),
        ];
        for (m, method) in info.methods.iter().enumerate() {
            let v = rec.scores.get(m).map(|&v| v as f64).unwrap_or(f64::NAN);
            let span = {
                let s = self.analysis.sorted(0, m);
                if s.is_empty() {
                    v.abs()
                } else {
                    s[s.len() - 1] - s[0]
                }
            };
            let pct = self
                .analysis
                .id_percentile(m, v)
                .map(|p| theme::percent(p, 1))
                .unwrap_or_else(|| "-".into());
            let wrong = misdetected(self.analysis, rec, ds.role, m, self.ood);
            // Called ID when the score reaches the threshold.
            let (call, verdict) = match wrong {
                Some(w) => (
                    if (ds.role == Role::Id) != w {
                        "ID "
                    } else {
                        "OOD"
                    },
                    if w {
                        Span::styled("✗", theme::error())
                    } else {
                        Span::styled("✓", Style::new().fg(theme::GOOD))
                    },
                ),
                None => ("   ", Span::styled("-", theme::dim())),
            };
            let line = Line::from(vec![
                Span::raw(format!(
                    "{:<8} {:>9} {:>6} {call}",
                    theme::fit(method.label(), 8),
                    theme::fit(&theme::num(v, span), 9),
                    pct
                )),
                verdict,
            ]);
            lines.push(if m == self.method {
                line.style(Style::new().add_modifier(Modifier::BOLD))
            } else {
                line
            });
        }
        lines.push(Line::styled(
            format!(
                "Σ|C·p−1| {} · ||h||₁ {}",
                theme::num(rec.softmax_term as f64, rec.softmax_term as f64),
                theme::num(rec.feature_l1 as f64, rec.feature_l1 as f64)
            ),
            theme::dim(),
        ));
        lines.push(Line::styled("top-5", theme::title()));
        for &(c, p) in rec.top.iter().take(5) {
            let hit = rec.label == Some(c);
            lines.push(Line::from(vec![
                Span::raw(format!("{:>7} ", theme::percent(p as f64, 2))),
                Span::styled(
                    short_name(info, c),
                    if hit { theme::best() } else { Style::new() },
                ),
            ]));
        }
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .render(area, buf);
    }
}
