//! A stored run as text: the paper table in Markdown, LaTeX, CSV or JSON
//! (summary.json's shape), two runs' metric deltas, and the per-image
//! scores as Parquet.

use super::parquet::{self, Column, Values};
use super::Comparison;
use crate::error::Result;
use gradnorm_core::run::{report, RunResults, Summary};
use std::path::Path;

/// The per-image scores as Parquet: the columns and rows of `scores.csv`
/// (labels and top-1 as INT64, a missing label null; probabilities and
/// scores as FLOAT, the f32 the engine computed).
pub fn write_scores_parquet(path: &Path, results: &RunResults) -> Result<()> {
    let Some(info) = &results.info else {
        return Ok(());
    };
    let header = gradnorm_core::run::scores_header(info);
    let named = || {
        results.records.iter().enumerate().flat_map(|(d, records)| {
            let name = &info.datasets[d].name;
            records.iter().map(move |r| (name, r))
        })
    };
    let records = || named().map(|(_, r)| r);
    let mut columns = vec![
        Values::Utf8(named().map(|(name, _)| name.clone()).collect()),
        Values::Utf8(
            records()
                .map(|r| r.path.to_string_lossy().into_owned())
                .collect(),
        ),
        Values::Int64(records().map(|r| r.label.map(|l| l as i64)).collect()),
        Values::Int64(
            records()
                .map(|r| Some(r.top.first().map_or(0, |t| t.0) as i64))
                .collect(),
        ),
        Values::Float(
            records()
                .map(|r| r.top.first().map_or(f32::NAN, |t| t.1))
                .collect(),
        ),
    ];
    for m in 0..info.methods.len() {
        columns.push(Values::Float(records().map(|r| r.scores[m]).collect()));
    }
    let columns: Vec<Column> = header
        .into_iter()
        .zip(columns)
        .map(|(name, values)| Column { name, values })
        .collect();
    parquet::write(path, &columns)
}

/// The formats `report --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Md,
    Latex,
    Csv,
    Json,
}

/// One run in `format`.
pub fn summary(summary: &Summary, format: Format) -> String {
    match format {
        Format::Md => format!(
            "{}\n{}",
            report::run_header(summary),
            report::paper_table(summary)
        ),
        Format::Latex => latex(summary),
        Format::Csv => csv(summary),
        Format::Json => serde_json::to_string_pretty(&summary.to_json()).unwrap_or_default() + "\n",
    }
}

/// OOD set names in run order (from the first method that has any).
fn sets(summary: &Summary) -> Vec<String> {
    summary
        .methods
        .iter()
        .find(|m| !m.ood.is_empty())
        .map(|m| m.ood.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default()
}

/// A `tabular` in the paper's layout: per OOD set and the average, FPR95
/// and AUROC columns; the best value of each column in bold.
fn latex(summary: &Summary) -> String {
    let mut sets = sets(summary);
    // Group averages, then the overall average, as the Markdown table.
    let groups: Vec<String> = summary
        .groups
        .iter()
        .map(|g| report::group_column(&g.name))
        .collect();
    sets.extend(groups.iter().cloned());
    sets.push("average".into());
    let cell = |m: &gradnorm_core::run::MethodSummary, set: &str| {
        if set == "average" {
            m.average
        } else if let Some(k) = groups.iter().position(|g| g == set) {
            let name = &summary.groups[k].name;
            m.groups.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms)
        } else {
            m.ood.iter().find(|(n, _)| n == set).map(|(_, ms)| *ms)
        }
    };
    let mut out = String::new();
    out.push_str("% FPR95 (lower is better) and AUROC (higher is better), in percent\n");
    out.push_str(&format!(
        "% {}",
        report::convention_line(summary.convention)
    ));
    out.push_str(&format!(
        "\\begin{{tabular}}{{l{}}}\n\\toprule\n",
        "rr".repeat(sets.len())
    ));
    out.push_str("Method");
    for s in &sets {
        out.push_str(&format!(
            " & \\multicolumn{{2}}{{c}}{{{}}}",
            latex_escape(s)
        ));
    }
    out.push_str(" \\\\\n");
    for _ in &sets {
        out.push_str(" & FPR95 & AUROC");
    }
    out.push_str(" \\\\\n\\midrule\n");
    for m in &summary.methods {
        out.push_str(&latex_escape(&m.label));
        for s in &sets {
            match cell(m, s) {
                Some(ms) => {
                    let best_fpr = summary
                        .methods
                        .iter()
                        .filter_map(|o| cell(o, s))
                        .all(|o| o.fpr95 >= ms.fpr95);
                    let best_auroc = summary
                        .methods
                        .iter()
                        .filter_map(|o| cell(o, s))
                        .all(|o| o.auroc <= ms.auroc);
                    out.push_str(&format!(
                        " & {} & {}",
                        bold(format!("{:.2}", 100.0 * ms.fpr95), best_fpr),
                        bold(format!("{:.2}", 100.0 * ms.auroc), best_auroc)
                    ));
                }
                None => out.push_str(" & -- & --"),
            }
        }
        out.push_str(" \\\\\n");
    }
    out.push_str("\\bottomrule\n\\end{tabular}\n");
    out
}

fn bold(s: String, yes: bool) -> String {
    if yes {
        format!("\\textbf{{{s}}}")
    } else {
        s
    }
}

fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            _ => out.push(c),
        }
    }
    out
}

/// Long form, one row per method and set (and each group's average as
/// `GROUP avg`, and `average`): fractions with every digit, for
/// spreadsheets and scripts, in `summary.convention`.
fn csv(summary: &Summary) -> String {
    let mut out = String::from("method,set,fpr95,auroc,aupr_in,aupr_out\n");
    for m in &summary.methods {
        let groups: Vec<(String, gradnorm_core::metrics::Measures)> = m
            .groups
            .iter()
            .map(|(g, ms)| (report::group_column(g), *ms))
            .collect();
        let rows = m
            .ood
            .iter()
            .map(|(n, ms)| (n.as_str(), *ms))
            .chain(groups.iter().map(|(g, ms)| (g.as_str(), *ms)))
            .chain(m.average.map(|a| ("average", a)));
        for (set, ms) in rows {
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                csv_field(&m.key),
                csv_field(set),
                ms.fpr95,
                ms.auroc,
                ms.aupr_in,
                ms.aupr_out
            ));
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Two runs' deltas (`b - a`) in `format`; JSON lists every measure.
pub fn comparison(c: &Comparison, a: i64, b: i64, format: Format) -> String {
    match format {
        Format::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "a": a,
                "b": b,
                "deltas": c.deltas.iter().map(|d| serde_json::json!({
                    "method": d.method,
                    "set": d.set,
                    "a": d.a,
                    "b": d.b,
                    "delta": d.diff(),
                })).collect::<Vec<_>>(),
                "only_a": c.only_a,
                "only_b": c.only_b,
            }))
            .unwrap_or_default()
                + "\n"
        }
        Format::Csv => {
            let mut out = String::from(
                "method,set,fpr95_a,fpr95_b,fpr95_delta,auroc_a,auroc_b,auroc_delta\n",
            );
            for d in &c.deltas {
                let x = d.diff();
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{}\n",
                    csv_field(&d.method),
                    csv_field(&d.set),
                    d.a.fpr95,
                    d.b.fpr95,
                    x.fpr95,
                    d.a.auroc,
                    d.b.auroc,
                    x.auroc
                ));
            }
            out
        }
        Format::Md | Format::Latex => {
            let mut rows = vec![vec![
                "method".to_string(),
                "set".into(),
                format!("FPR95 #{a}"),
                format!("FPR95 #{b}"),
                "delta".into(),
                format!("AUROC #{a}"),
                format!("AUROC #{b}"),
                "delta".into(),
            ]];
            for d in &c.deltas {
                let x = d.diff();
                rows.push(vec![
                    d.label.clone(),
                    d.set.clone(),
                    format!("{:.2}", 100.0 * d.a.fpr95),
                    format!("{:.2}", 100.0 * d.b.fpr95),
                    format!("{:+.2}", 100.0 * x.fpr95),
                    format!("{:.2}", 100.0 * d.a.auroc),
                    format!("{:.2}", 100.0 * d.b.auroc),
                    format!("{:+.2}", 100.0 * x.auroc),
                ]);
            }
            let mut out = format!(
                "run #{b} against run #{a}, in percent (delta = #{b} - #{a}; lower FPR95 and higher AUROC are better)\n"
            );
            out.push_str(&report::markdown_table(&rows, 2));
            for (which, list) in [(a, &c.only_a), (b, &c.only_b)] {
                if !list.is_empty() {
                    out.push_str(&format!("only in run #{which}: {}\n", list.join(", ")));
                }
            }
            out
        }
    }
}
