//! Inspection beyond the anchors: which ID classes absorb the OOD set in
//! view (the top-1 classes of its false positives at the threshold in
//! view), and the images two methods call differently at their thresholds
//! (accepted as ID by one, rejected by the other), strongest first, with a
//! cursor: Enter opens the image in the browser.

use super::browser::{display_path, short_name};
use crate::tui::analysis::{Analysis, Thresholds};
use crate::tui::component::{Component, Ctx, Input, Outcome};
use crate::tui::keymap::{Action, Mode};
use crate::tui::mouse::{Hits, Target};
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

/// One image two methods call differently at their thresholds: accepted
/// as ID by one, rejected by the other.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disagreement {
    pub dataset: usize,
    pub index: usize,
    /// The image's ID percentile under each method.
    pub first: f64,
    pub second: f64,
    /// The first method accepts it (and the second rejects it).
    pub first_accepts: bool,
    /// How far each method's score is from its threshold, in ID
    /// percentiles, summed: both sure of opposite calls ranks first.
    pub strength: f64,
}

/// The images of the ID set and the OOD set in view (as analysed) that
/// methods `a` and `b` call differently at their thresholds (the ones in
/// use: moved on the dashboard, else 95% TPR), strongest first; empty
/// before both have a threshold.
pub fn disagreements(
    results: &RunResults,
    analysis: &Analysis,
    thresholds: &Thresholds,
    a: usize,
    b: usize,
    ood: usize,
) -> Vec<Disagreement> {
    let (Some(ta), Some(tb)) = (
        thresholds.get(analysis, a, ood),
        thresholds.get(analysis, b, ood),
    ) else {
        return Vec::new();
    };
    let (Some(pa), Some(pb)) = (analysis.id_percentile(a, ta), analysis.id_percentile(b, tb))
    else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for d in [0, ood] {
        let n = analysis.counts.get(d).copied().unwrap_or(0);
        for (i, rec) in results.records[d].iter().take(n).enumerate() {
            let (Some(&sa), Some(&sb)) = (rec.scores.get(a), rec.scores.get(b)) else {
                continue;
            };
            let (sa, sb) = (sa as f64, sb as f64);
            let accepts = sa >= ta;
            if accepts == (sb >= tb) {
                continue;
            }
            let (Some(first), Some(second)) =
                (analysis.id_percentile(a, sa), analysis.id_percentile(b, sb))
            else {
                continue;
            };
            v.push(Disagreement {
                dataset: d,
                index: i,
                first,
                second,
                first_accepts: accepts,
                strength: (first - pa).abs() + (second - pb).abs(),
            });
        }
    }
    // Stable: equal strengths keep the sets' and records' order.
    v.sort_by(|x, y| y.strength.total_cmp(&x.strength));
    v
}

/// The Inspect screen: its own state is the second method compared and the
/// cursor in the list of disagreements.
#[derive(Debug)]
pub struct Inspect {
    /// The second method, as an offset from the first (1: the next one).
    second: usize,
    /// Index into the disagreements (kept in range when read).
    selected: usize,
}

impl Default for Inspect {
    fn default() -> Inspect {
        Inspect {
            second: 1,
            selected: 0,
        }
    }
}

impl Inspect {
    /// The method compared with the one in view.
    pub fn second_method(&self, ctx: &Ctx) -> usize {
        let n = ctx.n_methods().max(1);
        let off = self.second % n;
        (ctx.method + if off == 0 && n > 1 { 1 } else { off }) % n
    }

    /// The disagreements of the methods and OOD set in view.
    pub fn found(&self, ctx: &Ctx) -> Vec<Disagreement> {
        match ctx.ood_dataset() {
            Some(ood) if ctx.n_methods() > 1 => disagreements(
                ctx.results,
                ctx.analysis,
                ctx.thresholds,
                ctx.method,
                self.second_method(ctx),
                ood,
            ),
            _ => Vec::new(),
        }
    }

    /// The cursor, within a list of `n`.
    pub fn selected(&self, n: usize) -> usize {
        self.selected.min(n.saturating_sub(1))
    }

    /// A click on row `k`: selects it, or, selected already, says so
    /// (true: the app opens it as Enter would).
    pub fn click(&mut self, k: usize) -> bool {
        let again = self.selected == k;
        self.selected = k;
        again
    }
}

impl Component for Inspect {
    fn mode(&self) -> Mode {
        Mode::Inspect
    }

    fn keys(&mut self, ctx: &Ctx, input: Input) -> Outcome {
        let Input::Action(action) = input else {
            return Outcome::None;
        };
        if action == Action::NextSecond {
            let n = ctx.n_methods().max(1);
            self.second = (self.second + 1) % n;
            self.selected = 0;
            return Outcome::None;
        }
        let found = self.found(ctx);
        let last = found.len().saturating_sub(1);
        let at = self.selected(found.len());
        self.selected = match action {
            Action::Top => 0,
            Action::Bottom => last,
            a => match crate::tui::keymap::list_step(a) {
                Some(step) => (at as isize + step).clamp(0, last as isize) as usize,
                None => at,
            },
        };
        match (action, found.get(self.selected)) {
            (Action::Activate, Some(x)) => Outcome::OpenImage(x.dataset, x.index),
            _ => Outcome::None,
        }
    }

    fn draw(&self, ctx: &Ctx, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
        render(ctx, self, area, buf, hits)
    }
}

fn render(ctx: &Ctx, state: &Inspect, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
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
    render_disagreements(ctx, state, info, right, buf, hits);
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
    state: &Inspect,
    info: &RunInfo,
    area: Rect,
    buf: &mut Buffer,
    hits: &mut Hits,
) {
    let n = info.methods.len();
    let (a, b) = (ctx.method, state.second_method(ctx));
    let label = |m: usize| info.methods.get(m).map_or("-", |x| x.label());
    let found = state.found(ctx);
    let block = Block::bordered()
        .title(Line::from(vec![
            Span::styled(" Where ", theme::title()),
            Span::raw(format!("{} and {}", label(a), label(b))),
            Span::styled(" disagree ", theme::title()),
            Span::styled("(m, n: the two methods) ", theme::dim()),
        ]))
        .title_bottom(Line::styled(
            " ↑↓ move · Enter: the image in the browser ",
            theme::dim(),
        ));
    let inner = block.inner(area);
    block.render(area, buf);
    if n < 2 {
        Line::styled("one method only: nothing to compare", theme::dim()).render(inner, buf);
        return;
    }
    let w = inner.width as usize;
    let (set_w, call_w) = (super::browser::set_width(info, w), 13usize);
    let file_w = w.saturating_sub(set_w + 2 * call_w + 3);
    let mut lines = vec![
        Line::styled(
            theme::fit(
                &format!(
                    "{} images called ID by one, OOD by the other · strongest first:",
                    theme::count(found.len())
                ),
                w,
            ),
            theme::dim(),
        ),
        Line::styled(
            format!(
                "{:<set_w$} {:<file_w$} {:>call_w$} {:>call_w$}",
                "set",
                "file",
                theme::fit(label(a), call_w),
                theme::fit(label(b), call_w)
            ),
            theme::dim(),
        ),
    ];
    let rows = inner.height.saturating_sub(2) as usize;
    let selected = state.selected(found.len());
    // The cursor stays in view: the list scrolls under it.
    let first = selected.saturating_sub(rows.saturating_sub(1));
    for (k, x) in found.iter().enumerate().skip(first).take(rows) {
        let rec = &ctx.results.records[x.dataset][x.index];
        let role = info.datasets[x.dataset].role;
        let color = if role == Role::Id {
            theme::ID
        } else {
            theme::OOD
        };
        let call = |pct: f64, accepts: bool| {
            format!(
                "{} {}",
                theme::percent(pct, 1),
                if accepts { "ID " } else { "OOD" }
            )
        };
        let line = Line::from(vec![
            Span::styled(
                format!(
                    "{:<set_w$} ",
                    theme::fit(&info.datasets[x.dataset].name, set_w)
                ),
                Style::new().fg(color),
            ),
            Span::raw(format!(
                "{:<file_w$} {:>call_w$} {:>call_w$}",
                theme::fit_left(&display_path(info, rec), file_w),
                call(x.first, x.first_accepts),
                call(x.second, !x.first_accepts),
            )),
        ]);
        lines.push(if k == selected {
            line.style(theme::selected())
        } else {
            line
        });
        let at = Rect {
            y: inner.y + 2 + (k - first) as u16,
            height: 1,
            ..inner
        };
        hits.targets.push(at, Target::Disagreement(k));
    }
    if found.is_empty() {
        lines.push(Line::styled(
            "none: the two methods call every image alike (or a set has no threshold yet)",
            theme::dim(),
        ));
    }
    Paragraph::new(lines).render(inner, buf);
}
