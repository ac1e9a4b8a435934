//! The run store end to end, with the tiny BiT fixture on ../shared images:
//! a killed `eval` resumes to the uninterrupted run's exact results, shards
//! run as separate processes merge to the unsharded run to the last digit,
//! damaged stores give clear errors, and every report format is checked.

use crate::common;

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn bin() -> Command {
    Command::cargo_bin("gradnorm-tui").unwrap()
}

/// Images per set; the last OOD set is a folder of this test's own (so a
/// file in it can be swapped for a FIFO that blocks the run).
const LIMIT: usize = 16;
/// Images in `own/` (under LIMIT, so all of them run).
const OWN: usize = 9;
const BATCH: usize = 3;
const METHODS: &str = "msp,energy,gradnorm,maxlogit";

/// A test's data: the shared ImageNet sample (ID, labelled) and textures,
/// plus `own/` with 9 CIFAR-10 images copied from ../shared.
pub struct Setup {
    shared: PathBuf,
    tmp: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Option<Setup> {
        let shared = common::shared()?;
        let tmp = tempfile::tempdir().unwrap();
        let own = tmp.path().join("own");
        std::fs::create_dir_all(&own).unwrap();
        let mut cifar: Vec<PathBuf> = walk(&shared.join("data/ood/cifar10"));
        cifar.sort();
        for (i, p) in cifar.iter().take(OWN).enumerate() {
            std::fs::copy(p, own.join(format!("img{i:02}.png"))).unwrap();
        }
        Some(Setup { shared, tmp })
    }

    fn own(&self) -> PathBuf {
        self.tmp.path().join("own")
    }

    /// The file that a FIFO replaces in the interrupted runs (the last one).
    fn last(&self) -> PathBuf {
        self.own().join(format!("img{:02}.png", OWN - 1))
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `eval` with the tiny fixture into `store`, plus `extra` flags.
    /// `eval`'s flags for the tiny fixture on this test's sets (no store).
    pub fn eval_args(&self) -> Vec<String> {
        let limit = LIMIT.to_string();
        let batch = BATCH.to_string();
        let mut args: Vec<String> = [
            "--device",
            "cpu",
            "--image-size",
            "64",
            "--batch",
            &batch,
            "--workers",
            "1",
            "--limit",
            &limit,
            "--methods",
            METHODS,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--checkpoint".into());
        args.push(
            self.shared
                .join("fixtures/bit/tiny.pth.tar")
                .display()
                .to_string(),
        );
        args.push("--id".into());
        args.push(
            self.shared
                .join("data/imagenet-sample/list.txt")
                .display()
                .to_string(),
        );
        args.push(format!(
            "--ood=textures={}",
            self.shared.join("data/ood/textures").display()
        ));
        args.push(format!("--ood=own={}", self.own().display()));
        args
    }

    /// `eval` with the tiny fixture into `store`, plus `extra` flags.
    fn eval(&self, store: &Path, extra: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("gradnorm-tui"));
        cmd.arg("eval")
            .args(self.eval_args())
            .arg("--store")
            .arg(store)
            .arg("--out")
            .arg(store.join("out"))
            .env("GRADNORM_LOG", self.tmp.path().join("log.txt"))
            .args(extra);
        cmd
    }

    pub fn eval_ok(&self, store: &Path, extra: &[&str]) -> String {
        self.eval_both(store, extra).0
    }

    /// `eval_ok`'s stdout and stderr.
    fn eval_both(&self, store: &Path, extra: &[&str]) -> (String, String) {
        let out = self.eval(store, extra).output().unwrap();
        common::assert_success(&out);
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// Replaces the last image of `own/` with a FIFO nobody writes to: a
    /// run blocks when it reaches it (see `before_block`).
    fn block(&self) {
        std::fs::remove_file(self.last()).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(self.last())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn unblock(&self) {
        std::fs::remove_file(self.last()).unwrap();
        let mut cifar: Vec<PathBuf> = walk(&self.shared.join("data/ood/cifar10"));
        cifar.sort();
        std::fs::copy(&cifar[OWN - 1], self.last()).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `report --format FORMAT` of `id` in `store`.
pub fn report(store: &Path, id: &str, format: &str) -> String {
    let out = bin()
        .args(["report", "--store"])
        .arg(store)
        .args([id, "--format", format])
        .output()
        .unwrap();
    common::assert_success(&out);
    String::from_utf8(out.stdout).unwrap()
}

/// The parts of summary.json a resumed or merged run must reproduce exactly.
pub fn essentials(json: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    serde_json::json!({
        "methods": v["methods"],
        "datasets": v["datasets"],
        "id_top1": v["id_top1"],
        "id_top5": v["id_top5"],
        "model": v["model"],
    })
}

/// Per-image rows of `report --scores`.
pub fn scores(store: &Path, id: &str) -> String {
    let file = store.join(format!("scores-{id}.csv"));
    let out = bin()
        .args(["report", "--store"])
        .arg(store)
        .arg(id)
        .arg("--scores")
        .arg(&file)
        .output()
        .unwrap();
    common::assert_success(&out);
    std::fs::read_to_string(&file).unwrap()
}

/// Images recorded so far in a store (read with the program's own `runs`).
fn recorded(store: &Path) -> usize {
    let out = bin()
        .args(["runs", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    if !out.status.success() {
        return 0;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .map(|runs| {
            runs.iter()
                .map(|r| r["images"].as_u64().unwrap_or(0))
                .sum::<u64>() as usize
        })
        .unwrap_or(0)
}

/// Per set, the images a run blocked on the FIFO has recorded: the engine
/// interleaves the sets in proportion to their sizes, and a batch arrives
/// only once all of it has loaded, so the FIFO's batch never does and every
/// batch before it does.
fn before_block() -> Vec<usize> {
    let order = gradnorm_tui::engine::interleave(&[LIMIT, LIMIT, OWN]);
    let fifo = order.iter().position(|&o| o == (2, OWN - 1)).unwrap();
    let loaded = &order[..fifo / BATCH * BATCH];
    (0..3)
        .map(|d| loaded.iter().filter(|o| o.0 == d).count())
        .collect()
}

/// Starts a run that blocks on the FIFO and waits until every batch before
/// it is committed.
fn start_blocked(s: &Setup, store: &Path) -> std::process::Child {
    s.block();
    let mut child = s
        .eval(store, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("eval ended before blocking: {status}");
        }
        if recorded(store) >= before_block().iter().sum::<usize>() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

#[test]
fn killed_eval_resumes_to_the_uninterrupted_results() {
    let Some(s) = Setup::new() else {
        return;
    };
    let full = s.dir("full");
    s.eval_ok(&full, &[]);

    let killed = s.dir("killed");
    let mut child = start_blocked(&s, &killed);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The store opens and holds every batch committed before the kill.
    assert_eq!(recorded(&killed), before_block().iter().sum::<usize>());
    let runs = bin()
        .args(["runs", "--store"])
        .arg(&killed)
        .output()
        .unwrap();
    common::assert_success(&runs);
    assert!(String::from_utf8_lossy(&runs.stdout).contains("running"));

    s.unblock();
    let (stdout, stderr) = s.eval_both(&killed, &[]);
    assert!(stdout.contains("recorded as run 1"), "{stdout}");
    // Every committed image is reused, the rest evaluated.
    let total = recorded(&full);
    let reused = before_block().iter().sum::<usize>();
    assert!(
        stderr.contains(&format!("{reused} of {total} images reused")),
        "{stderr}"
    );
    assert_eq!(
        essentials(&report(&killed, "latest", "json")),
        essentials(&report(&full, "latest", "json"))
    );
    assert_eq!(scores(&killed, "1"), scores(&full, "1"));
    // The resumed run's own summary.json equals the store's.
    let written = std::fs::read_to_string(killed.join("out/summary.json")).unwrap();
    assert_eq!(
        essentials(&written),
        essentials(&report(&killed, "1", "json"))
    );
}

#[test]
fn a_changed_image_is_evaluated_again() {
    let Some(s) = Setup::new() else {
        return;
    };
    let store = s.dir("changed");
    s.eval_ok(&store, &[]);
    let before = scores(&store, "1");
    let total = recorded(&store);
    // Same path, other bytes: only that image is evaluated again.
    let mut cifar: Vec<PathBuf> = walk(&s.shared.join("data/ood/cifar10"));
    cifar.sort();
    let changed = s.own().join("img00.png");
    std::fs::copy(&cifar[OWN], &changed).unwrap();
    let (_, stderr) = s.eval_both(&store, &[]);
    assert!(
        stderr.contains(&format!("{} of {total} images reused", total - 1)),
        "{stderr}"
    );
    let after = scores(&store, "1");
    let name = changed.display().to_string();
    let differ: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(differ.len(), 1, "{differ:?}");
    assert!(differ[0].1.contains(&name), "{differ:?}");
}

#[cfg(unix)]
#[test]
fn sigterm_keeps_every_finished_batch_and_prints_the_partial_table() {
    let Some(s) = Setup::new() else {
        return;
    };
    let store = s.dir("term");
    let mut child = start_blocked(&s, &store);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Once eval says it is stopping, the cancel flag is set: the batch that
    // the FIFO completes is then never taken.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("stopping after the current batch") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            break;
        }
        said.push_str(&line);
    }
    // The loader waits for its worker, which waits in open() for a writer
    // of the FIFO: give it one (end of file, a skipped image). On a thread,
    // as opening for writing waits for the reader in turn.
    let fifo = s.last();
    std::thread::spawn(move || drop(std::fs::OpenOptions::new().write(true).open(fifo)));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
    assert_eq!(out.status.code(), Some(143), "{stdout}\n{said}");
    assert!(said.contains("interrupted"), "{said}");
    // The partial table is printed.
    assert!(stdout.contains("| method"), "{stdout}");
    let want = before_block();
    assert_eq!(recorded(&store), want.iter().sum::<usize>());
    let json = report(&store, "latest", "json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["datasets"][0]["evaluated"], want[0]);
    assert_eq!(v["datasets"][1]["evaluated"], want[1]);
    assert!(v["methods"]["gradnorm"]["ood"]["textures"]["auroc"].is_number());
    // The run's own summary.json (what was computed) equals the store's.
    let written = std::fs::read_to_string(store.join("out/summary.json")).unwrap();
    assert_eq!(essentials(&written), essentials(&json));
}

#[test]
fn three_shards_merge_to_the_unsharded_run() {
    let Some(s) = Setup::new() else {
        return;
    };
    let full = s.dir("full");
    s.eval_ok(&full, &[]);
    let shards: Vec<PathBuf> = (0..3).map(|i| s.dir(&format!("shard{i}"))).collect();
    let children: Vec<_> = shards
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            s.eval(dir, &["--shard", &format!("{i}/3")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        common::assert_success(&c.wait_with_output().unwrap());
    }
    let merged = s.dir("merged");
    let out = bin()
        .args(["merge", "--into"])
        .arg(&merged)
        .args(&shards)
        .output()
        .unwrap();
    common::assert_success(&out);
    let m = essentials(&report(&merged, "latest", "json"));
    assert_eq!(m, essentials(&report(&full, "latest", "json")));
    assert_eq!(m["datasets"][2]["evaluated"], 9);
    assert_eq!(scores(&merged, "latest"), scores(&full, "latest"));
}

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
    let store = s.dir("parquet");
    s.eval_ok(&store, &[]);
    let csv = store.join("scores-1.csv");
    scores(&store, "1");
    let parquet = store.join("scores.parquet");
    let out = bin()
        .args(["report", "--store"])
        .arg(&store)
        .args(["1", "--scores"])
        .arg(&parquet)
        .output()
        .unwrap();
    common::assert_success(&out);
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
    let Some(s) = Setup::new() else {
        return;
    };
    let store = s.dir("store");
    s.eval_ok(&store, &[]);
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
    let out = bin()
        .args(["report", "--store"])
        .arg(&store)
        .args(["1", "2", "--format", "json"])
        .output()
        .unwrap();
    common::assert_success(&out);
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let out = bin()
        .args(["runs", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    common::assert_success(&out);
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.contains("finished") && list.contains("textures"),
        "{list}"
    );
    let out = bin()
        .args(["runs", "--store"])
        .arg(&store)
        .args(["rm", "1"])
        .output()
        .unwrap();
    common::assert_success(&out);
    let out = bin()
        .args(["report", "--store"])
        .arg(&store)
        .arg("1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 1"));
}

#[test]
fn plots_are_written_as_png_and_svg() {
    let Some(s) = Setup::new() else {
        return;
    };
    let store = s.dir("store");
    s.eval_ok(&store, &[]);
    let plots = s.dir("plots");
    let out = bin()
        .args(["report", "--store"])
        .arg(&store)
        .arg("latest")
        .arg("--plots")
        .arg(&plots)
        .output()
        .unwrap();
    common::assert_success(&out);
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
        }
    }
    let roc = std::fs::read_to_string(plots.join("roc-textures.svg")).unwrap();
    assert!(roc.contains("GradNorm (AUROC"), "{roc}");
}

#[test]
fn damaged_stores_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |dir: &Path, needle: &str| {
        let out = bin().args(["runs", "--store"]).arg(dir).output().unwrap();
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
    let Some(s) = Setup::new() else {
        return;
    };
    let store = s.dir("store");
    s.eval_ok(&store, &[]);
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
    let newer = s.dir("newer");
    s.eval_ok(&newer, &[]);
    let conn = rusqlite::Connection::open(newer.join("runs.sqlite")).unwrap();
    conn.execute(
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    drop(conn);
    check(&newer, "newer gradnorm-tui");
}
