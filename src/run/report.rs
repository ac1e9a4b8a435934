//! The paper's table, as text: rows are methods, columns the OOD sets and
//! their average, cells FPR95 / AUROC in percent with two decimals.

use crate::run::Summary;

pub fn paper_table(summary: &Summary) -> String {
    let oods: Vec<&str> = summary
        .methods
        .first()
        .map(|m| m.ood.iter().map(|(n, _)| n.as_str()).collect())
        .unwrap_or_default();
    let mut header = vec!["method".to_string()];
    header.extend(oods.iter().map(|s| s.to_string()));
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
        row.push(
            m.average
                .map(|a| cell(a.fpr95, a.auroc))
                .unwrap_or_else(|| "-".into()),
        );
        rows.push(row);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    out.push_str("FPR95 (lower is better) / AUROC (higher is better), in percent\n");
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c == 0 {
                    format!("{s:<w$}", w = widths[c])
                } else {
                    format!("{s:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", line.join(" | ")));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        }
    }
    out
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
        summary.device,
        summary.dtype,
        summary.image_size,
        summary.image_size,
        summary.batch
    );
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
