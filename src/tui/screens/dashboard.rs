//! The live dashboard: progress, the score distributions of the method and
//! OOD set in view with the 95%-TPR threshold, and the metrics table.

use crate::tui::analysis::{self, Analysis};
use crate::tui::component::{Component, Ctx, Input, Outcome};
use crate::tui::histogram::Histograms;
use crate::tui::keymap::{Action, Mode};
use crate::tui::mouse::{Hits, Plot, Target};
use crate::tui::screen::Status;
use crate::tui::theme;
use gradnorm_core::metrics::Measures;
use gradnorm_core::run::{crop_resize, InputSpec, Resize, Role, RunInfo, IMAGENET_MEAN};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};

/// The dashboard: its own state is the histogram's axis.
#[derive(Debug, Default)]
pub struct Dashboard {
    /// The histogram on a log axis.
    log_scale: bool,
}

impl Component for Dashboard {
    fn mode(&self) -> Mode {
        Mode::Dashboard
    }

    fn keys(&mut self, ctx: &Ctx, input: Input) -> Outcome {
        match input {
            Input::Action(Action::ThresholdUp) => Outcome::Threshold(moved_threshold(ctx, 1)),
            Input::Action(Action::ThresholdDown) => Outcome::Threshold(moved_threshold(ctx, -1)),
            Input::Action(Action::ThresholdReset) => Outcome::Threshold(None),
            Input::Action(Action::LogScale) => {
                self.log_scale = !self.log_scale;
                Outcome::None
            }
            Input::Action(Action::Misdetections) => Outcome::Misdetections,
            Input::Action(Action::AroundThreshold) => Outcome::AroundThreshold,
            _ => Outcome::None,
        }
    }

    fn draw(&self, ctx: &Ctx, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
        render(ctx, self.log_scale, area, buf, hits)
    }
}

/// The threshold in view moved by about 1% of the ID and OOD-in-view
/// scores; unchanged where there is nothing to move over.
fn moved_threshold(ctx: &Ctx, step: isize) -> Option<f64> {
    let (Some(d), Some(t)) = (ctx.ood_dataset(), ctx.current_threshold()) else {
        return ctx.threshold;
    };
    let (id, ood) = (
        ctx.analysis.sorted(0, ctx.method),
        ctx.analysis.sorted(d, ctx.method),
    );
    analysis::step_threshold(id, ood, t, step).or(ctx.threshold)
}

fn render(ctx: &Ctx, log_scale: bool, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
    let Some(info) = ctx.results.info.clone() else {
        render_waiting(ctx, area, buf);
        return;
    };
    let n_sets = info.datasets.len() as u16;
    // Short terminals give the histogram the progress panels' rows: the
    // header keeps the run's progress and ETA, the plot's title the counts.
    let top_h = if area.height < 30 {
        0
    } else {
        (n_sets + 3).clamp(5, 9)
    };
    // One more line for the uncertainty while it is wide.
    let table_h = (info.methods.len() as u16
        + 4
        + u16::from(uncertainty(ctx).is_some())
        + group_rows(ctx, &info).len() as u16)
        .min(area.height / 2);
    let [top, chart, table] = Layout::vertical([
        Constraint::Length(top_h),
        Constraint::Fill(1),
        Constraint::Length(table_h),
    ])
    .areas(area);
    let [progress, run] = Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(top);
    render_progress(ctx, &info, progress, buf);
    render_run(ctx, &info, run, buf);
    render_histogram(ctx, log_scale, &info, chart, buf, &mut hits.plot);
    render_table(ctx, &info, table, buf, hits);
}

fn render_waiting(ctx: &Ctx, area: Rect, buf: &mut Buffer) {
    let text = match ctx.status() {
        Status::Failed(e) => vec![
            Line::styled("The run failed:", theme::error()),
            Line::raw(e),
        ],
        _ if ctx.running() => vec![Line::raw("Loading the model and listing the datasets…")],
        _ => vec![Line::raw(
            "No run yet: choose a model and datasets on the setup screen (1), then press s.",
        )],
    };
    Paragraph::new(text)
        .wrap(Wrap { trim: false })
        .block(Block::bordered().title(Span::styled(" Dashboard ", theme::title())))
        .render(area, buf);
}

/// A text progress bar `width` cells wide.
fn bar(done: usize, total: usize, width: usize) -> String {
    let frac = if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let eighths = (frac * width as f64 * 8.0).round() as usize;
    let full = eighths / 8;
    let mut s = "█".repeat(full);
    if full < width {
        const PART: [&str; 8] = [" ", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
        s.push_str(PART[eighths % 8]);
        s.push_str(&" ".repeat(width - full - 1));
    }
    s
}

fn render_progress(ctx: &Ctx, info: &RunInfo, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(Span::styled(" Progress ", theme::title()));
    let inner = block.inner(area);
    block.render(area, buf);
    let w = inner.width as usize;
    // Names as long as they are, up to a third of the panel.
    let longest = info.datasets.iter().map(|d| d.name.chars().count()).max();
    let name_w = longest.unwrap_or(12).clamp(8, (w / 3).max(8));
    let count_w = 15usize;
    let bar_w = w.saturating_sub(4 + name_w + 1 + count_w + 1).max(4);
    let mut lines = Vec::new();
    for (d, ds) in info.datasets.iter().enumerate() {
        let done = ctx.results.records.get(d).map_or(0, Vec::len)
            + ctx.results.skipped.get(d).map_or(0, Vec::len);
        let (role, color) = match ds.role {
            Role::Id => ("ID ", theme::ID),
            Role::Ood => ("OOD", theme::OOD),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{role} "), Style::new().fg(color)),
            Span::raw(format!("{:<name_w$} ", theme::fit(&ds.name, name_w))),
            Span::styled(bar(done, ds.count, bar_w), Style::new().fg(color)),
            Span::raw(format!(
                " {:>count_w$}",
                format!("{}/{}", theme::count(done), theme::count(ds.count))
            )),
        ]));
    }
    let skipped: usize = ctx.results.skipped.iter().map(Vec::len).sum();
    let mut summary = Vec::new();
    if let Some(p) = &ctx.results.progress {
        summary.push(Span::raw(format!(
            "{}/{} images · {}",
            theme::count(p.run_done),
            theme::count(p.run_total),
            theme::rate(p.images_per_sec)
        )));
        if ctx.running() {
            if let Some(eta) = p.eta_secs() {
                summary.push(Span::raw(format!(" · ETA {}", theme::duration(eta))));
            }
        }
    }
    if !ctx.running() {
        summary.push(Span::raw(format!(
            " · elapsed {}",
            theme::duration(ctx.results.elapsed_secs)
        )));
    }
    if skipped > 0 {
        summary.push(Span::styled(
            format!(" · {} unreadable, skipped", theme::count(skipped)),
            theme::warn(),
        ));
    }
    lines.push(Line::from(summary));
    Paragraph::new(lines).render(inner, buf);
}

fn render_run(ctx: &Ctx, info: &RunInfo, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(Span::styled(" Run ", theme::title()));
    let ckpt = info
        .setup
        .checkpoint
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "random weights".into());
    let w = block.inner(area).width as usize;
    let mut lines = vec![
        Line::raw(theme::fit(&model_name(info), w)),
        Line::styled(
            theme::fit(
                &format!(
                    "{ckpt} · {} · batch {} · {} {}",
                    preprocessing(&info.input),
                    info.batch,
                    info.setup.device,
                    info.setup.dtype
                ),
                w,
            ),
            theme::dim(),
        ),
    ];
    lines.push(match ctx.accuracy {
        Some(a) => Line::from(vec![
            Span::raw("ID top-1 "),
            Span::styled(theme::percent(a.top1, 2), theme::best()),
            Span::raw(format!(
                " · top-5 {} · {} labelled",
                theme::percent(a.top5, 2),
                theme::count(a.images)
            )),
        ]),
        None => Line::styled("ID accuracy: no labelled ID images yet", theme::dim()),
    });
    let status = match ctx.status() {
        Status::Idle => Line::raw(""),
        Status::Running => Line::styled("running · c cancels (results are kept)", theme::warn()),
        Status::Finished => Line::styled("finished", theme::best()),
        Status::Cancelled => Line::styled("cancelled · the results so far are kept", theme::warn()),
        Status::Failed(e) => Line::styled(format!("failed: {e}"), theme::error()),
    };
    lines.push(status);
    // Numbers that cannot be trusted (NaN scores, outputs that ignore the
    // input) take the place of the last notice: they matter more.
    if let Some(w) = ctx.results.warnings().first() {
        lines.push(Line::styled(format!("warning: {w}"), theme::error()));
    } else if let Some(n) = ctx.results.notices.last() {
        lines.push(Line::styled(n.clone(), theme::warn()));
    }
    Paragraph::new(lines).block(block).render(area, buf);
}

/// The model's name with its class count said once: the models' own
/// names already end in "…, 1000 classes".
pub fn model_name(info: &RunInfo) -> String {
    let n = info.model.num_classes;
    let name = info.model.name.trim();
    if name.contains(&format!("{n} classes")) {
        name.to_string()
    } else {
        format!("{name}, {} classes", theme::count(n))
    }
}

/// The model's input in a few words: a ResNet run and a BiT run at the
/// same size do not see the same pixels.
fn preprocessing(input: &InputSpec) -> String {
    let s = input.size;
    let resize = match input.resize {
        Resize::Squash => format!("{s}x{s}"),
        Resize::ShorterCrop => format!("{}→{s} crop", crop_resize(s)),
    };
    let norm = if input.mean == IMAGENET_MEAN {
        "ImageNet norm"
    } else if input.mean == [0.5; 3] && input.std == [0.5; 3] {
        "norm ±1"
    } else {
        "own norm"
    };
    format!("{resize} {norm}")
}

fn render_histogram(
    ctx: &Ctx,
    log_scale: bool,
    info: &RunInfo,
    area: Rect,
    buf: &mut Buffer,
    plot: &mut Plot,
) {
    let a = ctx.analysis;
    let m = ctx.method;
    let Some(method) = info.methods.get(m) else {
        return;
    };
    let ood = ctx.ood_dataset();
    let id_scores = a.sorted(0, m);
    let ood_scores = ood.map(|d| a.sorted(d, m)).unwrap_or(&[]);
    let threshold = ctx.current_threshold();
    // A log axis for scores spanning decades (GradNorm's); only positive
    // scores have one.
    let positive =
        id_scores.first().is_none_or(|&v| v > 0.0) && ood_scores.first().is_none_or(|&v| v > 0.0);
    let log = log_scale && positive;
    let ln = |v: &[f64]| v.iter().map(|x| x.ln()).collect::<Vec<f64>>();
    let (id_plot, ood_plot) = if log {
        (ln(id_scores), ln(ood_scores))
    } else {
        (id_scores.to_vec(), ood_scores.to_vec())
    };
    let ood_name = ood.map(|d| info.datasets[d].name.as_str()).unwrap_or("-");
    let title = Line::from(vec![
        Span::styled(format!(" {} ", method.label()), theme::title()),
        Span::styled(
            format!(
                "{} ID {} ({})",
                crate::tui::histogram::ID_GLYPH,
                info.datasets[0].name,
                theme::count(id_scores.len())
            ),
            Style::new().fg(theme::ID),
        ),
        Span::raw(" vs "),
        Span::styled(
            format!(
                "{} OOD {ood_name} ({}) ",
                crate::tui::histogram::OOD_GLYPH,
                theme::count(ood_scores.len())
            ),
            Style::new().fg(theme::OOD),
        ),
    ]);
    let bottom = match threshold {
        Some(t) => {
            let span = analysis::range(&[id_scores, ood_scores], &[]).map_or(0.0, |(l, h)| h - l);
            let s = analysis::Split::at(id_scores, ood_scores, t);
            let which = if ctx.threshold.is_some() {
                "moved · t resets"
            } else {
                "95% TPR · [ ] move"
            };
            Line::from(vec![
                Span::styled(
                    format!(" │ threshold {} ", theme::num(t, span)),
                    Style::new().fg(theme::THRESHOLD),
                ),
                Span::raw(format!(
                    "({which}) · ID kept {}/{} = TPR {}% · OOD accepted {}/{} = FPR {}% ",
                    theme::count(s.id_kept),
                    theme::count(s.id_total),
                    theme::pct(s.tpr()),
                    theme::count(s.ood_accepted),
                    theme::count(s.ood_total),
                    theme::pct(s.fpr())
                )),
            ])
        }
        None => Line::styled(" threshold: waiting for both sets ", theme::dim()),
    };
    let mut block = Block::bordered().title(title).title_bottom(bottom);
    if log {
        block = block.title(Line::styled(" log scale (L) ", theme::dim()).right_aligned());
    }
    Histograms {
        id: &id_plot,
        ood: &ood_plot,
        marker: threshold.map(|t| if log { t.ln() } else { t }),
        block,
        plot: Some(plot),
        log,
        legend: true,
    }
    .render(area, buf);
}

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
pub fn group_rows(ctx: &Ctx, info: &RunInfo) -> Vec<Line<'static>> {
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
pub fn uncertainty(ctx: &Ctx) -> Option<Line<'static>> {
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

fn render_table(ctx: &Ctx, info: &RunInfo, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
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
    let n = info.methods.len();
    for (m, method) in info.methods.iter().enumerate() {
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
    lines.extend(group_rows(ctx, info));
    lines.extend(uncertainty(ctx));
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
    for m in 0..n {
        let y = inner.y + 2 + m as u16;
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
