//! What surrounds every screen: the tab bar with the run's status, the key
//! hints footer, the help overlay, confirmations, and the too-small notice.

use super::app::{App, Level, Overlay, Screen, Status};
use super::theme;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

pub fn header(app: &App, area: Rect, buf: &mut Buffer) {
    let mut spans = vec![Span::styled(" gradnorm-tui ", theme::title())];
    for (i, s) in Screen::ALL.iter().enumerate() {
        let text = format!(" {} {} ", i + 1, s.tab());
        spans.push(if *s == app.screen {
            Span::styled(text, theme::selected().add_modifier(Modifier::BOLD))
        } else {
            Span::raw(text)
        });
    }
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
    let p = app.results.progress.as_ref();
    match app.status() {
        Status::Idle => Line::styled("no run ", theme::dim()),
        Status::Running => {
            let mut t = if short { "●" } else { "● running" }.to_string();
            if let Some(p) = p {
                if p.run_total > 0 {
                    t.push_str(&format!(
                        " {:.0}%",
                        100.0 * p.run_done as f64 / p.run_total as f64
                    ));
                }
                if !short {
                    t.push_str(&format!(" · {:.1} img/s", p.images_per_sec));
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
                theme::duration(app.results.elapsed_secs)
            ),
            theme::best(),
        ),
        Status::Cancelled => Line::styled("■ cancelled ", theme::warn()),
        Status::Failed(_) => Line::styled("✗ failed ", theme::error()),
    }
}

/// Key hints of the screen in view: (key, what) pairs.
pub fn hints(app: &App) -> Vec<(&'static str, &'static str)> {
    let mut h: Vec<(&str, &str)> = match app.screen {
        Screen::Setup if app.setup.edit.is_some() => {
            return vec![("Enter", "confirm"), ("Esc", "cancel"), ("Ctrl-U", "clear")]
        }
        Screen::Setup => vec![
            ("↑↓", "move"),
            ("←→", "choose"),
            ("Space", "toggle"),
            ("Enter", "edit"),
            ("s", "start"),
            ("w", "write config"),
        ],
        Screen::Dashboard => vec![
            ("↑↓", "method"),
            ("←→", "OOD set"),
            ("Enter", "misdetections"),
        ],
        Screen::Anatomy => vec![("←→", "OOD set")],
        Screen::Browser => vec![
            ("↑↓", "move"),
            ("s", "sort"),
            ("d", "dataset"),
            ("x", "misdetections"),
            ("m", "method"),
            ("o", "OOD set"),
        ],
    };
    if app.running() {
        h.push(("c", "cancel run"));
    }
    h.extend([("Tab", "screens"), ("?", "help"), ("q", "quit")]);
    h
}

pub fn footer(app: &App, area: Rect, buf: &mut Buffer) {
    if let Some((text, level)) = &app.message {
        let style = match level {
            Level::Info => Style::new().fg(theme::GOOD),
            Level::Warn => theme::warn(),
            Level::Error => theme::error(),
        };
        Line::styled(format!(" {text}"), style).render(area, buf);
        return;
    }
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1usize;
    for (k, what) in hints(app) {
        let w = k.chars().count() + what.chars().count() + 4;
        if used + w > area.width as usize {
            break;
        }
        spans.push(Span::styled(format!(" {k} "), theme::key()));
        spans.push(Span::raw(format!(" {what} ")));
        used += w;
    }
    Line::from(spans).render(area, buf);
}

/// Every key, by screen.
pub const HELP: &[(&str, &[(&str, &str)])] = &[
    (
        "Everywhere",
        &[
            ("1 2 3 4 / Tab", "setup, dashboard, anatomy, browser"),
            ("m M / o O", "next, previous method / OOD set"),
            ("c", "cancel the run (what was computed is kept)"),
            ("q / Ctrl-C", "quit (q asks while a run is going)"),
        ],
    ),
    (
        "Setup",
        &[
            ("↑ ↓ / j k", "move between fields"),
            (
                "← → / h l",
                "choose (checkpoint, model, ID set, device, dtype, batch)",
            ),
            ("Space", "toggle an OOD set or a method"),
            ("Enter", "edit a value, type a path"),
            ("s / w", "start the evaluation / write the config file"),
        ],
    ),
    (
        "Dashboard",
        &[
            ("↑ ↓ / ← →", "method / OOD set: re-plots at once"),
            ("Enter", "browse the method's misdetections"),
        ],
    ),
    (
        "Browser",
        &[
            ("↑ ↓ PgUp PgDn g G", "move (the preview follows)"),
            ("s / r", "sort by the method's score / reverse it"),
            ("d", "filter to one dataset (cycles)"),
            ("x", "misdetections at the 95%-TPR threshold"),
            ("Esc", "clear the filters"),
        ],
    ),
];

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    area.centered(
        Constraint::Length(w.min(area.width)),
        Constraint::Length(h.min(area.height)),
    )
}

pub fn overlay(app: &App, area: Rect, buf: &mut Buffer) {
    match app.overlay {
        None => {}
        Some(Overlay::Help) => help(area, buf),
        Some(Overlay::ConfirmQuit) => {
            confirm("Quit?", "A run is going. Quit and cancel it?", area, buf)
        }
        Some(Overlay::ConfirmCancel) => confirm(
            "Cancel the run?",
            "The images scored so far are kept and stay browsable.",
            area,
            buf,
        ),
    }
}

fn help(area: Rect, buf: &mut Buffer) {
    let mut lines = Vec::new();
    for (section, keys) in HELP {
        lines.push(Line::styled(*section, theme::title()));
        for (k, what) in *keys {
            lines.push(Line::from(vec![
                Span::styled(
                    format!("  {k:<18}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ]));
        }
    }
    let h = lines.len() as u16 + 2;
    let rect = centered(area, 78, h);
    Clear.render(rect, buf);
    Paragraph::new(lines)
        .block(
            Block::bordered()
                .title(Span::styled(" Keys ", theme::title()))
                .title_bottom(
                    Line::styled(" ? or Esc closes ", theme::dim()).alignment(Alignment::Right),
                ),
        )
        .render(rect, buf);
}

fn confirm(title: &str, text: &str, area: Rect, buf: &mut Buffer) {
    let rect = centered(area, 50, 6);
    Clear.render(rect, buf);
    Paragraph::new(vec![
        Line::raw(text.to_string()),
        Line::raw(""),
        Line::from(vec![
            Span::styled(" y ", theme::key()),
            Span::raw(" yes   "),
            Span::styled(" n ", theme::key()),
            Span::raw(" no"),
        ]),
    ])
    .wrap(Wrap { trim: true })
    .block(
        Block::bordered()
            .border_style(theme::warn())
            .title(Span::styled(format!(" {title} "), theme::warn())),
    )
    .render(rect, buf);
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
