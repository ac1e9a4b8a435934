//! The Slurm job-array script on a real one-node Slurm started here
//! (munged, slurmctld, slurmd from Debian's packages; .ci/run installs
//! them): 3 shard tasks and a merge job whose run equals the unsharded one.
//! Skips, saying why, where Slurm is not installed or does not start.

use crate::store::{essentials, report, scores, Setup};
use std::path::{Path, PathBuf};
use std::process::Command;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Stops the daemons this test started, whatever happens.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script("slurm-local.sh"))
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn slurm_job_array_merges_to_the_unsharded_run() {
    let missing: Vec<&str> = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch"]
        .into_iter()
        .filter(|b| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: Slurm is not installed here (missing {}; apt-get install slurm-wlm munge)",
            missing.join(", ")
        );
        return;
    }
    let Some(s) = Setup::new() else {
        return;
    };
    let dir = s.dir("slurm");
    // A port of this run's own, so two checkouts testing at once do not meet.
    let port = 20000 + (std::process::id() % 20000) * 2;
    let start = Command::new(script("slurm-local.sh"))
        .arg("start")
        .arg(&dir)
        .arg(port.to_string())
        .output()
        .unwrap();
    let cluster = Cluster(dir.clone());
    if !start.status.success() {
        eprintln!(
            "SKIPPED: the local Slurm did not start: {}",
            String::from_utf8_lossy(&start.stderr)
        );
        return;
    }
    let conf = dir.join("slurm.conf");

    let full = s.dir("full");
    s.eval_ok(&full, &[]);
    let merged = s.dir("merged");
    let out = Command::new(script("slurm-eval.sh"))
        .args(["-n", "3", "-w", "-s"])
        .arg(&merged)
        .arg("-b")
        .arg(assert_cmd::cargo::cargo_bin("gradnorm-tui"))
        .arg("--")
        .args(s.eval_args())
        .env("SLURM_CONF", &conf)
        .env("GRADNORM_LOG", s.dir("slurm-log.txt"))
        .output()
        .unwrap();
    let logs = || {
        std::fs::read_dir(&merged)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".out"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    assert!(
        out.status.success(),
        "slurm-eval.sh: {}\n{}\njob output:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let m = essentials(&report(&merged, "latest", "json"));
    assert_eq!(
        m,
        essentials(&report(&full, "latest", "json")),
        "{}",
        logs()
    );
    assert_eq!(scores(&merged, "latest"), scores(&full, "latest"));
    for i in 0..3 {
        assert!(merged.join(format!("shard-{i}/runs.sqlite")).is_file());
    }
    drop(cluster);
}
