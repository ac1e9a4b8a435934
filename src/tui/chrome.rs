//! What surrounds every screen: the tab bar with the run's status, the key
//! hints footer, the help overlay, confirmations, and the too-small notice.

use super::app::App;
use super::keymap::{self, Action, Mode};
use super::mouse::{Hits, Target, Targets};
use super::screen::{Level, Overlay, Screen, Status};
use super::theme;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

pub fn header(app: &App, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
    // The program's name goes first where the tabs and the short status
    // leave room for it (at 80 columns they do not).
    let name = Span::styled(" gradnorm-tui ", theme::title());
    let tabs_w: usize = Screen::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| format!(" {} {} ", i + 1, s.tab()).chars().count())
        .sum();
    let room = name.width() + tabs_w + 1 + status_line(app, true).width();
    let mut spans = Vec::new();
    if room <= area.width as usize {
        spans.push(name);
    }
    let mut x = area.x + spans.first().map_or(0, |s| s.width()) as u16;
    let mut at = [(0u16, 0u16); Screen::ALL.len()];
    for (i, s) in Screen::ALL.iter().enumerate() {
        let text = format!(" {} {} ", i + 1, s.tab());
        let w = text.chars().count() as u16;
        at[i] = (x, x + w.saturating_sub(1));
        x += w;
        spans.push(if *s == app.screen() {
            Span::styled(text, theme::selected().add_modifier(Modifier::BOLD))
        } else {
            Span::raw(text)
        });
    }
    hits.tabs = at.to_vec();
    let tabs = Line::from(spans);
    let used = tabs.width() as u16;
    tabs.render(area, buf);
    let mut status = status_line(app, false);
    if used + 1 + status.width() as u16 > area.width {
        status = status_line(app, true);
    }
    let w = status.width() as u16;
    if used + 1 + w <= area.width {
        status.render(
            Rect {
                x: area.x + area.width - w,
                width: w,
                ..area
            },
            buf,
        );
    }
}

fn status_line(app: &App, short: bool) -> Line<'static> {
    let p = app.results().progress.as_ref();
    match app.status() {
        Status::Idle => Line::styled("no run ", theme::dim()),
        Status::Running => {
            let mut t = if short { "●" } else { "● running" }.to_string();
            if let Some(p) = p {
                if p.run_total > 0 {
                    t.push(' ');
                    t.push_str(&theme::percent(p.run_done as f64 / p.run_total as f64, 0));
                }
                if !short {
                    t.push_str(&format!(" · {}", theme::rate(p.images_per_sec)));
                }
                if let Some(eta) = p.eta_secs() {
                    t.push_str(&format!(" · ETA {}", theme::duration(eta)));
                }
            }
            Line::styled(t + " ", theme::warn())
        }
        Status::Finished if short => Line::styled("✓ done ", theme::best()),
        Status::Finished => Line::styled(
            format!(
                "✓ finished in {} ",
                theme::duration(app.results().elapsed_secs)
            ),
            theme::best(),
        ),
        Status::Cancelled => Line::styled("■ cancelled ", theme::warn()),
        Status::Failed(_) => Line::styled("✗ failed ", theme::error()),
    }
}

/// Key hints of the mode in view: (keys, what, action), from the keymap.
pub fn hints(app: &App) -> Vec<(&'static str, &'static str, Action)> {
    app.hints()
}

pub fn footer(app: &App, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
    // The help and quit hints always show; others fill what is left, in
    // order. A message goes first, beside them, never in their place (a
    // newcomer who finished a run still sees `?`).
    let all = hints(app);
    let width = |(k, what, _): &(&str, &str, Action)| k.chars().count() + what.chars().count() + 4;
    let kept_last = all
        .iter()
        .filter(|(k, _, _)| matches!(*k, "?" | "q"))
        .map(width)
        .sum::<usize>();
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1 + kept_last;
    if let Some((text, level)) = app.message() {
        let style = match level {
            Level::Info => Style::new().fg(theme::GOOD),
            Level::Warn => theme::warn(),
            Level::Error => theme::error(),
        };
        let room = (area.width as usize).saturating_sub(used + 2);
        let text = theme::fit(text, room);
        used += text.chars().count() + 2;
        spans.push(Span::styled(text, style));
        spans.push(Span::raw("  "));
    }
    let mut shown = Vec::new();
    for h in &all {
        if matches!(h.0, "?" | "q") {
            shown.push(*h);
        } else if used + width(h) <= area.width as usize {
            used += width(h);
            shown.push(*h);
        }
    }
    // Each hint is a button: a click does what its key does.
    let mut x = area.x + spans.iter().map(|s| s.width() as u16).sum::<u16>();
    for (k, what, action) in shown {
        let w = (k.chars().count() + what.chars().count() + 4) as u16;
        hits.targets.push(
            Rect::new(x, area.y, w.min(area.right().saturating_sub(x)), 1),
            Target::Act(action),
        );
        x += w;
        spans.push(Span::styled(format!(" {k} "), theme::key()));
        spans.push(Span::raw(format!(" {what} ")));
    }
    Line::from(spans).render(area, buf);
}

/// The help's sections: the screen in view first, then the keys of every
/// screen, all from the keymap.
pub fn help_sections(screen: Screen) -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let here = Mode::of_screen(screen);
    let mut modes = vec![here, Mode::Global];
    if screen == Screen::Setup {
        modes.extend([Mode::Edit, Mode::Picker, Mode::Files]);
    }
    for m in [
        Mode::Setup,
        Mode::Dashboard,
        Mode::Anatomy,
        Mode::Browser,
        Mode::Inspect,
        Mode::Runs,
    ] {
        if !modes.contains(&m) {
            modes.push(m);
        }
    }
    modes
        .into_iter()
        .map(|m| (m.title(), keymap::help(m)))
        .collect()
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    area.centered(
        Constraint::Length(w.min(area.width)),
        Constraint::Length(h.min(area.height)),
    )
}

pub fn overlay(app: &App, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
    if app.overlay().is_some() {
        // Modal: nothing beneath answers a click.
        hits.targets.clear();
    }
    let t = &mut hits.targets;
    match app.overlay() {
        None => {}
        Some(Overlay::Help) => help(app, area, buf),
        Some(Overlay::ConfirmQuit) => {
            confirm("Quit?", "A run is going. Quit and cancel it?", area, buf, t)
        }
        Some(Overlay::ConfirmReplace) => {
            // What happens since the store: the run shown is not lost.
            let text = format!(
                "A new run takes this screen. The run shown stays in the run store ({}): the Runs screen (6) reopens it.",
                theme::fit_path(&app.runs().dir, 24)
            );
            confirm("Start a new run?", &text, area, buf, t)
        }
        Some(Overlay::ConfirmSize) => {
            let text = match &app.setup().size_question {
                Some(q) => format!(
                    "{} x {} is far from {}'s own {} x {}, which misleads its scores. y keeps {}, n takes {}.",
                    q.size, q.size, q.model, q.own, q.own, q.size, q.own
                ),
                None => String::new(),
            };
            confirm("Keep this image size?", &text, area, buf, t)
        }
        Some(Overlay::ConfirmCancel) => confirm(
            "Cancel the run?",
            "The run goes on while you answer. y stops it after the current batch; the images scored so far stay browsable.",
            area,
            buf,
            t,
        ),
    }
}

fn help(app: &App, area: Rect, buf: &mut Buffer) {
    let mut lines = Vec::new();
    for (section, keys) in help_sections(app.screen()) {
        if !lines.is_empty() {
            lines.push(Line::raw(""));
        }
        lines.push(Line::styled(section, theme::title()));
        for (k, what) in keys {
            lines.push(Line::from(vec![
                Span::styled(
                    format!("  {k:<12}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(what),
            ]));
        }
    }
    let rect = centered(area, 90, lines.len() as u16 + 2);
    let inner_h = rect.height.saturating_sub(2) as usize;
    let max_scroll = lines.len().saturating_sub(inner_h);
    let scroll = app.help_scroll().min(max_scroll);
    let more = if max_scroll > 0 {
        format!(
            " {}-{} of {} · ↑↓ scroll ",
            scroll + 1,
            scroll + inner_h,
            lines.len()
        )
    } else {
        String::new()
    };
    Clear.render(rect, buf);
    Paragraph::new(lines)
        .scroll((scroll as u16, 0))
        .block(
            Block::bordered()
                .title(Span::styled(
                    format!(" Keys · {} ", app.screen().title()),
                    theme::title(),
                ))
                .title_bottom(Line::styled(more, theme::dim()).alignment(Alignment::Left))
                .title_bottom(
                    Line::styled(" ? or Esc closes ", theme::dim()).alignment(Alignment::Right),
                ),
        )
        .render(rect, buf);
}

fn confirm(title: &str, text: &str, area: Rect, buf: &mut Buffer, targets: &mut Targets) {
    let rect = centered(area, 50, 6);
    Clear.render(rect, buf);
    let block = Block::bordered()
        .border_style(theme::warn())
        .title(Span::styled(format!(" {title} "), theme::warn()));
    let inner = block.inner(rect);
    block.render(rect, buf);
    Paragraph::new(text.to_string())
        .wrap(Wrap { trim: true })
        .render(
            Rect {
                height: inner.height.saturating_sub(1),
                ..inner
            },
            buf,
        );
    // The buttons on the last line; a click answers as the key does.
    let y = inner.bottom().saturating_sub(1);
    Line::from(vec![
        Span::styled(" y ", theme::key()),
        Span::raw(" yes   "),
        Span::styled(" n ", theme::key()),
        Span::raw(" no"),
    ])
    .render(
        Rect {
            y,
            height: 1,
            ..inner
        },
        buf,
    );
    targets.push(Rect::new(inner.x, y, 9, 1), Target::Act(Action::Yes));
    targets.push(Rect::new(inner.x + 10, y, 7, 1), Target::Act(Action::No));
}

pub fn too_small(screen: Screen, area: Rect, buf: &mut Buffer) {
    let (w, h) = screen.min_size();
    let text = vec![
        Line::styled("Terminal too small", theme::warn()),
        Line::raw(format!("{}×{} here;", area.width, area.height)),
        Line::raw(format!("the {} needs {w}×{h}.", screen.title())),
        Line::styled("Enlarge it, or press q to quit.", theme::dim()),
    ];
    let y = area.y + area.height.saturating_sub(text.len() as u16) / 2;
    Paragraph::new(text)
        .alignment(Alignment::Center)
        .wrap(Wrap { trim: true })
        .render(
            Rect {
                y,
                height: area.height.saturating_sub(y - area.y),
                ..area
            },
            buf,
        );
}
