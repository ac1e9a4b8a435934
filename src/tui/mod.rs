//! The terminal UI (ratatui + crossterm). It knows nothing of candle: it
//! starts runs through a `Launcher`, folds the engine's `Event`s into
//! `store::RunResults`, and draws from that and its own view state.
//!
//! - `app`: state and input; `analysis`: metrics off the UI thread;
//! - `setup`, `dashboard`, `anatomy`, `browser`: the four screens;
//! - `chrome`: tabs, footer, help, confirmations; `preview`: images;
//! - `discover`, `config`, `session`: files found, the TOML, runs.

pub mod analysis;
pub mod anatomy;
pub mod app;
pub mod browser;
pub mod chrome;
pub mod config;
pub mod dashboard;
pub mod discover;
pub mod preview;
pub mod session;
pub mod setup;
pub mod theme;

pub use app::{App, Level, Overlay, Screen, Status};
pub use session::{Launcher, RunSession};
pub use setup::SetupState;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::Widget;
use std::time::{Duration, Instant};

/// How long the loop waits for input before polling the run again.
const POLL: Duration = Duration::from_millis(50);
/// While a run goes, redraw at least this often even when nothing arrived.
const IDLE_REDRAW: Duration = Duration::from_millis(500);

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (w, h) = self.screen.min_size();
        if area.width < w || area.height < h {
            chrome::too_small(self.screen, area, buf);
            return;
        }
        let [head, body, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        chrome::header(self, head, buf);
        match self.screen {
            Screen::Setup => setup::render(&self.setup, &self.config_path, body, buf),
            Screen::Dashboard => dashboard::render(self, body, buf),
            Screen::Anatomy => anatomy::render(self, body, buf),
            Screen::Browser => browser::View {
                state: &self.browser,
                results: &self.results,
                analysis: &self.analysis,
                previews: &self.previews,
                method: self.method,
                ood: self.ood_dataset(),
            }
            .render(body, buf),
        }
        chrome::footer(self, foot, buf);
        chrome::overlay(self, body.union(foot), buf);
    }
}

/// The image protocol: the terminal's best (queried once the alternate
/// screen is up), or half-blocks with `GRADNORM_TUI_IMAGES=halfblocks`, or
/// none with `=off`.
fn previews() -> preview::Previews {
    use ratatui_image::picker::Picker;
    match std::env::var("GRADNORM_TUI_IMAGES").as_deref() {
        Ok("off") => preview::Previews::off(),
        Ok("halfblocks") => preview::Previews::threaded(Picker::halfblocks()),
        _ => {
            let picker = Picker::from_query_stdio().unwrap_or_else(|e| {
                tracing::info!("terminal graphics query failed, using half-blocks: {e}");
                Picker::halfblocks()
            });
            preview::Previews::threaded(picker)
        }
    }
}

/// Runs the TUI on this terminal until the user quits. The terminal is
/// restored on every exit, panics included (`ratatui::init`'s hook).
pub fn run(
    setup: SetupState,
    config_path: std::path::PathBuf,
    launcher: Box<dyn Launcher>,
    message: Option<(String, Level)>,
    start: bool,
) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    ui_thread_panics_only();
    let previews = previews();
    let mut app = App::new(setup, config_path, launcher, previews).threaded();
    if start {
        app.start();
    }
    if message.is_some() {
        app.message = message;
    }
    let result = event_loop(&mut terminal, &mut app);
    ratatui::restore();
    result
}

/// ratatui's hook restores the terminal on a panic; a panic on a worker
/// thread (engine, decoding) must not pull the terminal from under the
/// running UI, so there it is only logged (the UI reports the stopped run).
fn ui_thread_panics_only() {
    let ui = std::thread::current().id();
    let restore_and_report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui {
            restore_and_report(info);
        } else {
            let name = std::thread::current()
                .name()
                .unwrap_or("worker")
                .to_string();
            tracing::error!("panic on thread {name}: {info}");
        }
    }));
}

fn event_loop(terminal: &mut ratatui::DefaultTerminal, app: &mut App) -> std::io::Result<()> {
    use crossterm::event;
    let mut last_draw = Instant::now() - IDLE_REDRAW;
    loop {
        if app.dirty || (app.running() && last_draw.elapsed() >= IDLE_REDRAW) {
            terminal.draw(|f| f.render_widget(&*app, f.area()))?;
            app.dirty = false;
            last_draw = Instant::now();
            app.after_draw();
        }
        if event::poll(POLL)? {
            // Take every pending input before drawing again.
            loop {
                app.handle_event(event::read()?);
                if app.should_quit || !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
        if app.should_quit {
            return Ok(());
        }
        app.tick();
    }
}
