//! The browser's drawing: the list with its filters, the preview and the
//! details of the image under the cursor.

use super::{display_path, misdetected, set_width, short_name, BrowserState, Prompt, Sort};
use crate::tui::analysis::{Analysis, Thresholds};
use crate::tui::mouse::{Hits, Target};
use crate::tui::preview::Previews;
use crate::tui::theme;
use gradnorm_core::run::RunResults;
use gradnorm_core::run::{Role, RunInfo};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect, Size};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Paragraph, Scrollbar, ScrollbarOrientation, ScrollbarState, StatefulWidget, Widget, Wrap,
};

pub(crate) struct View<'a> {
    pub state: &'a BrowserState,
    pub results: &'a RunResults,
    pub analysis: &'a Analysis,
    pub thresholds: &'a Thresholds,
    pub previews: &'a Previews,
    pub method: usize,
    pub ood: Option<usize>,
}

impl View<'_> {
    pub(crate) fn render(&self, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
        let Some(info) = &self.results.info else {
            Paragraph::new("No images yet: start an evaluation on the setup screen (1).")
                .block(Block::bordered().title(Span::styled(" Images ", theme::title())))
                .render(area, buf);
            return;
        };
        if self.state.detail && self.state.current().is_some() {
            self.render_image(info, area, buf, hits);
            return;
        }
        let side_w = (area.width * 2 / 5).clamp(30, 60);
        let [list, side] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(side_w)]).areas(area);
        self.render_list(info, list, buf, hits);
        // Short terminals give the details (scores) the room.
        let preview_h = if side.height >= 30 {
            side.height / 2
        } else {
            (side.height / 3).max(5)
        };
        let [preview, details] =
            Layout::vertical([Constraint::Length(preview_h), Constraint::Fill(1)]).areas(side);
        self.render_preview(preview, buf, hits);
        self.render_details(info, details, buf);
        if let Some((p, _)) = &self.state.class_picker {
            crate::tui::setup::view::render_picker(p, &[], area, buf, &mut hits.targets);
        }
    }

    /// The image selected in full: the preview as large as the screen
    /// leaves, beside every method's score and call and the top-5.
    fn render_image(&self, info: &RunInfo, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
        let side_w = (area.width / 3).clamp(32, 48);
        let [preview, details] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(side_w)]).areas(area);
        self.render_preview(preview, buf, hits);
        self.render_details(info, details, buf);
        let s = self.state;
        let at = format!(
            " image {}/{} · ↑↓ next · Esc back ",
            theme::count(s.selected + 1),
            theme::count(s.rows.len())
        );
        // On the preview's top border, inside its corners.
        let top = Rect {
            x: preview.x + 1,
            width: preview.width.saturating_sub(2),
            height: 1,
            ..preview
        };
        Line::styled(at, theme::dim())
            .right_aligned()
            .render(top, buf);
    }

    fn render_list(&self, info: &RunInfo, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
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
        if let Some(c) = s.class {
            title.push(Span::styled(
                format!(" · top-1 {}", short_name(info, c)),
                theme::warn(),
            ));
        }
        if !s.query.is_empty() && s.prompt.is_none() {
            title.push(Span::styled(format!(" · /{}", s.query), theme::warn()));
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
        let legend = match &s.prompt {
            Some(Prompt::Search { .. }) => Line::from(vec![
                Span::styled(" search file names: /", theme::title()),
                Span::styled(
                    s.query.clone(),
                    Style::new().add_modifier(Modifier::UNDERLINED),
                ),
                Span::raw("█ "),
            ]),
            Some(Prompt::Jump(t)) => Line::from(vec![
                Span::styled(" go to image number: ", theme::title()),
                Span::styled(t.clone(), Style::new().add_modifier(Modifier::UNDERLINED)),
                Span::raw("█ "),
            ]),
            None => Line::styled(
                " ≠: top-1 is not the label · ID pct: ID scores below ",
                theme::dim(),
            ),
        };
        let block = Block::bordered()
            .title(Line::from(title))
            .title_bottom(legend)
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
        hits.list = Some((h, s.offset));
        if s.rows.is_empty() {
            let msg = if s.misdetections {
                "No misdetections (or no threshold yet: the OOD set needs images)."
            } else {
                "No images match."
            };
            Line::styled(msg, theme::dim()).render(body, buf);
            return;
        }
        let mut offset = s.offset.min(s.rows.len().saturating_sub(1));
        if s.selected < offset {
            offset = s.selected;
        } else if s.selected >= offset + h {
            offset = s.selected + 1 - h;
        }
        hits.list = Some((h, offset));
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
            let wrong = misdetected(
                self.analysis,
                self.thresholds,
                rec,
                ds.role,
                self.method,
                self.ood,
            );
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
            let at = Rect {
                y: body.y + (k - offset) as u16,
                height: 1,
                ..body
            };
            line.render(at, buf);
            hits.targets.push(at, Target::ImageRow(k));
        }
        if s.rows.len() > h {
            let mut bar = ScrollbarState::new(s.rows.len()).position(s.selected);
            // Beside the rows, not the column header.
            let track = Rect {
                y: body.y,
                height: body.height,
                ..area
            };
            Scrollbar::new(ScrollbarOrientation::VerticalRight)
                .begin_symbol(None)
                .end_symbol(None)
                .render(track, buf, &mut bar);
        }
    }

    fn render_preview(&self, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
        let block = Block::bordered().title(Span::styled(" Preview ", theme::title()));
        let inner = block.inner(area);
        block.render(area, buf);
        hits.preview = inner;
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
        let inner = block.inner(area);
        let w = inner.width as usize;
        // The methods take what the head (3 lines), the factors and the
        // top-5 leave, scrolled to the method in view when they do not fit.
        let n = info.methods.len();
        let tail = 2 + rec.top.len().min(5);
        let room = (inner.height as usize).saturating_sub(3 + tail).max(3);
        let (first, shown) = if n <= room {
            (0, n)
        } else {
            (self.method.saturating_sub(room / 2).min(n - room), room)
        };
        let block = if shown < n {
            block.title(Span::styled(
                format!(" methods {}-{}/{n} (m) ", first + 1, first + shown),
                theme::warn(),
            ))
        } else {
            block
        };
        let mut lines = vec![
            Line::from(head),
            Line::styled(
                theme::fit_left(&rec.path.display().to_string(), w),
                theme::dim(),
            ),
            Line::styled("score        value ID pct call", theme::title()),
        ];
        for (m, method) in info.methods.iter().enumerate().skip(first).take(shown) {
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
            let wrong = misdetected(self.analysis, self.thresholds, rec, ds.role, m, self.ood);
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
