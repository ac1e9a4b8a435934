//! The dashboard's metrics table: one row per method, a column group per
//! OOD set (as many as the width holds) and the average, with the best value
//! of each column marked, and the per-group rows of a run with set groups.

use crate::tui::analysis::{self, Analysis};
use crate::tui::component::Ctx;
use crate::tui::mouse::{Hits, Target};
use crate::tui::theme;
use gradnorm_core::metrics::Measures;
use gradnorm_core::run::RunInfo;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

/// Which value is best in a column: lower FPR95, higher everything else.
fn best_of(values: &[Option<f64>], lower_is_better: bool) -> Option<f64> {
    let it = values.iter().flatten().copied().filter(|v| v.is_finite());
    if lower_is_better {
        it.fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.min(v))))
    } else {
        it.fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))))
    }
}

/// The four columns of a group, in table order.
/// (header, lower is better, width).
pub const COLUMNS: [(&str, bool, usize); 4] = [
    ("FPR95↓", true, 8),
    ("AUROC↑", false, 8),
    ("AUPR-In", false, 8),
    ("AUPR-Out", false, 9),
];
const METHOD_W: usize = 10;
/// A group: one space and the four columns.
const GROUP_W: usize = 34;

fn column(m: &Measures, c: usize) -> f64 {
    match c {
        0 => m.fpr95,
        1 => m.auroc,
        2 => m.aupr_in,
        _ => m.aupr_out,
    }
}

/// Column groups of the table: an OOD dataset index, or None for the average.
pub fn groups(ctx: &Ctx, width: u16) -> Vec<Option<usize>> {
    let (start, fit, _) = window(ctx, width);
    let mut g: Vec<Option<usize>> = ctx
        .ood_datasets()
        .iter()
        .skip(start)
        .take(fit)
        .map(|&d| Some(d))
        .collect();
    g.push(None);
    g
}

/// The OOD sets the table shows in `width`: (first, how many, how many in
/// all), the one in view always among them.
fn window(ctx: &Ctx, width: u16) -> (usize, usize, usize) {
    let n = ctx.ood_datasets().len();
    let fit = ((width as usize).saturating_sub(METHOD_W + 2) / GROUP_W).max(2) - 1;
    let sel = ctx.ood.min(n.saturating_sub(1));
    let start = if n <= fit {
        0
    } else {
        sel.saturating_sub(fit - 1).min(n - fit)
    };
    (start, fit.min(n), n)
}

/// What says that OOD sets are off the table's sides (a narrow terminal):
/// "← 1 set · 2 sets →", or None when every set is shown.
pub fn hidden_sets(ctx: &Ctx, width: u16) -> Option<String> {
    let (start, shown, n) = window(ctx, width);
    let right = n.saturating_sub(start + shown);
    let sets = |k: usize| format!("{k} set{}", if k == 1 { "" } else { "s" });
    match (start, right) {
        (0, 0) => None,
        (l, 0) => Some(format!("← +{} (←→)", sets(l))),
        (0, r) => Some(format!("+{} → (←→)", sets(r))),
        (l, r) => Some(format!("← +{} · +{} →", sets(l), sets(r))),
    }
}

fn measures_of(a: &Analysis, m: usize, group: Option<usize>) -> Option<Measures> {
    match group {
        Some(d) => a.measures(m, d),
        None => a.average.get(m).copied().flatten(),
    }
}

/// A row per group of OOD sets (OpenOOD's near and far): the selected
/// method's mean over the group's sets that have figures.
pub(super) fn group_rows(ctx: &Ctx, info: &RunInfo) -> Vec<Line<'static>> {
    let Some(method) = info.methods.get(ctx.method) else {
        return Vec::new();
    };
    gradnorm_core::run::dataset_groups(&info.datasets)
        .into_iter()
        .map(|(group, sets)| {
            let all: Vec<Measures> = sets
                .iter()
                .filter_map(|&d| ctx.analysis.measures(ctx.method, d))
                .collect();
            let figures = match gradnorm_core::metrics::mean(&all) {
                Some(m) => COLUMNS
                    .iter()
                    .enumerate()
                    .map(|(c, (name, _, _))| format!("{name} {}", theme::pct(column(&m, c))))
                    .collect::<Vec<_>>()
                    .join(" · "),
                None => "-".into(),
            };
            let names: Vec<&str> = sets
                .iter()
                .map(|&d| info.datasets[d].name.as_str())
                .collect();
            Line::from(vec![
                Span::styled(
                    format!(
                        "  {:<w$}",
                        theme::fit(
                            &gradnorm_core::run::report::group_column(&group),
                            METHOD_W - 2
                        ),
                        w = METHOD_W - 2
                    ),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!(" {}: {figures} ", method.label())),
                Span::styled(
                    format!("({} of {})", all.len(), names.join(", ")),
                    theme::dim(),
                ),
            ])
        })
        .collect()
}

/// The selected method's AUROC and FPR95 against the OOD set in view with
/// one standard error each, while that error is at least 0.5 points (few
/// images in): the numbers above are estimates until then.
pub(super) fn uncertainty(ctx: &Ctx) -> Option<Line<'static>> {
    let d = ctx.ood_dataset()?;
    let m = ctx.analysis.measures(ctx.method, d)?;
    let (n_id, n_ood) = (
        ctx.analysis.sorted(0, ctx.method).len(),
        ctx.analysis.sorted(d, ctx.method).len(),
    );
    let se_auroc = analysis::auroc_se(m.auroc, n_id, n_ood);
    // The paper's FPR95 is a share of the OOD images, OpenOOD's of the ID.
    let n_fpr = match ctx.analysis.convention {
        gradnorm_core::metrics::Convention::Paper => n_ood,
        gradnorm_core::metrics::Convention::OpenOod => n_id,
    };
    let se_fpr = analysis::rate_se(m.fpr95, n_fpr);
    // NaN (no images) or narrow: nothing to warn of.
    if se_auroc.max(se_fpr).is_nan() || se_auroc.max(se_fpr) < 0.005 {
        return None;
    }
    Some(Line::styled(
        format!(
            "  ± one standard error, {} ID and {} OOD images in: AUROC {} ± {} · FPR95 {} ± {}",
            theme::count(n_id),
            theme::count(n_ood),
            theme::pct(m.auroc),
            theme::pct(se_auroc),
            theme::pct(m.fpr95),
            theme::pct(se_fpr)
        ),
        theme::warn(),
    ))
}

/// The method rows the table shows in `height` lines (two of headers, then
/// the methods, then `extra` lines where room is left, kept while scrolling
/// when three methods still fit beside them): (first, how many), the
/// selected one among them, centred while the list goes on both sides.
/// Drawing keeps no scroll state: the selection decides.
pub fn method_window(n: usize, selected: usize, height: usize, extra: usize) -> (usize, usize) {
    let room = height.saturating_sub(2);
    if room >= n {
        return (0, n);
    }
    let rows = if room >= extra + 3 {
        room - extra
    } else {
        room
    }
    .max(1);
    let first = selected.saturating_sub(rows / 2).min(n - rows);
    (first, rows)
}

pub(super) fn render_table(
    ctx: &Ctx,
    info: &RunInfo,
    area: Rect,
    buf: &mut Buffer,
    hits: &mut Hits,
) {
    let title = match ctx.analysis.convention {
        gradnorm_core::metrics::Convention::Paper => " Metrics (%) ".to_string(),
        c => format!(" Metrics (%) · {c} convention (p) "),
    };
    let mut block = Block::bordered()
        .title(Span::styled(title, theme::title()))
        .title(Span::styled(
            " * best · ↑↓ method · ←→ OOD set · Enter: misdetections ",
            theme::dim(),
        ));
    let n = info.methods.len();
    let extra: Vec<Line> = group_rows(ctx, info)
        .into_iter()
        .chain(uncertainty(ctx))
        .collect();
    let height = area.height.saturating_sub(2) as usize;
    let (first, shown) = method_window(n, ctx.method, height, extra.len());
    if shown < n {
        let more = format!(" methods {}-{} of {n} (↑↓) ", first + 1, first + shown);
        block = block.title_bottom(Line::styled(more, theme::warn()));
    }
    if let Some(more) = hidden_sets(ctx, area.width) {
        block =
            block.title_bottom(Line::styled(format!(" {more} "), theme::warn()).right_aligned());
    }
    let inner = block.inner(area);
    block.render(area, buf);
    let a = ctx.analysis;
    let groups = groups(ctx, area.width);
    let sel_group = ctx.ood_dataset();
    let mut head1 = vec![Span::raw(" ".repeat(METHOD_W))];
    let mut head2 = vec![Span::styled(
        format!("{:<METHOD_W$}", "method"),
        theme::dim(),
    )];
    for g in &groups {
        let (name, style) = match g {
            Some(d) => (
                info.datasets[*d].name.clone(),
                if Some(*d) == sel_group {
                    Style::new().fg(theme::OOD).add_modifier(Modifier::REVERSED)
                } else {
                    Style::new().fg(theme::OOD)
                },
            ),
            None => (
                "average".to_string(),
                Style::new().add_modifier(Modifier::BOLD),
            ),
        };
        head1.push(Span::raw(" "));
        head1.push(Span::styled(
            format!("{:^w$}", theme::fit(&name, GROUP_W - 1), w = GROUP_W - 1),
            style,
        ));
        head2.push(Span::raw(" "));
        for (c, _, w) in COLUMNS {
            head2.push(Span::styled(format!("{c:>w$}"), theme::dim()));
        }
    }
    let mut lines = vec![Line::from(head1), Line::from(head2)];
    for (m, method) in info.methods.iter().enumerate().skip(first).take(shown) {
        let selected = m == ctx.method;
        let mut spans = vec![Span::styled(
            format!(
                "{}{:<w$}",
                if selected { "▶ " } else { "  " },
                theme::fit(method.label(), METHOD_W - 2),
                w = METHOD_W - 2
            ),
            if selected {
                Style::new().add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            },
        )];
        for g in &groups {
            spans.push(Span::raw(" "));
            let mine = measures_of(a, m, *g);
            for (c, &(_, lower, w)) in COLUMNS.iter().enumerate() {
                let all: Vec<Option<f64>> = (0..n)
                    .map(|k| measures_of(a, k, *g).map(|x| column(&x, c)))
                    .collect();
                let best = best_of(&all, lower);
                match mine.map(|x| column(&x, c)) {
                    Some(v) => {
                        // Marked when it ties the best at the shown precision.
                        let is_best = n > 1 && best.is_some_and(|b| theme::pct(b) == theme::pct(v));
                        let text = format!("{}{}", theme::pct(v), if is_best { "*" } else { " " });
                        spans.push(Span::styled(
                            format!("{text:>w$}"),
                            if is_best { theme::best() } else { Style::new() },
                        ));
                    }
                    None => spans.push(Span::styled(format!("{:>w$}", "- "), theme::dim())),
                }
            }
        }
        let line = Line::from(spans);
        lines.push(if selected {
            line.style(Style::new().add_modifier(Modifier::BOLD))
        } else {
            line
        });
    }
    lines.extend(extra);
    Paragraph::new(lines).render(inner, buf);
    // Clicks: a method's row selects it, a set's name shows that set.
    let oods = ctx.ood_datasets();
    for (k, g) in groups.iter().enumerate() {
        let pos = g.and_then(|d| oods.iter().position(|&x| x == d));
        if let Some(pos) = pos {
            let x = inner.x + (METHOD_W + k * GROUP_W + 1) as u16;
            let w = ((GROUP_W - 1) as u16).min(inner.right().saturating_sub(x));
            let at = Rect::new(x, inner.y, w, 2.min(inner.height));
            hits.targets.push(at, Target::Ood(pos));
        }
    }
    for m in first..first + shown {
        let y = inner.y + 2 + (m - first) as u16;
        if y < inner.bottom() {
            hits.targets.push(
                Rect {
                    y,
                    height: 1,
                    ..inner
                },
                Target::Method(m),
            );
        }
    }
}
