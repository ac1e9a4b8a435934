//! Inspection beyond the anchors: which ID classes absorb the OOD set in
//! view (the top-1 classes of its false positives at the threshold in
//! view), and the images on which two methods disagree most (their scores'
//! percentiles among the ID scores, far apart).

use super::browser::{display_path, short_name};
use crate::tui::analysis::Analysis;
use crate::tui::component::{Component, Ctx, Input, Outcome};
use crate::tui::keymap::{Action, Mode};
use crate::tui::mouse::Hits;
use crate::tui::theme;
use gradnorm_core::run::{Role, RunInfo, RunResults};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

/// Top-1 classes of the OOD set's images at or above `threshold` (taken
/// for ID), most frequent first (ties by class index), with their counts.
pub fn absorbing_classes(
    results: &RunResults,
    method: usize,
    ood: usize,
    threshold: f64,
) -> Vec<(usize, usize)> {
    let mut counts = std::collections::BTreeMap::<usize, usize>::new();
    for rec in results.records.get(ood).into_iter().flatten() {
        let accepted = rec
            .scores
            .get(method)
            .is_some_and(|&s| s as f64 >= threshold);
        if let (true, Some(&(class, _))) = (accepted, rec.top.first()) {
            *counts.entry(class).or_default() += 1;
        }
    }
    let mut v: Vec<(usize, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// One image two methods rank differently: its ID percentile under each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disagreement {
    pub dataset: usize,
    pub index: usize,
    pub first: f64,
    pub second: f64,
}

/// The `k` images of the ID set and the OOD set in view (as analysed) whose
/// ID percentiles under methods `a` and `b` differ most.
pub fn disagreements(
    results: &RunResults,
    analysis: &Analysis,
    a: usize,
    b: usize,
    ood: usize,
    k: usize,
) -> Vec<Disagreement> {
    let mut v = Vec::new();
    for d in [0, ood] {
        let n = analysis.counts.get(d).copied().unwrap_or(0);
        for (i, rec) in results.records[d].iter().take(n).enumerate() {
            let pct = |m: usize| {
                rec.scores
                    .get(m)
                    .and_then(|&s| analysis.id_percentile(m, s as f64))
            };
            if let (Some(first), Some(second)) = (pct(a), pct(b)) {
                v.push(Disagreement {
                    dataset: d,
                    index: i,
                    first,
                    second,
                });
            }
        }
    }
    v.sort_by(|x, y| {
        let gap = |z: &Disagreement| (z.first - z.second).abs();
        gap(y).total_cmp(&gap(x))
    });
    v.truncate(k);
    v
}

/// The Inspect screen: its own state is the second method compared.
#[derive(Debug)]
pub struct Inspect {
    /// The second method, as an offset from the first (1: the next one).
    second: usize,
}

impl Default for Inspect {
    fn default() -> Inspect {
        Inspect { second: 1 }
    }
}

impl Inspect {
    /// The method compared with the one in view.
    pub fn second_method(&self, ctx: &Ctx) -> usize {
        let n = ctx.n_methods().max(1);
        let off = self.second % n;
        (ctx.method + if off == 0 && n > 1 { 1 } else { off }) % n
    }
}

impl Component for Inspect {
    fn mode(&self) -> Mode {
        Mode::Inspect
    }

    fn keys(&mut self, ctx: &Ctx, input: Input) -> Outcome {
        if input == Input::Action(Action::NextSecond) {
            let n = ctx.n_methods().max(1);
            self.second = (self.second + 1) % n;
        }
        Outcome::None
    }

    fn draw(&self, ctx: &Ctx, area: Rect, buf: &mut Buffer, _: &mut Hits) {
        render(ctx, self.second_method(ctx), area, buf)
    }
}

fn render(ctx: &Ctx, second: usize, area: Rect, buf: &mut Buffer) {
    let (Some(info), Some(ood)) = (ctx.results.info.as_ref(), ctx.ood_dataset()) else {
        Paragraph::new("Nothing to inspect yet: start an evaluation on the setup screen (1).")
            .block(Block::bordered().title(Span::styled(" Inspect ", theme::title())))
            .render(area, buf);
        return;
    };
    let wide = area.width >= 100;
    let [left, right] = if wide {
        Layout::horizontal([Constraint::Fill(2), Constraint::Fill(3)]).areas(area)
    } else {
        Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(area)
    };
    render_absorbing(ctx, info, ood, left, buf);
    render_disagreements(ctx, second, info, ood, right, buf);
}

fn render_absorbing(ctx: &Ctx, info: &RunInfo, ood: usize, area: Rect, buf: &mut Buffer) {
    let method = info.methods.get(ctx.method).map_or("-", |m| m.label());
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(" ID classes absorbing ", theme::title()),
        Span::styled(info.datasets[ood].name.clone(), Style::new().fg(theme::OOD)),
        Span::raw(format!(" · {method} ")),
    ]));
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(t) = ctx.current_threshold() else {
        Line::styled("waiting for both sets…", theme::dim()).render(inner, buf);
        return;
    };
    let classes = absorbing_classes(ctx.results, ctx.method, ood, t);
    let total: usize = classes.iter().map(|c| c.1).sum();
    let mut lines = vec![Line::styled(
        format!("{} false positives · top-1 class:", theme::count(total)),
        theme::dim(),
    )];
    let w = inner.width as usize;
    let name_w = (w / 2).clamp(10, 28);
    let bar_w = w.saturating_sub(name_w + 16);
    let top = classes.first().map_or(1, |c| c.1);
    for &(class, n) in classes.iter().take(inner.height.saturating_sub(1) as usize) {
        let bar = "█".repeat((bar_w * n).div_ceil(top.max(1)).min(bar_w));
        lines.push(Line::from(vec![
            Span::raw(format!(
                "{:<name_w$} {:>5} {:>6} ",
                theme::fit(&short_name(info, class), name_w),
                theme::count(n),
                theme::percent(n as f64 / total.max(1) as f64, 1)
            )),
            Span::styled(bar, Style::new().fg(theme::OOD)),
        ]));
    }
    Paragraph::new(lines).render(inner, buf);
}

fn render_disagreements(
    ctx: &Ctx,
    second: usize,
    info: &RunInfo,
    ood: usize,
    area: Rect,
    buf: &mut Buffer,
) {
    let n = info.methods.len();
    let (a, b) = (ctx.method, second);
    let label = |m: usize| info.methods.get(m).map_or("-", |x| x.label());
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(" Where ", theme::title()),
        Span::raw(format!("{} and {}", label(a), label(b))),
        Span::styled(" disagree most ", theme::title()),
        Span::styled("(m, n: the two methods) ", theme::dim()),
    ]));
    let inner = block.inner(area);
    block.render(area, buf);
    if n < 2 {
        Line::styled("one method only: nothing to compare", theme::dim()).render(inner, buf);
        return;
    }
    let rows = inner.height.saturating_sub(2) as usize;
    let found = disagreements(ctx.results, ctx.analysis, a, b, ood, rows);
    let w = inner.width as usize;
    let (set_w, pct_w) = (super::browser::set_width(info, w), 9usize);
    let file_w = w.saturating_sub(set_w + 2 * pct_w + 3);
    let mut lines = vec![
        Line::styled(
            "ID percentile of each image's score under each method:",
            theme::dim(),
        ),
        Line::styled(
            format!(
                "{:<set_w$} {:<file_w$} {:>pct_w$} {:>pct_w$}",
                "set",
                "file",
                theme::fit(label(a), pct_w),
                theme::fit(label(b), pct_w)
            ),
            theme::dim(),
        ),
    ];
    for x in found {
        let rec = &ctx.results.records[x.dataset][x.index];
        let role = info.datasets[x.dataset].role;
        let color = if role == Role::Id {
            theme::ID
        } else {
            theme::OOD
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!(
                    "{:<set_w$} ",
                    theme::fit(&info.datasets[x.dataset].name, set_w)
                ),
                Style::new().fg(color),
            ),
            Span::raw(format!(
                "{:<file_w$} {:>pct_w$} {:>pct_w$}",
                theme::fit_left(&display_path(info, rec), file_w),
                theme::percent(x.first, 1),
                theme::percent(x.second, 1),
            )),
        ]));
    }
    Paragraph::new(lines).render(inner, buf);
}
