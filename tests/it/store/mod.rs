//! The run store end to end, with the tiny BiT fixture on ../shared images:
//! a killed `eval` resumes to the uninterrupted run's exact results, shards
//! run as separate processes merge to the unsharded run to the last digit,
//! damaged stores give clear errors, and every report format is checked.
//! Here: the test data, the commands run on a store, the blocking FIFO.

mod reports;
mod resume;

use crate::common;

use assert_cmd::Command;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

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
        let s = Setup { shared, tmp };
        for (i, p) in s.cifar().iter().take(OWN).enumerate() {
            std::fs::copy(p, own.join(format!("img{i:02}.png"))).unwrap();
        }
        Some(s)
    }

    /// The shared CIFAR-10 images, sorted: `own/` holds the first OWN.
    fn cifar(&self) -> Vec<PathBuf> {
        let mut cifar = walk(&self.shared.join("data/ood/cifar10"));
        cifar.sort();
        cifar
    }

    fn own(&self) -> PathBuf {
        self.tmp.path().join("own")
    }

    /// `new`, with the store `name` holding one run (see `evaluated`).
    pub fn with_run(name: &str) -> Option<(Setup, PathBuf)> {
        let s = Setup::new()?;
        let store = s.evaluated(name);
        Some((s, store))
    }

    /// The file that a FIFO replaces in the interrupted runs (the last one).
    fn last(&self) -> PathBuf {
        self.own().join(format!("img{:02}.png", OWN - 1))
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The store `name`, holding one run evaluated by `eval_ok`.
    pub fn evaluated(&self, name: &str) -> PathBuf {
        let store = self.dir(name);
        self.eval_ok(&store, &[]);
        store
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
        std::fs::copy(&self.cifar()[OWN - 1], self.last()).unwrap();
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

/// `gradnorm-tui COMMAND --store STORE ARGS...`, run to its end.
fn on_store<S: AsRef<OsStr>>(command: &str, store: &Path, args: &[S]) -> Output {
    bin()
        .args([command, "--store"])
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

/// `on_store`, which must succeed: its stdout.
fn on_store_ok<S: AsRef<OsStr>>(command: &str, store: &Path, args: &[S]) -> String {
    common::success_stdout(&on_store(command, store, args))
}

/// `report --format FORMAT` of `id` in `store`.
pub fn report(store: &Path, id: &str, format: &str) -> String {
    on_store_ok("report", store, &[id, "--format", format])
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
    on_store_ok(
        "report",
        store,
        &[OsStr::new(id), OsStr::new("--scores"), file.as_os_str()],
    );
    std::fs::read_to_string(&file).unwrap()
}

/// Images recorded so far in a store (read with the program's own `runs`).
fn recorded(store: &Path) -> usize {
    let out = on_store("runs", store, &["--json"]);
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
    let order = gradnorm_engine::engine::interleave(&[LIMIT, LIMIT, OWN]);
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
