//! `gradnorm-tui metrics --id FILE --ood FILE [--json]`.

use crate::cli::{MetricsArgs, UsageError};
use gradnorm_core::metrics;
use std::path::Path;
use std::process::ExitCode;

pub fn run(args: &MetricsArgs) -> anyhow::Result<ExitCode> {
    let id = read_scores(&args.id)?;
    let ood = read_scores(&args.ood)?;
    let m = metrics::measures(&id, &ood);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "auroc": m.auroc,
                "aupr_in": m.aupr_in,
                "aupr_out": m.aupr_out,
                "fpr95": m.fpr95,
            })
        );
    } else {
        println!("ID scores:  {} ({})", id.len(), args.id.display());
        println!("OOD scores: {} ({})", ood.len(), args.ood.display());
        println!("AUROC     {:>8.2}%", 100.0 * m.auroc);
        println!("AUPR-In   {:>8.2}%", 100.0 * m.aupr_in);
        println!("AUPR-Out  {:>8.2}%", 100.0 * m.aupr_out);
        println!("FPR95     {:>8.2}%", 100.0 * m.fpr95);
    }
    Ok(ExitCode::SUCCESS)
}

/// One finite number per non-empty line; anything else is a usage error.
pub fn read_scores(path: &Path) -> Result<Vec<f64>, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    let mut scores = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: f64 = line.parse().map_err(|_| {
            UsageError(format!(
                "{}: line {}: `{line}` is not a number",
                path.display(),
                n + 1
            ))
        })?;
        if !v.is_finite() {
            return Err(UsageError(format!(
                "{}: line {}: `{line}` is not a finite number",
                path.display(),
                n + 1
            )));
        }
        scores.push(v);
    }
    if scores.is_empty() {
        return Err(UsageError(format!(
            "{}: no scores in this file",
            path.display()
        )));
    }
    Ok(scores)
}
