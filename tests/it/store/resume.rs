//! A killed or interrupted `eval` resumes to the uninterrupted run's exact
//! results, a changed image is evaluated again, and shards run as separate
//! processes merge to the unsharded run to the last digit.

use super::{
    before_block, bin, essentials, on_store_ok, recorded, report, scores, start_blocked, Setup, OWN,
};
use crate::common;

use std::path::PathBuf;
use std::process::Stdio;

#[test]
fn killed_eval_resumes_to_the_uninterrupted_results() {
    let Some((s, full)) = Setup::with_run("full") else {
        return;
    };

    let killed = s.dir("killed");
    let mut child = start_blocked(&s, &killed);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The store opens and holds every batch committed before the kill.
    assert_eq!(recorded(&killed), before_block().iter().sum::<usize>());
    let runs = on_store_ok::<&str>("runs", &killed, &[]);
    assert!(runs.contains("running"), "{runs}");

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
    let Some((s, store)) = Setup::with_run("changed") else {
        return;
    };
    let before = scores(&store, "1");
    let total = recorded(&store);
    // Same path, other bytes: only that image is evaluated again.
    let changed = s.own().join("img00.png");
    std::fs::copy(&s.cifar()[OWN], &changed).unwrap();
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
    let Some((s, full)) = Setup::with_run("full") else {
        return;
    };
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
