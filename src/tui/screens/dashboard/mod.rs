//! The live dashboard: progress, the score distributions of the method and
//! OOD set in view with the 95%-TPR threshold, and the metrics table.

mod table;

use crate::tui::analysis::{self};
use crate::tui::component::{Component, Ctx, Input, Outcome};
use crate::tui::histogram::Histograms;
use crate::tui::keymap::{Action, Mode};
use crate::tui::mouse::{Hits, Plot};
use crate::tui::screen::Status;
use crate::tui::theme;
use gradnorm_core::run::{crop_resize, InputSpec, Resize, Role, RunInfo, IMAGENET_MEAN};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};
use table::{group_rows, render_table, uncertainty};

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
        return ctx.moved_threshold();
    };
    let (id, ood) = (
        ctx.analysis.sorted(0, ctx.method),
        ctx.analysis.sorted(d, ctx.method),
    );
    analysis::step_threshold(id, ood, t, step).or(ctx.moved_threshold())
}

fn render(ctx: &Ctx, log_scale: bool, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
    let Some(info) = ctx.results.info.clone() else {
        render_waiting(ctx, area, buf);
        return;
    };
    let n_sets = info.datasets.len() as u16;
    // Short terminals give the histogram the progress panels' rows but one:
    // a line with the run's progress, rate and ETA (the plot's title keeps
    // the counts of the sets in view).
    let short = area.height < 30;
    let top_h = if short { 1 } else { (n_sets + 3).clamp(5, 9) };
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
    if short {
        render_progress_line(ctx, top, buf);
    } else {
        let [progress, run] =
            Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(top);
        render_progress(ctx, &info, progress, buf);
        render_run(ctx, &info, run, buf);
    }
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

/// The run's progress, rate and ETA (elapsed once done) and what was
/// skipped, named as far as `width` allows, in a line: what a short
/// terminal keeps of the progress panel.
fn summary(ctx: &Ctx, width: usize) -> Vec<Span<'static>> {
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
        let said = format!(" · {} unreadable, skipped", theme::count(skipped));
        let used: usize = summary.iter().map(|s| s.width()).sum::<usize>() + said.chars().count();
        let names = skipped_names(&ctx.results.skipped, width.saturating_sub(used));
        summary.push(Span::styled(said + &names, theme::warn()));
    }
    summary
}

/// The skipped files' names, as many as fit in `room` columns:
/// ": a.jpg, b.png and 3 more"; empty when not even one fits.
pub fn skipped_names(skipped: &[Vec<gradnorm_core::run::Skipped>], room: usize) -> String {
    let names: Vec<String> = skipped
        .iter()
        .flatten()
        .map(|s| {
            s.path
                .file_name()
                .unwrap_or(s.path.as_os_str())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut best = String::new();
    for shown in 1..=names.len() {
        let rest = names.len() - shown;
        let mut text = format!(": {}", names[..shown].join(", "));
        if rest > 0 {
            text.push_str(&format!(" and {} more", theme::count(rest)));
        }
        // Not monotone: all names drop the "and N more".
        if text.chars().count() <= room {
            best = text;
        }
    }
    best
}

/// One line: a bar over the whole run, then `summary`.
fn render_progress_line(ctx: &Ctx, area: Rect, buf: &mut Buffer) {
    let (done, total) = ctx
        .results
        .progress
        .as_ref()
        .map_or((0, 0), |p| (p.run_done, p.run_total));
    // Skipped files' names come before the bar (it takes what is left).
    let text = summary(ctx, (area.width as usize).saturating_sub(2));
    let text_w: usize = text.iter().map(|s| s.width()).sum();
    // The bar takes what the text leaves, a quarter of the line at most.
    let bar_w = (area.width as usize)
        .saturating_sub(text_w + 3)
        .min(area.width as usize / 4);
    let mut spans = vec![Span::raw(" ")];
    if bar_w >= 4 {
        spans.push(Span::styled(bar(done, total, bar_w), theme::dim()));
        spans.push(Span::raw(" "));
    }
    spans.extend(text);
    Line::from(spans).render(area, buf);
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
    lines.push(Line::from(summary(ctx, w)));
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
    // The fit the fit-based scores read, by file name.
    let ckpt = match info.setup.fit.as_ref().and_then(|p| p.file_name()) {
        Some(fit) => format!("{ckpt} · fit {}", fit.to_string_lossy()),
        None => ckpt,
    };
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
            let which = if ctx.moved_threshold().is_some() {
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
