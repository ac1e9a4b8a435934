//! Over 600 lines: one drawing function per kind of row, the popups (lists,
//! file browser) and the Plan panel, all laid out from the same row list;
//! the Plan panel is the part to move out first when it grows.
//!
//! The setup screen's drawing: the form (section titles, rows, the row in
//! edit) and the plan beside it, plus the hint line of the row under the
//! cursor.

use super::params::param_text;
use super::state::{Row, SetupState};
use crate::tui::discover::Count;
use crate::tui::files::{FileBrowser, Item};
use crate::tui::mouse::{Target, Targets};
use crate::tui::picker::Picker;
use crate::tui::theme;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};
use std::path::Path;

/// One line of help for the row under the cursor.
pub fn hint(s: &SetupState) -> &'static str {
    match s.current() {
            Row::Checkpoint => "Enter: list of checkpoints found, or type a path · f: browse files · ←/→ next",
            Row::Model => "Enter: list of models · ←/→ next; auto infers it from the checkpoint",
            Row::ClassNames => {
                "Enter: a file of class names, one a line; empty = ImageNet's, or the ID set's folders"
            }
            Row::ClassOrder => {
                "Enter: wnid order of the model's outputs (e.g. the seed's val list); empty = sorted wnids"
            }
            Row::Fit => "Enter: pick a fit (this model's are marked), or make one · f: browse files",
            Row::Id => "Enter: list of datasets, or type a path · f: browse files · ←/→ next · r: rename",
            Row::IdRoot => "Enter: folder the ID list file's paths are relative to (empty = its folder)",
            Row::Ood(_) => "Space: use this set as OOD · r: rename it",
            Row::AddDataset => "Enter: type the path of a folder or list file to add as an OOD set · f: browse files",
            Row::Method(_) => "Space: run this score",
            Row::Param(i, p) => s.methods[i].method.def().params[p].help,
            Row::Device => "←/→ auto, cpu, cuda · Enter: list, or type e.g. cuda:1",
            Row::Dtype => "←/→ or Enter: f32, bf16, f16 (reduced precision is for CUDA)",
            Row::Batch => "←/→ halve or double · Enter: type",
            Row::ImageSize => "Enter: images are resized to N x N (empty = the model's default)",
            Row::Limit => "Enter: evaluate at most N images per dataset (empty = all)",
            Row::Start => "Enter or s: start the evaluation in the background",
            Row::Save => "Enter or w: write these settings to the config file",
    }
}

fn count_text(c: &Count) -> (String, Style) {
    match c {
        Count::Pending => ("counting…".into(), theme::dim()),
        Count::Images(n) => (format!("{} images", theme::count(*n)), Style::new()),
        Count::Error(e) => (format!("unreadable: {e}"), theme::error()),
    }
}

/// The form as text lines (section titles included) and the line of each row.
fn lines(s: &SetupState, width: usize) -> (Vec<Line<'static>>, Vec<usize>) {
    let rows = s.rows();
    let cursor = s.cursor.min(rows.len() - 1);
    let mut out: Vec<Line> = Vec::new();
    let mut at = Vec::with_capacity(rows.len());
    let label_w = 16usize;
    // What a row's value may take (the paths are cut to it, keeping their
    // file names, before the row cuts what is left at its end).
    let value_w = width.saturating_sub(label_w + 2);
    // Set names whole up to a quarter of the form (paths get the rest).
    let longest = s.datasets.iter().map(|d| d.name.chars().count()).max();
    let name_w = longest.unwrap_or(14).clamp(14, (width / 4).max(14));
    let mut section = "";
    for (k, row) in rows.iter().enumerate() {
        let sec = match row {
            Row::Checkpoint | Row::Model | Row::ClassNames | Row::ClassOrder | Row::Fit => "Model",
            Row::Id | Row::IdRoot | Row::Ood(_) | Row::AddDataset => "Data",
            Row::Method(_) | Row::Param(..) => "Methods",
            Row::Device | Row::Dtype | Row::Batch | Row::ImageSize | Row::Limit => "Run",
            Row::Start | Row::Save => "",
        };
        if sec != section {
            if !out.is_empty() {
                out.push(Line::raw(""));
            }
            if !sec.is_empty() {
                out.push(Line::styled(sec.to_string(), theme::title()));
            }
            section = sec;
        }
        let selected = k == cursor;
        let editing = selected && s.edit.is_some();
        let (label, value, style): (String, String, Style) = match *row {
            Row::Checkpoint => (
                "checkpoint".into(),
                match s.checkpoint {
                    Some(i) => choice(
                        &theme::fit_path(&s.checkpoints[i], value_w.saturating_sub(4)),
                        !s.checkpoints.is_empty(),
                    ),
                    None if s.checkpoints.is_empty() => {
                        "none found under checkpoints/ (Enter to type)".into()
                    }
                    None => choice("none (random weights)", true),
                },
                Style::new(),
            ),
            Row::Model => (
                "model".into(),
                choice(
                    s.model.as_deref().unwrap_or("auto (from the checkpoint)"),
                    true,
                ),
                Style::new(),
            ),
            Row::ClassNames => (
                "class names".into(),
                path_or(
                    &s.class_names,
                    "ImageNet's (or the ID set's folders)",
                    value_w,
                ),
                Style::new(),
            ),
            Row::ClassOrder => (
                "class order".into(),
                path_or(&s.class_order, "sorted wnids", value_w),
                Style::new(),
            ),
            Row::Fit => {
                let (value, style) = fit_text(s, value_w);
                ("fit".into(), value, style)
            }
            Row::Id => match s.id_entry() {
                Some(d) => {
                    let (c, _) = count_text(&d.count);
                    (
                        "ID set".into(),
                        {
                            let used = d.name.chars().count() + c.chars().count() + 8;
                            let path = theme::fit_path(&d.path, value_w.saturating_sub(used));
                            choice(&format!("{}  {}  {}", d.name, c, path), true)
                        },
                        Style::new().fg(theme::ID),
                    )
                }
                None => (
                    "ID set".into(),
                    "none found under dataset/ (Enter to type a path)".into(),
                    theme::warn(),
                ),
            },
            Row::IdRoot => (
                "  list root".into(),
                s.id_entry()
                    .and_then(|d| d.root.as_ref().map(|r| theme::fit_path(r, value_w)))
                    .unwrap_or_else(|| "(the list file's folder)".into()),
                theme::dim(),
            ),
            Row::Ood(i) => {
                let d = &s.datasets[i];
                let (c, cs) = count_text(&d.count);
                let first = rows.iter().position(|r| matches!(r, Row::Ood(_))) == Some(k);
                let mut spans = vec![
                    Span::raw(format!("{} ", check(d.ood))),
                    Span::styled(
                        format!("{:<name_w$}", theme::fit(&d.name, name_w)),
                        if d.ood {
                            Style::new().fg(theme::OOD)
                        } else {
                            Style::new()
                        },
                    ),
                    Span::styled(format!("{c:>16}  "), cs),
                ];
                let used: usize = label_w + 2 + 2 + name_w + 18;
                spans.push(Span::styled(
                    theme::fit_path(&d.path, width.saturating_sub(used)),
                    theme::dim(),
                ));
                out.push(row_line(
                    if first { "OOD sets" } else { "" },
                    spans,
                    selected,
                    label_w,
                ));
                at.push(out.len() - 1);
                continue;
            }
            Row::AddDataset => ("".into(), "+ add a dataset path…".into(), theme::dim()),
            Row::Method(i) => {
                let m = &s.methods[i];
                (
                    if rows.iter().position(|r| matches!(r, Row::Method(_))) == Some(k) {
                        "scores".into()
                    } else {
                        String::new()
                    },
                    format!("{} {}", check(m.enabled), m.method.label()),
                    if m.enabled {
                        Style::new().add_modifier(Modifier::BOLD)
                    } else {
                        Style::new()
                    },
                )
            }
            Row::Param(i, p) => {
                let m = &s.methods[i].method;
                let name = m.def().params[p].label;
                let v = param_text(m, p);
                let v = if super::params::choices(m, p).is_some() {
                    choice(&v, true)
                } else if v.is_empty() {
                    "(none: Enter to set)".into()
                } else {
                    v
                };
                (String::new(), format!("    {name:<12} {v}"), Style::new())
            }
            Row::Device => (
                "device".into(),
                choice(&s.device.to_string(), true),
                Style::new(),
            ),
            Row::Dtype => ("dtype".into(), choice(s.dtype.name(), true), Style::new()),
            Row::Batch => (
                "batch".into(),
                choice(&s.batch.to_string(), true),
                Style::new(),
            ),
            Row::ImageSize => (
                "image size".into(),
                match (s.image_size, s.default_size()) {
                    (Some(n), _) if s.image_size_typed => format!("{n} x {n}"),
                    (Some(n), _) => format!("{n} x {n} (from the config; a new model resets it)"),
                    (None, Some((n, model))) => format!("{n} x {n} ({model}'s default)"),
                    (None, None) => "the model's default".into(),
                },
                Style::new(),
            ),
            Row::Limit => (
                "limit".into(),
                s.limit
                    .map(|n| format!("{} images per dataset", theme::count(n.get())))
                    .unwrap_or_else(|| "every image".into()),
                Style::new(),
            ),
            Row::Start => ("".into(), "[ Start evaluation ]".into(), theme::title()),
            Row::Save => ("".into(), "[ Write config file ]".into(), theme::title()),
        };
        let spans = if editing {
            vec![
                Span::raw("› "),
                Span::styled(
                    s.edit.clone().unwrap_or_default(),
                    Style::new().add_modifier(Modifier::UNDERLINED),
                ),
                Span::styled("█", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            ]
        } else {
            vec![Span::styled(
                theme::fit(&value, width.saturating_sub(label_w + 2)),
                style,
            )]
        };
        out.push(row_line(&label, spans, selected && !editing, label_w));
        at.push(out.len() - 1);
    }
    (out, at)
}

fn check(on: bool) -> &'static str {
    if on {
        "[x]"
    } else {
        "[ ]"
    }
}

fn choice(v: &str, arrows: bool) -> String {
    if arrows {
        format!("‹ {v} ›")
    } else {
        v.to_string()
    }
}

fn row_line(
    label: &str,
    spans: Vec<Span<'static>>,
    selected: bool,
    label_w: usize,
) -> Line<'static> {
    let marker = if selected { "▶ " } else { "  " };
    let mut all = vec![
        Span::styled(marker.to_string(), theme::title()),
        Span::styled(format!("{label:<w$}", w = label_w - 2), theme::dim()),
    ];
    all.extend(spans);
    let line = Line::from(all);
    if selected {
        line.style(Style::new().add_modifier(Modifier::BOLD))
    } else {
        line
    }
}

/// The setup screen: the form on the left, the plan (or what is missing)
/// on the right when there is room.
pub fn render(
    s: &SetupState,
    config_path: &Path,
    targets: &mut Targets,
    area: Rect,
    buf: &mut Buffer,
) {
    let wide = area.width >= 110;
    let [form_area, side] = if wide {
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(40)]).areas(area)
    } else {
        [area, Rect::default()]
    };
    let block = Block::bordered()
        .title(Span::styled(" Setup ", theme::title()))
        .title_bottom(Line::styled(format!(" {} ", hint(s)), theme::dim()));
    let inner = block.inner(form_area);
    block.render(form_area, buf);
    let (lines, at) = lines(s, inner.width as usize);
    let h = inner.height as usize;
    let cursor_line = at[s.cursor.min(at.len() - 1)];
    // Keep the cursor in view: scroll so it sits mid-screen when needed.
    let offset = if lines.len() <= h {
        0
    } else {
        cursor_line.saturating_sub(h / 2).min(lines.len() - h)
    };
    Paragraph::new(lines.into_iter().skip(offset).take(h).collect::<Vec<_>>()).render(inner, buf);
    for (r, &line) in at.iter().enumerate() {
        // Not while a value is typed: the click would move the edit.
        if s.edit.is_none() && (offset..offset + h).contains(&line) {
            let y = inner.y + (line - offset) as u16;
            targets.push(
                Rect {
                    y,
                    height: 1,
                    ..inner
                },
                Target::FormRow(r),
            );
        }
    }
    if wide {
        render_plan(s, config_path, side, buf);
    }
    if let Some(f) = &s.files {
        render_files(f, form_area, buf, targets);
    } else if let Some(p) = &s.picker {
        render_picker(p, &s.completions, form_area, buf, targets);
    } else if s.edit.is_some() && !s.completions.is_empty() {
        render_completions(&s.completions, inner, buf);
    }
}

/// The popup list over the form: the filter typed, the items that match
/// (the highlighted one kept in view), and how many match.
pub(crate) fn render_picker(
    p: &Picker,
    completions: &[String],
    area: Rect,
    buf: &mut Buffer,
    targets: &mut Targets,
) {
    // The list is modal: nothing beneath it answers a click.
    targets.clear();
    let matches = p.matches();
    let h = (matches.len() as u16 + 4).clamp(6, area.height.saturating_sub(2).max(6));
    let w = area.width.saturating_sub(6).clamp(30, 80);
    let rect = area.centered(
        Constraint::Length(w),
        Constraint::Length(h.min(area.height)),
    );
    Clear.render(rect, buf);
    let block = Block::bordered()
        .border_style(theme::title())
        .title(Span::styled(format!(" {} ", p.title), theme::title()))
        .title_bottom(Line::styled(
            format!(" {} of {} ", matches.len(), p.items.len()),
            theme::dim(),
        ));
    let inner = block.inner(rect);
    block.render(rect, buf);
    let mut lines = vec![filter_line(&p.filter)];
    let room = (inner.height as usize).saturating_sub(1);
    if matches.is_empty() {
        let text = if p.free_text && !p.filter.trim().is_empty() {
            "nothing matches: Enter takes the text typed"
        } else {
            "nothing matches"
        };
        lines.push(Line::styled(text, theme::dim()));
        for c in completions.iter().take(room.saturating_sub(1)) {
            lines.push(Line::styled(format!("  {c}"), theme::dim()));
        }
    } else {
        let sel = p.selected.min(matches.len() - 1);
        let first = sel.saturating_sub(room.saturating_sub(1));
        for (k, &i) in matches.iter().enumerate().skip(first).take(room) {
            let y = inner.y + 1 + (k - first) as u16;
            targets.push(
                Rect {
                    y,
                    height: 1,
                    ..inner
                },
                Target::ListItem(k),
            );
            let text = theme::fit(&p.items[i], inner.width as usize - 2);
            lines.push(if k == sel {
                Line::styled(
                    format!("▶ {text}"),
                    theme::selected().add_modifier(Modifier::BOLD),
                )
            } else {
                Line::raw(format!("  {text}"))
            });
        }
    }
    Paragraph::new(lines).render(inner, buf);
}

/// The text typed to filter a popup, with its cursor.
fn filter_line(text: &str) -> Line<'static> {
    Line::from(vec![
        Span::styled("› ", theme::title()),
        Span::styled(
            text.to_string(),
            Style::new().add_modifier(Modifier::UNDERLINED),
        ),
        Span::styled("█", Style::new().add_modifier(Modifier::SLOW_BLINK)),
    ])
}

/// The file browser over the form: the folder, the filter typed, the
/// entries (the selected one kept in view), and how many.
fn render_files(f: &FileBrowser, area: Rect, buf: &mut Buffer, targets: &mut Targets) {
    targets.clear();
    let items = f.items();
    let rect = area.centered(
        Constraint::Length(area.width.saturating_sub(4).clamp(30, 100)),
        Constraint::Length(area.height.saturating_sub(2).max(6).min(area.height)),
    );
    Clear.render(rect, buf);
    let title_w = rect.width.saturating_sub(4) as usize;
    let block = Block::bordered()
        .border_style(theme::title())
        .title(Span::styled(
            format!(
                " {} ",
                theme::fit_left(&theme::lexical(&f.dir).display().to_string(), title_w)
            ),
            theme::title(),
        ))
        .title_bottom(Line::styled(
            format!(
                " {} entries · Enter open/pick · ← up · Esc close ",
                theme::count(f.entries.len())
            ),
            theme::dim(),
        ));
    let inner = block.inner(rect);
    block.render(rect, buf);
    let mut lines = vec![filter_line(&f.filter)];
    if let Some(note) = &f.note {
        lines.push(Line::styled(note.clone(), theme::warn()));
    }
    let top = lines.len();
    let room = (inner.height as usize).saturating_sub(top);
    let sel = f.selected.min(items.len().saturating_sub(1));
    let first = sel.saturating_sub(room.saturating_sub(1));
    for (k, &item) in items.iter().enumerate().skip(first).take(room) {
        let y = inner.y + (top + k - first) as u16;
        targets.push(
            Rect {
                y,
                height: 1,
                ..inner
            },
            Target::ListItem(k),
        );
        let text = theme::fit(&f.label(item), inner.width as usize - 2);
        let dir = !matches!(item, Item::Entry(i) if !f.entries[i].is_dir);
        lines.push(if k == sel {
            Line::styled(
                format!("▶ {text}"),
                theme::selected().add_modifier(Modifier::BOLD),
            )
        } else if dir {
            Line::styled(format!("  {text}"), theme::title())
        } else {
            Line::raw(format!("  {text}"))
        });
    }
    Paragraph::new(lines).render(inner, buf);
}

/// What fits the path being typed, at the bottom of the form.
fn render_completions(fits: &[String], area: Rect, buf: &mut Buffer) {
    let shown = fits.len().min(6) as u16;
    let h = shown + 2 + u16::from(fits.len() > 6);
    if area.height < h + 2 {
        return;
    }
    let rect = Rect {
        y: area.y + area.height - h,
        height: h,
        ..area
    };
    Clear.render(rect, buf);
    let mut lines: Vec<Line> = fits
        .iter()
        .take(6)
        .map(|f| Line::raw(format!(" {f}")))
        .collect();
    if fits.len() > 6 {
        lines.push(Line::styled(
            format!(" … {} more", fits.len() - 6),
            theme::dim(),
        ));
    }
    Paragraph::new(lines)
        .block(Block::bordered().title(Span::styled(" Tab: these fit ", theme::dim())))
        .render(rect, buf);
}

fn render_plan(s: &SetupState, config_path: &Path, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(Span::styled(" Plan ", theme::title()));
    let mut lines: Vec<Line> = Vec::new();
    match s.to_config() {
        Ok(cfg) => {
            // The engine's own checks: "Ready" only when they pass.
            match s.problems() {
                Some([]) => lines.push(Line::styled("Ready to start (s)", theme::best())),
                Some(problems) => {
                    lines.push(Line::styled("Cannot start:", theme::warn()));
                    for p in problems {
                        lines.push(Line::styled(p.clone(), theme::warn()));
                    }
                }
                None => lines.push(Line::styled("Checking the run…", theme::dim())),
            }
            lines.push(Line::raw(""));
            if let Some(d) = s.id_entry() {
                lines.push(Line::from(vec![
                    Span::styled("ID  ", Style::new().fg(theme::ID)),
                    Span::raw(format!("{} ({})", d.name, count_text(&d.count).0)),
                ]));
            }
            for d in s.ood_entries() {
                lines.push(Line::from(vec![
                    Span::styled("OOD ", Style::new().fg(theme::OOD)),
                    Span::raw(format!("{} ({})", d.name, count_text(&d.count).0)),
                ]));
            }
            lines.push(Line::raw(""));
            let methods: Vec<String> = cfg.methods.iter().map(|m| m.to_string()).collect();
            lines.push(Line::raw(format!("scores: {}", methods.join(", "))));
            if let Some(n) = s.planned_images() {
                lines.push(Line::raw(format!(
                    "images to evaluate: {}",
                    theme::count(n)
                )));
            }
            for d in s.id_entry().into_iter().chain(s.ood_entries()) {
                if let Count::Error(_) = d.count {
                    lines.push(Line::styled(
                        format!("{} cannot be read: the run would fail", d.name),
                        theme::warn(),
                    ));
                }
            }
        }
        Err(e) => {
            lines.push(Line::styled("Not ready", theme::warn()));
            lines.push(Line::raw(""));
            lines.push(Line::raw(e));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        format!("config file: {}", config_path.display()),
        theme::dim(),
    ));
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block)
        .render(area, buf);
}

/// The fit row: the fit being made, or the one chosen with the model it
/// was made for (and whether that is the form's), or what none means.
fn fit_text(s: &SetupState, width: usize) -> (String, Style) {
    if let Some(progress) = &s.fitting {
        return (format!("{progress} · c cancels"), theme::warn());
    }
    let Some(i) = s.fit else {
        let needs = s
            .methods
            .iter()
            .filter(|m| m.enabled && m.method.needs_fit())
            .count();
        let text = match (s.fits.len(), needs) {
            (0, 0) => "none (Enter: make one from a labelled set)".to_string(),
            (0, _) => "none: the fit-based scores need one (Enter: make one)".to_string(),
            (n, _) => format!("none ({n} found: Enter to pick, or make one)"),
        };
        let style = if needs > 0 {
            theme::warn()
        } else {
            theme::dim()
        };
        return (choice(&text, !s.fits.is_empty()), style);
    };
    let f = &s.fits[i];
    let (made_for, style) = match s.fit_matches(i) {
        Some(true) => ("this model".to_string(), Style::new()),
        Some(false) => (
            format!("{}, not this model", f.info.model.name),
            theme::warn(),
        ),
        None => (f.info.model.name.clone(), Style::new()),
    };
    let tail = format!(
        " · for {made_for}, {} images",
        theme::count(f.info.images as usize)
    );
    let path = theme::fit_path(
        &f.path,
        width.saturating_sub(tail.chars().count() + 4).max(12),
    );
    (choice(&format!("{path}{tail}"), true), style)
}

/// An optional path as shown in the form, or what applies without one.
fn path_or(path: &Option<std::path::PathBuf>, default: &str, width: usize) -> String {
    path.as_ref()
        .map_or_else(|| default.to_string(), |p| theme::fit_path(p, width))
}
