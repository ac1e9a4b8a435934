//! The terminal UI (ratatui + crossterm). It knows nothing of candle: it
//! starts runs through a `Launcher`, folds the engine's `Event`s into
//! `store::RunResults`, and draws from that and its own view state.
//!
//! - `app`: state and what actions do; `keymap`: every key, once (dispatch,
//!   footer, help); `analysis`: metrics off the UI thread;
//! - `component`: the one shape of a screen (keys in, draw, footer hints)
//!   and what screens read (`Ctx`); `screen`: the screens' names, overlays,
//!   message levels, the run's status; `mouse`: what a frame's clicks reach;
//! - `screens/`: setup, dashboard, anatomy, browser, inspect, runs;
//! - `chrome`: tabs, footer, help, confirmations; `preview`: images;
//! - `picker`: popup lists and path completion for the form;
//! - `discover`, `config`, `session`: files found, the TOML, runs;
//! - the event loop below: one `tokio::select!` over the terminal's events,
//!   the workers' wake-ups and a tick.

pub mod analysis;
pub mod app;
pub mod chrome;
pub mod component;
pub mod discover;
pub mod files;
pub mod fitting;
pub mod histogram;
pub mod keymap;
pub mod mouse;
pub mod picker;
pub mod preflight;
pub mod preview;
pub mod screen;
pub mod screens;
pub mod session;
pub mod theme;
pub mod wake;

pub use screens::{anatomy, browser, dashboard, inspect, runs, setup};

pub use app::App;
use mouse::Hits;
pub use screen::{Level, Overlay, Screen, Status};
pub use session::{Launcher, RunSession};
pub use setup::SetupState;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use std::time::{Duration, Instant};

/// The loop's tick: the analysis may be due (it is throttled), and a
/// running run's header (rate, ETA) is redrawn at least this often.
const TICK: Duration = Duration::from_millis(250);
/// While a run goes, redraw at least this often even when nothing arrived.
const IDLE_REDRAW: Duration = Duration::from_millis(500);

/// Draws the app into `area` and returns where things landed (tabs, click
/// targets, the plot, the browser's list): drawing only reads the app.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) -> Hits {
    let mut hits = Hits::default();
    let screen = app.screen();
    let (w, h) = screen.min_size();
    if area.width < w || area.height < h {
        chrome::too_small(screen, area, buf);
        return hits;
    }
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    chrome::header(app, head, buf, &mut hits);
    app.component().draw(&app.ctx(), body, buf, &mut hits);
    chrome::footer(app, foot, buf, &mut hits);
    chrome::overlay(app, body.union(foot), buf, &mut hits);
    if app.no_color() {
        // NO_COLOR (no-color.org): bold, reverse and underline still
        // mark what colour would.
        for y in area.top()..area.bottom() {
            for x in area.left()..area.right() {
                if let Some(cell) = buf.cell_mut((x, y)) {
                    cell.fg = ratatui::style::Color::Reset;
                    cell.bg = ratatui::style::Color::Reset;
                }
            }
        }
    }
    hits
}

impl App {
    /// Draws a frame and keeps where things landed, for the mouse.
    pub fn draw(&mut self, frame: &mut ratatui::Frame) {
        let hits = render(self, frame.area(), frame.buffer_mut());
        self.keep_layout(hits);
    }
}

/// The image protocol: half-blocks with `GRADNORM_TUI_IMAGES=halfblocks`,
/// none with `=off`, else the terminal's best, asked once the alternate
/// screen is up. Under tmux or screen the answer takes the query's whole
/// timeout (2 s) and swallows the keys typed meanwhile, so there the query
/// is only made with `=query`, and half-blocks are used.
fn previews(wake: wake::Wake) -> preview::Previews {
    use ratatui_image::picker::Picker;
    let setting = std::env::var("GRADNORM_TUI_IMAGES").unwrap_or_default();
    let multiplexed = std::env::var_os("TMUX").is_some()
        || std::env::var("TERM").is_ok_and(|t| t.starts_with("screen") || t.starts_with("tmux"));
    match setting.as_str() {
        "off" => preview::Previews::off(),
        "halfblocks" => preview::Previews::threaded(Picker::halfblocks(), wake),
        s if s != "query" && multiplexed => {
            tracing::info!("under a terminal multiplexer: half-block previews, no query");
            preview::Previews::threaded(Picker::halfblocks(), wake)
        }
        _ => {
            let picker = Picker::from_query_stdio().unwrap_or_else(|e| {
                tracing::info!("terminal graphics query failed, using half-blocks: {e}");
                Picker::halfblocks()
            });
            preview::Previews::threaded(picker, wake)
        }
    }
}

/// Runs the TUI on this terminal until the user quits. The terminal is
/// restored on every exit, panics included (`ratatui::init`'s hook).
pub fn run(
    setup: SetupState,
    config_path: std::path::PathBuf,
    store: std::path::PathBuf,
    launcher: Box<dyn Launcher>,
    message: Option<(String, Level)>,
    start: bool,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let mut terminal = ratatui::try_init()?;
    crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture)?;
    ui_thread_panics_only();
    let (wake, notify) = wake::Wake::new();
    let previews = previews(wake.clone());
    let mut app = App::new(setup, config_path, launcher, previews)
        .store(store)
        .threaded(wake);
    app.set_no_color(std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()));
    if start {
        app.start();
    }
    if let Some((text, level)) = message {
        app.say(text, level);
    }
    let result = runtime.block_on(event_loop(&mut terminal, &mut app, &notify));
    restore_terminal();
    result
}

/// Gives the terminal back (mouse capture off, raw mode off, main screen).
/// Not ratatui::restore(): on a hung-up terminal it reports its write error
/// with eprintln!, which panics (in the SIGHUP handler that killed the
/// signal thread before its exit, leaving the UI spinning on the dead tty).
pub fn restore_terminal() {
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    let _ = ratatui::try_restore();
}

/// ratatui's hook restores the terminal on a panic; a panic on a worker
/// thread (engine, decoding) must not pull the terminal from under the
/// running UI, so there it is only logged (the UI reports the stopped run).
fn ui_thread_panics_only() {
    let ui = std::thread::current().id();
    let restore_and_report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui {
            let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
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

/// The next terminal event (crossterm's `EventStream`, a futures `Stream`).
async fn next_event(
    events: &mut crossterm::event::EventStream,
) -> Option<std::io::Result<crossterm::event::Event>> {
    use futures_core::Stream;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *events).poll_next(cx)).await
}

/// One `select!` over the terminal's events, the workers' wake-ups (engine
/// events, analyses, previews, counts) and a tick; after each, every
/// channel is drained without blocking and the frame redrawn if needed.
async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    notify: &tokio::sync::Notify,
) -> std::io::Result<()> {
    let mut events = crossterm::event::EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_draw = Instant::now() - IDLE_REDRAW;
    loop {
        if app.dirty() || (app.running() && last_draw.elapsed() >= IDLE_REDRAW) {
            terminal.draw(|f| app.draw(f))?;
            last_draw = Instant::now();
            app.after_draw();
        }
        tokio::select! {
            ev = next_event(&mut events) => match ev {
                Some(Ok(ev)) => app.handle_event(ev),
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            _ = notify.notified() => {}
            _ = tick.tick() => {}
        }
        if app.should_quit() {
            return Ok(());
        }
        app.tick();
    }
}
