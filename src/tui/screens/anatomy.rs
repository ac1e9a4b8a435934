//! GradNorm's anatomy. GradNorm = (1/T)·Σ_k|C·p_k − 1|·||h||₁, so each image
//! is a point (||h||₁, Σ|C·p−1|) and the score's level sets are straight
//! lines on log-log axes. The screen shows ID against an OOD set in that
//! plane with the 95%-TPR threshold line, each factor's own distributions,
//! and how well each factor alone separates the sets.

use crate::tui::analysis::{self, Analysis};
use crate::tui::component::{Component, Ctx, Input, Outcome};
use crate::tui::histogram::Histograms;
use crate::tui::keymap::Mode;
use crate::tui::mouse::Hits;
use crate::tui::theme;
use gradnorm_core::method::Kind;
use gradnorm_core::run::RunInfo;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, GraphType, Paragraph, Widget, Wrap};

/// Points drawn per set at most (evenly strided), to keep frames cheap.
const MAX_POINTS: usize = 3000;
/// log10 of the smallest factor plotted (a uniform softmax gives 0).
const FLOOR: f64 = 1e-6;

const SOFTMAX: usize = 0;
const FEATURE: usize = 1;

/// The anatomy screen: it has no state of its own (its keys move the
/// method and OOD set everyone shares).
#[derive(Debug, Default)]
pub struct Anatomy;

impl Component for Anatomy {
    fn mode(&self) -> Mode {
        Mode::Anatomy
    }

    fn keys(&mut self, _: &Ctx, _: Input) -> Outcome {
        Outcome::None
    }

    fn draw(&self, ctx: &Ctx, area: Rect, buf: &mut Buffer, _: &mut Hits) {
        render(ctx, area, buf)
    }
}

fn render(ctx: &Ctx, area: Rect, buf: &mut Buffer) {
    let Some(info) = ctx.results.info.clone() else {
        Paragraph::new("No run yet: start one on the setup screen (1).")
            .block(Block::bordered().title(Span::styled(" GradNorm anatomy ", theme::title())))
            .render(area, buf);
        return;
    };
    let ood = ctx.ood_dataset();
    // Three lines of numbers and the verdict (which may wrap).
    let [plots, summary] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(6)]).areas(area);
    let [scatter, side] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Fill(1)]).areas(plots);
    let [top, bottom] = Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(side);
    render_scatter(ctx, &info, ood, scatter, buf);
    let a = ctx.analysis;
    for (f, rect) in [(FEATURE, top), (SOFTMAX, bottom)] {
        let id = a.factors.first().map(|x| x[f].as_slice()).unwrap_or(&[]);
        let od = ood
            .and_then(|d| a.factors.get(d))
            .map(|x| x[f].as_slice())
            .unwrap_or(&[]);
        let auroc = ood.and_then(|d| a.factor_auroc.get(d)).and_then(|x| x[f]);
        let title = Line::from(vec![
            Span::styled(format!(" {} ", factor_name(f)), theme::title()),
            Span::raw(match auroc {
                Some(v) => format!("AUROC alone {}% ", theme::pct(v)),
                None => String::new(),
            }),
        ]);
        Histograms {
            id,
            ood: od,
            marker: None,
            block: Block::bordered().title(title),
            plot: None,
            log: false,
            // Narrow plots keep their title (the scatter's legend and the
            // dashboard's say the same).
            legend: rect.width >= 56,
        }
        .render(rect, buf);
    }
    render_summary(a, &info, ood, summary, buf);
}

pub fn factor_name(f: usize) -> &'static str {
    if f == FEATURE {
        "||h||₁"
    } else {
        "Σ|C·p−1|"
    }
}

fn gradnorm_index(info: &RunInfo) -> Option<usize> {
    gradnorm_core::method::anatomy_gradnorm(&info.methods)
}

/// The two factors multiply to the paper's GradNorm only (the head's weight,
/// L1, the uniform target): the run's other GradNorms are said to be apart.
fn ablated_note(info: &RunInfo) -> Option<String> {
    let followed = gradnorm_index(info);
    let ablated = (info.methods.iter().enumerate())
        .filter(|&(i, m)| m.def().kind == Kind::GradNorm && Some(i) != followed)
        .count();
    (ablated > 0)
        .then(|| format!("· the paper's GradNorm only; {ablated} ablated: no such product "))
}

fn log_points(ctx: &Ctx, dataset: usize, n: usize) -> Vec<(f64, f64)> {
    let records = ctx
        .results
        .records
        .get(dataset)
        .map(|r| &r[..n.min(r.len())])
        .unwrap_or(&[]);
    let stride = records.len().div_ceil(MAX_POINTS).max(1);
    records
        .iter()
        .step_by(stride)
        .map(|r| {
            (
                (r.feature_l1 as f64).max(FLOOR).log10(),
                (r.softmax_term as f64).max(FLOOR).log10(),
            )
        })
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

fn log_sorted(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.max(FLOOR).log10()).collect()
}

fn render_scatter(ctx: &Ctx, info: &RunInfo, ood: Option<usize>, area: Rect, buf: &mut Buffer) {
    let a = ctx.analysis;
    let count = |d: usize| a.counts.get(d).copied().unwrap_or(0);
    let id_pts = log_points(ctx, 0, count(0));
    let ood_pts = ood
        .map(|d| log_points(ctx, d, count(d)))
        .unwrap_or_default();
    let ood_name = ood.map(|d| info.datasets[d].name.as_str()).unwrap_or("-");
    let title = Line::from(vec![
        Span::styled(" GradNorm = Σ|C·p−1|·||h||₁/T ", theme::title()),
        Span::styled("⠿ ID", Style::new().fg(theme::ID)),
        Span::raw(" vs "),
        Span::styled(format!("• {ood_name} "), Style::new().fg(theme::OOD)),
    ]);
    let block = Block::bordered().title(title);
    let sets = |f: usize| -> Vec<Vec<f64>> {
        let mut v = vec![a
            .factors
            .first()
            .map(|x| log_sorted(&x[f]))
            .unwrap_or_default()];
        if let Some(d) = ood {
            v.push(
                a.factors
                    .get(d)
                    .map(|x| log_sorted(&x[f]))
                    .unwrap_or_default(),
            );
        }
        v
    };
    let xs = sets(FEATURE);
    let ys = sets(SOFTMAX);
    let xr = analysis::range(&xs.iter().map(Vec::as_slice).collect::<Vec<_>>(), &[]);
    let yr = analysis::range(&ys.iter().map(Vec::as_slice).collect::<Vec<_>>(), &[]);
    let (Some((x0, x1)), Some((y0, y1))) = (xr, yr) else {
        Paragraph::new(Line::styled("waiting for images…", theme::dim()))
            .block(block)
            .render(area, buf);
        return;
    };
    // The threshold's level set: log a + log b = log(T · threshold).
    // GradNorm's threshold in use (the dashboard's: moved, else 95% TPR).
    let gn = gradnorm_index(info);
    let threshold = gn.zip(ood).and_then(|(m, d)| ctx.threshold(m, d));
    let moved = gn
        .zip(ood)
        .is_some_and(|(m, d)| ctx.thresholds.moved(m, d).is_some());
    let line: Vec<(f64, f64)> = threshold
        .filter(|&t| t > 0.0)
        .map(|t| {
            let c = (a.temperature * t).log10();
            let n = 64;
            (0..=n)
                .map(|i| x0 + (x1 - x0) * i as f64 / n as f64)
                .map(|x| (x, c - x))
                .filter(|&(_, y)| y >= y0 && y <= y1)
                .collect()
        })
        .unwrap_or_default();
    let label = |v: f64| Span::raw(theme::num(10f64.powf(v), 10f64.powf(v) * 10.0));
    let axis = |name, lo: f64, hi: f64| {
        Axis::default()
            .title(Span::styled(name, Style::new().fg(theme::ACCENT)))
            .bounds([lo, hi])
            .labels(vec![label(lo), label((lo + hi) / 2.0), label(hi)])
            .style(theme::dim())
    };
    let datasets = vec![
        theme::series(GraphType::Scatter, theme::ID, &id_pts),
        // OOD as dots, ID as braille: apart without colour too.
        theme::series(GraphType::Scatter, theme::OOD, &ood_pts)
            .marker(ratatui::symbols::Marker::Dot),
        theme::series(GraphType::Line, theme::THRESHOLD, &line),
    ];
    let bottom = if line.is_empty() {
        Line::styled(" log axes · run GradNorm for its threshold ", theme::dim())
    } else {
        Line::from(vec![
            Span::styled(
                if moved {
                    " ╲ threshold (moved on the dashboard)"
                } else {
                    " ╲ threshold at 95% TPR"
                },
                Style::new().fg(theme::THRESHOLD),
            ),
            Span::styled(" (above: ID) · log axes ", theme::dim()),
        ])
    };
    Chart::new(datasets)
        .block(block.title_bottom(bottom))
        .x_axis(axis(factor_name(FEATURE), x0, x1))
        .y_axis(axis(factor_name(SOFTMAX), y0, y1))
        .legend_position(None)
        .render(area, buf);
}

fn median(sorted: &[f64]) -> Option<f64> {
    analysis::quantile(sorted, 0.5)
}

fn render_summary(a: &Analysis, info: &RunInfo, ood: Option<usize>, area: Rect, buf: &mut Buffer) {
    let mut title = vec![Span::styled(" Why it separates ", theme::title())];
    if let Some(note) = ablated_note(info) {
        title.push(Span::styled(note, theme::warn()));
    }
    let block = Block::bordered().title(Line::from(title));
    let mut lines = Vec::new();
    let Some(d) = ood else {
        Paragraph::new("No OOD set.").block(block).render(area, buf);
        return;
    };
    let fa = a.factor_auroc.get(d).copied().unwrap_or([None, None]);
    for f in [FEATURE, SOFTMAX] {
        let id = a.factors.first().map(|x| x[f].as_slice()).unwrap_or(&[]);
        let od = a.factors.get(d).map(|x| x[f].as_slice()).unwrap_or(&[]);
        if let (Some(i), Some(o)) = (median(id), median(od)) {
            lines.push(Line::from(vec![
                Span::styled(format!("{:<9}", factor_name(f)), theme::title()),
                Span::raw(format!(
                    "median ID {} vs OOD {} (×{:.2}) · AUROC alone {}%",
                    theme::num(i, i),
                    theme::num(o, o),
                    if o != 0.0 { i / o } else { f64::INFINITY },
                    fa[f].map(theme::pct).unwrap_or_else(|| "-".into())
                )),
            ]));
        }
    }
    let gn = gradnorm_index(info)
        .and_then(|m| a.measures(m, d))
        .map(|m| m.auroc);
    let mut last = vec![Span::styled(
        format!(
            "GradNorm AUROC {}% · ",
            gn.map(theme::pct).unwrap_or_else(|| "-".into())
        ),
        theme::best(),
    )];
    if let [Some(soft), Some(feat)] = [fa[SOFTMAX], fa[FEATURE]] {
        last.push(Span::styled(verdict(soft, feat), theme::warn()));
    }
    lines.push(Line::from(last));
    Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .block(block)
        .render(area, buf);
}

/// One sentence on where the separation comes from, from each factor's
/// AUROC alone (0.5 = no separation; below 0.5 the factor is larger for OOD).
pub fn verdict(softmax_auroc: f64, feature_auroc: f64) -> String {
    let s = softmax_auroc - 0.5;
    let f = feature_auroc - 0.5;
    let against =
        |name: &str| format!("{name} is larger for OOD images and works against GradNorm");
    if s.abs() < 0.05 && f.abs() < 0.05 {
        "Neither factor separates these sets: GradNorm cannot either.".into()
    } else if f < -0.05 {
        format!(
            "{}; the separation comes from {}.",
            against(factor_name(FEATURE)),
            factor_name(SOFTMAX)
        )
    } else if s < -0.05 {
        format!(
            "{}; the separation comes from {}.",
            against(factor_name(SOFTMAX)),
            factor_name(FEATURE)
        )
    } else if s > f + 0.05 {
        format!(
            "The separation comes mostly from the softmax term {} (confidence).",
            factor_name(SOFTMAX)
        )
    } else if f > s + 0.05 {
        format!(
            "The separation comes mostly from the feature norm {}.",
            factor_name(FEATURE)
        )
    } else {
        "Both factors contribute about equally; GradNorm multiplies them.".into()
    }
}
