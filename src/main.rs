use clap::Parser;
use gradnorm_tui::cli::{Cli, Command, UsageError};
use gradnorm_tui::commands;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => commands::tui::run(cli.config.as_deref()),
        Some(Command::Tui(args)) => {
            commands::tui::run(args.config.as_deref().or(cli.config.as_deref()))
        }
        Some(Command::Predict(args)) => commands::predict::run(&args),
        Some(Command::Eval(args)) => commands::eval::run(&args),
        Some(Command::Metrics(args)) => commands::metrics::run(&args),
        Some(Command::TrainDemo(args)) => commands::train_demo::run(&args),
        Some(Command::Bench(args)) => commands::bench::run(&args),
        Some(Command::TuneMahalanobis(args)) => commands::tune_mahalanobis::run(&args),
        Some(Command::Selftest(args)) => commands::selftest::run(&args),
        Some(Command::Runs(args)) => commands::runs::runs(&args),
        Some(Command::Report(args)) => commands::runs::report(&args),
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
