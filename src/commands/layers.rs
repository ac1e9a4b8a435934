//! `gradnorm-tui layers`: the weights GradNorm's `layer=` accepts.

use crate::cli::LayersArgs;
use gradnorm_engine::model::probe;
use std::io::Write;
use std::process::ExitCode;

pub fn run(args: &LayersArgs) -> anyhow::Result<ExitCode> {
    let loaded = super::load_model(&args.model, None)?;
    let layers = probe::weight_layers(loaded.model.as_ref())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for l in &layers {
            let line = serde_json::json!({
                "name": l.name,
                "shape": l.shape,
                "parameters": l.shape.iter().product::<usize>(),
            });
            writeln!(out, "{line}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let width = layers.iter().map(|l| l.name.len()).max().unwrap_or(0);
    writeln!(
        out,
        "{:<width$}  {:<20}  {:>12}",
        "layer", "shape", "parameters"
    )?;
    for l in &layers {
        let shape = format!("{:?}", l.shape);
        let n: usize = l.shape.iter().product();
        writeln!(out, "{:<width$}  {shape:<20}  {n:>12}", l.name)?;
    }
    writeln!(
        out,
        "{} layers of {}; `--methods gradnorm:layer=NAME` reads one (the last is the head, `layer=head`)",
        layers.len(),
        loaded.model.info().name
    )?;
    Ok(ExitCode::SUCCESS)
}
