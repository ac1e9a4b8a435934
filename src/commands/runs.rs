//! `runs`, `report` and `merge`: the run store from the command line.

use crate::cli::{store_dir, MergeArgs, ReportArgs, RunsArgs, RunsCommand, UsageError};
use gradnorm_core::run::{report, RunResults};
use gradnorm_engine::store::{self, export, RunRow, Store};
use std::process::ExitCode;

/// `gradnorm-tui runs [show ID | rm ID]`.
pub fn runs(args: &RunsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        None => {
            let store = Store::open_existing(&store_dir(args.store.as_deref()))?;
            let rows = store.list()?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no runs in {}", store.path().display());
            } else {
                print!("{}", runs_table(&rows));
            }
        }
        Some(RunsCommand::Show { id }) => {
            let store = Store::open_existing(&store_dir(args.store.as_deref()))?;
            let id = store.resolve(id)?;
            let row = store
                .list()?
                .into_iter()
                .find(|r| r.id == id)
                .ok_or_else(|| anyhow::anyhow!("run {id} vanished"))?;
            let config = store.config(id)?;
            let results = store.load(id)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "run": row,
                        "config": config,
                        "summary": results.summary().map(|s| s.to_json()),
                    }))?
                );
            } else {
                println!(
                    "run {} ({}), created {} UTC, updated {} UTC",
                    row.id, row.state, row.created, row.updated
                );
                if let Some(s) = row.shard {
                    println!("shard {s}");
                }
                if let Some(e) = &row.error {
                    println!("error: {e}");
                }
                println!("config: {}", serde_json::to_string(&config)?);
                if let Some(summary) = results.summary() {
                    println!();
                    print!("{}", report::run_header(&summary));
                    println!();
                    print!("{}", report::paper_table(&summary));
                }
            }
        }
        Some(RunsCommand::Rm { id }) => {
            let mut store = Store::open_existing(&store_dir(args.store.as_deref()))?;
            let id = store.resolve(id)?;
            store.remove(id)?;
            println!("removed run {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// id, when, model, sets, methods, state, images.
fn runs_table(rows: &[RunRow]) -> String {
    let mut table = vec![vec![
        "id".to_string(),
        "created (UTC)".into(),
        "model".into(),
        "device".into(),
        "sets".into(),
        "methods".into(),
        "state".into(),
        "images".into(),
    ]];
    for r in rows {
        let mut state = r.state.clone();
        if let Some(s) = r.shard {
            state.push_str(&format!(" (shard {s})"));
        }
        table.push(vec![
            r.id.to_string(),
            r.created.clone(),
            r.model.clone(),
            r.device.clone(),
            r.sets.join(","),
            r.methods.join(","),
            state,
            r.images.to_string(),
        ]);
    }
    report::markdown_table(&table, 7)
}

/// `gradnorm-tui report ID [ID2]`.
pub fn report(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_existing(&store_dir(args.store.as_deref()))?;
    let a = store.resolve(&args.ids[0])?;
    let results = store.load(a)?;
    let summary = summary_of(&results, a, args.convention)?;
    if let Some(second) = args.ids.get(1) {
        if args.scores.is_some() || args.plots.is_some() {
            return Err(UsageError("--scores and --plots take one run".into()).into());
        }
        let b = store.resolve(second)?;
        let other = summary_of(&store.load(b)?, b, args.convention)?;
        // OOD sets pair by their files, whatever each run named them.
        let c = store::compare_files(&summary, &store.set_files(a)?, &other, &store.set_files(b)?);
        print!("{}", export::comparison(&c, a, b, args.format));
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", export::summary(&summary, args.format));
    if let Some(path) = &args.scores {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => gradnorm_core::run::write_scores_csv(path, &results)?,
            Some("parquet") => export::write_scores_parquet(path, &results)?,
            _ => return Err(UsageError("--scores: name a FILE.csv or FILE.parquet".into()).into()),
        }
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.plots {
        let files = store::plots::write_all(dir, &results)?;
        eprintln!("wrote {} plots into {}", files.len(), dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_of(
    results: &RunResults,
    id: i64,
    convention: gradnorm_core::metrics::Convention,
) -> anyhow::Result<gradnorm_core::run::Summary> {
    results.summary_in(convention).ok_or_else(|| {
        anyhow::anyhow!(
            "run {id} has no results (it failed before starting: {})",
            results.failed.as_deref().unwrap_or("no reason recorded")
        )
    })
}

/// `gradnorm-tui merge --into DIR SRC...`.
pub fn merge(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let ids = store::merge(&args.into, &args.sources)?;
    let store = Store::open_existing(&args.into)?;
    for id in ids {
        let results = store.load(id)?;
        let n: usize = results.records.iter().map(Vec::len).sum();
        println!("merged run {id} in {}: {n} images", store.path().display());
    }
    Ok(ExitCode::SUCCESS)
}
