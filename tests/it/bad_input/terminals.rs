//! Terminals, pipes and logs (a dumb terminal, none, a closed pipe, the
//! log's place) and signals: a run stops cleanly with 128 + the signal and
//! keeps what it computed.

use super::*;

#[test]
fn dumb_terminal_gets_plain_progress() {
    let mut args = eval_args("dumb");
    args.extend(ood("ood", "ood"));
    args.extend(size().map(String::from));
    let out = bin().env("TERM", "dumb").args(&args).output().unwrap();
    expect(&out, 0, "images in");
    assert!(
        !out.stderr.contains(&0x1b),
        "escape codes on a dumb terminal"
    );
    assert!(
        !out.stdout.contains(&0x1b),
        "escape codes on a dumb terminal"
    );
    written("dumb");
}

#[test]
fn no_terminal_at_all_for_the_tui() {
    let dir = fx().join("cwd-notty");
    std::fs::create_dir_all(&dir).unwrap();
    let out = bin().current_dir(&dir).output().unwrap();
    expect(&out, 1, "the TUI needs a terminal");
}

#[cfg(unix)]
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let mut args = eval_args("pipe");
    args.extend(ood("ood", "ood"));
    args.extend(size().map(String::from));
    args.push("--json".into());
    let bin_path = assert_cmd::cargo::cargo_bin("gradnorm-tui");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "'{}' {} | true; '{}' predict --device cpu --image-size 32 --checkpoint '{DEMO}' '{}' '{}' | head -c 1 >/dev/null",
        bin_path.display(),
        quoted.join(" "),
        bin_path.display(),
        fx().join("id/0.png").display(),
        fx().join("id/1.png").display(),
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("GRADNORM_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    // The results were written before anything was printed.
    written("pipe");
}

#[test]
fn headless_eval_logs_to_the_state_folder_not_the_working_one() {
    let home = fx().join("home");
    let cwd = fx().join("cwd-log");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut args = eval_args("log");
    args.extend(ood("ood", "ood"));
    args.extend(size().map(String::from));
    let out = Command::cargo_bin("gradnorm-tui")
        .unwrap()
        .current_dir(&cwd)
        .env_remove("GRADNORM_LOG")
        .env_remove("XDG_STATE_HOME")
        .env("HOME", &home)
        .args(&args)
        .output()
        .unwrap();
    expect(&out, 0, "images in");
    assert!(!cwd.join("gradnorm-tui.log").exists());
    let log = if cfg!(target_os = "macos") {
        home.join("Library/Logs/gradnorm-tui/gradnorm-tui.log")
    } else {
        home.join(".local/state/gradnorm-tui/gradnorm-tui.log")
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("run finished"), "{text}");
}

/// Starts eval on a long OOD list, waits for the first progress line,
/// sends `signals` (kill names) and returns the finished output.
#[cfg(unix)]
fn interrupted(case: &str, signals: &[&str]) -> (Option<i32>, String, String) {
    let mut args = eval_args(case);
    let i = args.iter().position(|a| a == "--batch").unwrap();
    args[i + 1] = "2".into();
    args.extend(ood("long", "long.txt"));
    args.extend(size().map(String::from));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("gradnorm-tui"))
        .args(&args)
        .env("GRADNORM_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut err = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        err.push_str(&line);
        if line.contains("img/s") {
            break;
        }
    }
    for sig in signals {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    stderr.read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    (status.code(), reader.join().unwrap(), err)
}

#[cfg(unix)]
#[track_caller]
fn check_interrupted(case: &str, signals: &[&str], code: i32, name: &str) {
    let (status, stdout, stderr) = interrupted(case, signals);
    assert_eq!(status, Some(code), "stderr:\n{stderr}");
    assert!(stderr.contains(name), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The partial table is printed and the partial results written.
    assert!(stdout.contains("| method"), "{stdout}");
    let summary = written(case);
    assert_eq!(summary["cancelled"], true);
    // The first progress line came after the first batch's records.
    // (Batches of the sets are interleaved: count over all of them.)
    assert!(evaluated(&summary, 0) + evaluated(&summary, 1) >= 2);
    assert!(evaluated(&summary, 1) < 20_000);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_cleanly_with_143() {
    check_interrupted("sigterm", &["TERM"], 143, "SIGTERM");
}

#[cfg(unix)]
#[test]
fn sigint_stops_cleanly_with_130() {
    check_interrupted("sigint", &["INT"], 130, "Ctrl-C");
}

#[cfg(unix)]
#[test]
fn sighup_stops_cleanly_with_129() {
    check_interrupted("sighup", &["HUP"], 129, "SIGHUP");
}

#[cfg(unix)]
#[test]
fn a_second_signal_still_keeps_what_was_computed() {
    check_interrupted("sigterm2", &["TERM", "TERM"], 143, "again");
}

#[cfg(unix)]
#[test]
fn ctrl_c_then_sigterm_keeps_the_first_status() {
    check_interrupted("sigint_term", &["INT", "TERM"], 130, "again");
}
