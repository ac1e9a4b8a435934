//! `gradnorm-tui`: the command line (`cli`, one file per subcommand in
//! `commands`) over the engine, and the terminal UI (the library beside).

mod cli;
mod commands;
mod interrupt;

use clap::Parser;
use cli::{Cli, Command, UsageError};
use std::process::ExitCode;

fn main() -> ExitCode {
    report_panics();
    restore_sigpipe();
    let cli = Cli::parse();
    // `--store` before the command counts for the commands that take one.
    let top_store = cli.tui.store.clone();
    let result = match cli.command {
        None => commands::tui::run(cli.tui.config.as_deref(), cli.tui.store.as_deref()),
        Some(Command::Tui(args)) => commands::tui::run(
            args.config.as_deref().or(cli.tui.config.as_deref()),
            args.store.as_deref().or(cli.tui.store.as_deref()),
        ),
        Some(Command::Predict(args)) => commands::predict::run(&args),
        Some(Command::Eval(mut args)) => {
            args.store = args.store.or(top_store);
            commands::eval::run(&args)
        }
        Some(Command::Metrics(args)) => commands::metrics::run(&args),
        Some(Command::TrainDemo(args)) => commands::train_demo::run(&args),
        Some(Command::Bench(args)) => commands::bench::run(&args),
        Some(Command::TuneMahalanobis(args)) => commands::tune_mahalanobis::run(&args),
        Some(Command::Fit(args)) => commands::fit::run(&args),
        Some(Command::Selftest(args)) => commands::selftest::run(&args),
        Some(Command::Layers(args)) => commands::layers::run(&args),
        Some(Command::Runs(mut args)) => {
            args.store = args.store.or(top_store);
            commands::runs::runs(&args)
        }
        Some(Command::Report(mut args)) => {
            args.store = args.store.or(top_store);
            commands::runs::report(&args)
        }
        Some(Command::Merge(args)) => commands::runs::merge(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A panic is a bug: whatever thread it is on, give the terminal back (the
/// TUI may hold it raw) and say where the log is. The TUI installs its own
/// hook on top while it runs (worker panics are logged there, not printed
/// over the screen); code that expects a decoder to panic marks it.
fn report_panics() {
    std::panic::set_hook(Box::new(|info| {
        if gradnorm_engine::data::image::panic_expected() {
            tracing::warn!("decoder panic (caught): {info}");
            return;
        }
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        tracing::error!("panic on thread {thread}: {info}");
        let _ = crossterm::terminal::disable_raw_mode();
        let _ = crossterm::execute!(
            std::io::stderr(),
            crossterm::terminal::LeaveAlternateScreen,
            crossterm::cursor::Show
        );
        let log = commands::logging::path()
            .map(|p| format!("the log is {}", p.display()))
            .unwrap_or_else(|| "no log file (set GRADNORM_LOG=FILE for one)".into());
        eprintln!(
            "\ngradnorm-tui: internal error (a bug) on thread `{thread}`: {info}\n\
             please report it with the command line; {log}"
        );
    }));
}

/// Rust ignores SIGPIPE, so printing into a closed pipe
/// (`gradnorm-tui predict ... | head -1`) would panic; a command-line tool
/// should end quietly instead, as `cat` does. Results files are written
/// before anything is printed.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: resetting a signal to its default disposition at startup,
    // before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
