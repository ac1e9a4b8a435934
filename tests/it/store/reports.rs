//! Every report format (JSON, Markdown, LaTeX, CSV, Parquet, plots), runs
//! compared and removed, and damaged stores' errors.

use super::{bin, essentials, on_store, on_store_ok, recorded, report, scores, Setup, LIMIT};
use crate::common;

use std::ffi::OsStr;
use std::path::Path;
/// Reads a Parquet file with pyarrow (an independent reader) and checks it
/// against a CSV of the same rows: same columns, types, strings, nulls and
/// values (the CSV's floats rounded to f32, as the engine computed them).
const PYARROW_CHECK: &str = r#"
import csv, struct, sys
import pyarrow as pa, pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
rows = list(csv.reader(open(sys.argv[2], newline="")))
header, rows = rows[0], rows[1:]
assert table.column_names == header, (table.column_names, header)
assert table.num_rows == len(rows), (table.num_rows, len(rows))
types = [str(f.type) for f in table.schema]
assert types[:5] == ["string", "string", "int64", "int64", "float"], types
assert all(t == "float" for t in types[5:]), types
f32 = lambda s: struct.unpack("f", struct.pack("f", float(s)))[0]
cols = [table.column(i).to_pylist() for i in range(len(header))]
nulls = 0
for r, row in enumerate(rows):
    got = [c[r] for c in cols]
    assert got[0] == row[0] and got[1] == row[1], (got, row)
    if row[2] == "":
        assert got[2] is None, (got, row)
        nulls += 1
    else:
        assert got[2] == int(row[2]), (got, row)
    assert got[3] == int(row[3]), (got, row)
    for g, w in zip(got[4:], row[4:]):
        assert g == f32(w), (g, w, row)
print(f"{table.num_rows} rows, {len(header)} columns, {nulls} null labels")
"#;

#[test]
fn scores_parquet_reads_back_in_pyarrow() {
    let Some(s) = Setup::new() else {
        return;
    };
    let have = std::process::Command::new("python3")
        .args(["-c", "import pyarrow"])
        .output();
    if !have.is_ok_and(|o| o.status.success()) {
        println!("SKIPPED: python3 with pyarrow is not available (pip install pyarrow)");
        return;
    }
    let store = s.evaluated("parquet");
    let csv = store.join("scores-1.csv");
    scores(&store, "1");
    let parquet = store.join("scores.parquet");
    on_store_ok(
        "report",
        &store,
        &[OsStr::new("1"), "--scores".as_ref(), parquet.as_ref()],
    );
    let out = std::process::Command::new("python3")
        .args(["-c", PYARROW_CHECK])
        .arg(&parquet)
        .arg(&csv)
        .output()
        .unwrap();
    common::assert_success(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    let total = recorded(&store);
    // The OOD sets' labels are null.
    let nulls = total - LIMIT;
    assert!(
        said.contains(&format!("{total} rows, 9 columns, {nulls} null labels")),
        "{said}"
    );
}

#[test]
fn report_formats_and_compare() {
    let Some((s, store)) = Setup::with_run("store") else {
        return;
    };
    // A second run: GradNorm at another temperature.
    s.eval_ok(&store, &["--temperature-gradnorm", "2"]);
    let summary = std::fs::read_to_string(store.join("out/summary.json")).unwrap();

    let json = report(&store, "2", "json");
    assert_eq!(essentials(&json), essentials(&summary));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for m in ["msp", "energy", "gradnorm", "maxlogit"] {
        for set in ["textures", "own"] {
            for k in ["auroc", "fpr95", "aupr_in", "aupr_out"] {
                assert!(v["methods"][m]["ood"][set][k].is_number(), "{m} {set} {k}");
            }
        }
    }

    let md = report(&store, "2", "md");
    for needle in ["| method", "| GradNorm", "textures", "own", "average"] {
        assert!(md.contains(needle), "md lacks {needle}:\n{md}");
    }
    let fpr = v["methods"]["gradnorm"]["ood"]["textures"]["fpr95"]
        .as_f64()
        .unwrap();
    let auroc = v["methods"]["gradnorm"]["ood"]["textures"]["auroc"]
        .as_f64()
        .unwrap();
    let cell = format!("{:.2} / {:.2}", 100.0 * fpr, 100.0 * auroc);
    assert!(md.contains(&cell), "md lacks {cell}:\n{md}");

    let tex = report(&store, "2", "latex");
    assert!(tex.contains("\\begin{tabular}{lrrrrrr}"), "{tex}");
    assert!(tex.contains(&format!("{:.2}", 100.0 * auroc)), "{tex}");
    assert_eq!(tex.matches("\\\\\n").count(), 2 + 4, "{tex}");

    let csv = report(&store, "2", "csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "method,set,fpr95,auroc,aupr_in,aupr_out");
    assert_eq!(lines.len(), 1 + 4 * 3);
    let row = lines
        .iter()
        .find(|l| l.starts_with("gradnorm,textures,"))
        .unwrap();
    let vals: Vec<f64> = row.split(',').skip(2).map(|x| x.parse().unwrap()).collect();
    assert_eq!(vals[0], fpr);
    assert_eq!(vals[1], auroc);

    // Compare: only GradNorm's parameters differ, so only its rows change.
    let out = on_store_ok("report", &store, &["1", "2", "--format", "json"]);
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    let deltas = c["deltas"].as_array().unwrap();
    assert_eq!(deltas.len(), 4 * 3);
    for d in deltas {
        let delta = d["delta"]["auroc"].as_f64().unwrap();
        let want = d["b"]["auroc"].as_f64().unwrap() - d["a"]["auroc"].as_f64().unwrap();
        assert_eq!(delta, want);
        if d["method"] != "gradnorm" {
            assert_eq!(delta, 0.0, "{d}");
        }
    }
    // The runs list and rm.
    let list = on_store_ok::<&str>("runs", &store, &[]);
    assert!(
        list.contains("finished") && list.contains("textures"),
        "{list}"
    );
    // `--store` before the command is the command's store too.
    let before = bin()
        .arg("--store")
        .arg(&store)
        .arg("runs")
        .output()
        .unwrap();
    assert_eq!(common::success_stdout(&before), list);
    let elsewhere = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(elsewhere.path())
        .arg("--store")
        .arg(&store)
        .args(["report", "1", "--format", "csv"])
        .output()
        .unwrap();
    assert!(common::success_stdout(&out).contains("gradnorm"));
    on_store_ok("runs", &store, &["rm", "1"]);
    let out = on_store("report", &store, &["1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 1"));
}

#[test]
fn plots_are_written_as_png_and_svg() {
    let Some((s, store)) = Setup::with_run("store") else {
        return;
    };
    let plots = s.dir("plots");
    on_store_ok(
        "report",
        &store,
        &[OsStr::new("latest"), "--plots".as_ref(), plots.as_ref()],
    );
    let mut names: Vec<String> = std::fs::read_dir(&plots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want = Vec::new();
    for n in [
        "anatomy",
        "hist-energy",
        "hist-gradnorm",
        "hist-maxlogit",
        "hist-msp",
        "roc-own",
        "roc-textures",
    ] {
        want.push(format!("{n}.png"));
        want.push(format!("{n}.svg"));
    }
    assert_eq!(names, want);
    for n in &want {
        let path = plots.join(n);
        if n.ends_with(".png") {
            let img = image::open(&path).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (960, 600));
            // Text and curves: many pixels that are neither white nor one colour.
            let dark = img
                .pixels()
                .filter(|p| p.0.iter().all(|&c| c < 100))
                .count();
            assert!(dark > 2000, "{n}: only {dark} dark pixels");
        } else {
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(svg.contains("<text"), "{n} has no text");
            // Axis ticks as people write them: no "100000.0" or "0.30000".
            let ticks: Vec<&str> = svg
                .split("<text")
                .skip(1)
                .filter_map(|t| t.split_once('>')?.1.split_once("</text>"))
                .map(|(text, _)| text.trim())
                .filter(|t| t.parse::<f64>().is_ok())
                .collect();
            assert!(ticks.len() >= 4, "{n}: ticks {ticks:?}");
            for t in &ticks {
                let mantissa = t.split('e').next().unwrap();
                assert!(
                    !(mantissa.contains('.') && mantissa.ends_with('0')) && t.len() <= 8,
                    "{n}: tick `{t}` in {ticks:?}"
                );
            }
        }
    }
    let roc = std::fs::read_to_string(plots.join("roc-textures.svg")).unwrap();
    assert!(roc.contains("GradNorm (AUROC"), "{roc}");
}

#[test]
fn damaged_stores_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |dir: &Path, needle: &str| {
        let out = on_store::<&str>("runs", dir, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let file = dir.join("runs.sqlite");
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    // Not a database at all.
    let garbage = tmp.path().join("garbage");
    std::fs::create_dir_all(&garbage).unwrap();
    std::fs::write(garbage.join("runs.sqlite"), vec![0x5au8; 8192]).unwrap();
    check(&garbage, "not a readable run store");
    // Missing.
    check(&tmp.path().join("none"), "no run store here");

    // A real store, truncated after its header page.
    let Some((s, store)) = Setup::with_run("store") else {
        return;
    };
    let file = store.join("runs.sqlite");
    // Fold the WAL into the main file first, so the truncation cuts data.
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(conn);
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len > 16384, "{len}");
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(4096 + 100).unwrap();
    drop(f);
    check(&store, "corrupt or truncated");

    // A store from a newer version.
    let newer = s.evaluated("newer");
    let conn = rusqlite::Connection::open(newer.join("runs.sqlite")).unwrap();
    conn.execute(
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    drop(conn);
    check(&newer, "newer gradnorm-tui");
}

/// Sets pair by their files, not their names: the same two sets named the
/// other way round (own as `textures`, textures as `own`) compare with
/// themselves, so every delta is zero (the images' scores are the same),
/// where pairing by name would compare textures with own.
#[test]
fn sets_compare_by_their_files_not_their_names() {
    let Some((s, store)) = Setup::with_run("store") else {
        return;
    };
    let swapped: Vec<String> = s
        .eval_args()
        .into_iter()
        .map(|a| {
            if let Some(p) = a.strip_prefix("--ood=textures=") {
                format!("--ood=own={p}")
            } else if let Some(p) = a.strip_prefix("--ood=own=") {
                format!("--ood=textures={p}")
            } else {
                a
            }
        })
        .collect();
    let out = super::bin()
        .arg("eval")
        .args(&swapped)
        .arg("--store")
        .arg(&store)
        .arg("--out")
        .arg(store.join("out2"))
        .output()
        .unwrap();
    common::assert_success(&out);
    let out = on_store_ok("report", &store, &["1", "2", "--format", "json"]);
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    let deltas = c["deltas"].as_array().unwrap();
    assert_eq!(deltas.len(), 4 * 3, "{c}");
    let sets: std::collections::BTreeSet<&str> =
        deltas.iter().map(|d| d["set"].as_str().unwrap()).collect();
    assert_eq!(
        sets.into_iter().collect::<Vec<_>>(),
        ["average", "own = textures", "textures = own"],
        "{c}"
    );
    for d in deltas {
        for k in ["auroc", "fpr95", "aupr_in", "aupr_out"] {
            assert_eq!(d["delta"][k].as_f64().unwrap(), 0.0, "{d}");
        }
    }
    assert!(c["only_a"].as_array().unwrap().is_empty(), "{c}");
    assert!(c["only_b"].as_array().unwrap().is_empty(), "{c}");
    let md = on_store_ok("report", &store, &["1", "2"]);
    assert!(md.contains("textures = own"), "{md}");
}

/// `latest` is per store: `eval --store X` without `--out` writes
/// X/latest, and leaves ./runs alone.
#[test]
fn latest_is_inside_the_store_used() {
    let Some(s) = Setup::new() else {
        return;
    };
    let cwd = s.dir("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = super::bin()
        .current_dir(&cwd)
        .arg("eval")
        .args(s.eval_args())
        .args(["--store", "elsewhere"])
        .output()
        .unwrap();
    common::assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        cwd.join("elsewhere/latest/summary.json").is_file(),
        "{stdout}"
    );
    assert!(cwd.join("elsewhere/runs.sqlite").is_file());
    assert!(!cwd.join("runs").exists(), "{stdout}");
    assert!(stdout.contains("elsewhere/latest/summary.json"), "{stdout}");
}
