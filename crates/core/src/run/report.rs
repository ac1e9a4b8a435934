//! The paper's table, as text: rows are methods, columns the OOD sets and
//! their average, cells FPR95 / AUROC in percent with two decimals.

use crate::run::Summary;

pub fn paper_table(summary: &Summary) -> String {
    // Every OOD set gets a column, also those without a figure yet (a
    // method whose scores are not finite has none).
    let oods: Vec<&str> = summary
        .datasets
        .iter()
        .filter(|d| d.role == crate::run::Role::Ood)
        .map(|d| d.name.as_str())
        .collect();
    let mut header = vec!["method".to_string()];
    header.extend(oods.iter().map(|s| s.to_string()));
    header.extend(summary.groups.iter().map(|g| group_column(&g.name)));
    header.push("average".into());
    let mut rows = vec![header];
    for m in &summary.methods {
        let mut row = vec![m.label.clone()];
        for name in &oods {
            let cell = m
                .ood
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, ms)| cell(ms.fpr95, ms.auroc))
                .unwrap_or_else(|| "-".into());
            row.push(cell);
        }
        for g in &summary.groups {
            row.push(
                m.groups
                    .iter()
                    .find(|(n, _)| *n == g.name)
                    .map(|(_, ms)| cell(ms.fpr95, ms.auroc))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        row.push(
            m.average
                .map(|a| cell(a.fpr95, a.auroc))
                .unwrap_or_else(|| "-".into()),
        );
        rows.push(row);
    }
    let mut out = String::new();
    out.push_str("FPR95 (lower is better) / AUROC (higher is better), in percent\n");
    out.push_str(&convention_line(summary.convention));
    for g in &summary.groups {
        out.push_str(&format!(
            "{}: the mean over {}\n",
            group_column(&g.name),
            g.sets.join(", ")
        ));
    }
    out.push_str(&markdown_table(&rows, 1));
    for w in &summary.warnings {
        out.push_str(&format!("WARNING: {w}\n"));
    }
    out
}

/// The column of a group's averages (OpenOOD's `nearood`, `farood` rows).
pub fn group_column(group: &str) -> String {
    format!("{group} avg")
}

/// Which convention a table's figures follow, in a line.
pub fn convention_line(convention: crate::metrics::Convention) -> String {
    format!("convention: {}\n", convention.describe())
}

fn cell(fpr95: f64, auroc: f64) -> String {
    format!("{:.2} / {:.2}", 100.0 * fpr95, 100.0 * auroc)
}

/// A few lines about the run: model, datasets with counts and skips, ID accuracy.
pub fn run_header(summary: &Summary) -> String {
    let mut out = format!(
        "model: {} ({} parameters) on {} ({}), {}x{}, batch {}\n",
        summary.model,
        summary.num_params,
        summary.setup.device,
        summary.setup.dtype,
        summary.setup.image_size,
        summary.setup.image_size,
        summary.batch
    );
    if let Some(fit) = &summary.setup.fit {
        out.push_str(&format!("fit: {}\n", fit.display()));
    }
    for d in &summary.datasets {
        let role = match d.role {
            crate::run::Role::Id => "ID ",
            crate::run::Role::Ood => "OOD",
        };
        out.push_str(&format!(
            "  {role} {:<14} {:>6} images evaluated",
            d.name, d.evaluated
        ));
        if !d.skipped.is_empty() {
            out.push_str(&format!(", {} skipped (unreadable)", d.skipped.len()));
        }
        out.push('\n');
    }
    if let Some(acc) = summary.id_accuracy {
        out.push_str(&format!(
            "ID top-1 accuracy {:.2}% (top-5 {:.2}%) on {} labelled images\n",
            100.0 * acc.top1,
            100.0 * acc.top5,
            acc.images
        ));
    }
    out
}

/// Seconds as m:ss or h:mm:ss ("-" when unknown); the one duration format
/// of the TUI and the commands' progress lines.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let s = secs.round() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A Markdown table, the first `left` columns left-aligned, the others
/// right-aligned.
pub fn markdown_table(rows: &[Vec<String>], left: usize) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c < left {
                    format!("{s:<w$}", w = widths[c])
                } else {
                    format!("{s:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        }
    }
    out
}
