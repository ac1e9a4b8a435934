//! End to end under tmux: the TUI on real data from ../shared/data with the
//! tiny BiT fixture. Drives the menus, runs an evaluation, reads the metrics
//! table off the screen and checks it against `gradnorm-tui eval --json` on
//! the same settings, filters the browser to misdetections, quits, and
//! checks the terminal is restored. Skips where tmux or ../shared is absent.
//! A second test opens the TUI with no arguments in a folder holding only
//! the demo checkpoint: the demo draws its images, runs, and its table
//! matches `eval --demo`.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gradnorm-tui");
/// The longest any step may take before the test gives up (a guard, not a
/// timing check: the whole run takes seconds).
const PATIENCE: Duration = Duration::from_secs(180);

/// One private tmux server (its own socket) with one session.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// `name` keeps the servers of tests running side by side apart.
    fn start(name: &str, dir: &Path, command: &str, width: u16, height: u16) -> Tmux {
        let t = Tmux {
            socket: format!("gradnorm-test-{name}-{}", std::process::id()),
        };
        let out = t.run(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-c",
            &dir.display().to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("running tmux")
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self.run(&["send-keys", "-t", "main", k]);
            assert!(out.status.success());
            // One key at a time, as a person types: each is its own event.
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "main"]).stdout)
            .into_owned()
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "waited too long for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The four numbers of `method`'s row for the first OOD group of the
/// metrics table: FPR95, AUROC, AUPR-In, AUPR-Out as printed.
fn table_row(screen: &str, method: &str) -> Vec<String> {
    let table = screen
        .split_once("FPR95↓")
        .map(|(_, rest)| rest)
        .expect("the metrics table");
    let line = table
        .lines()
        .find(|l| {
            l.trim_matches(|c| c == '│' || c == ' ' || c == '▶')
                .split_whitespace()
                .next()
                == Some(method)
        })
        .unwrap_or_else(|| panic!("no row for {method} in\n{screen}"));
    line.trim_matches(|c| c == '│' || c == ' ')
        .trim_start_matches('▶')
        .split_whitespace()
        .skip(1)
        .take(4)
        .map(|v| v.trim_end_matches('*').to_string())
        .collect()
}

/// Each method's row of the on-screen table equals `summary`'s metrics for
/// the OOD set `set` (as `eval --json` writes them), to the digits shown.
fn assert_table_matches(
    screen: &str,
    summary: &serde_json::Value,
    set: &str,
    methods: &[(&str, &str)],
    source: &str,
) {
    for (key, label) in methods {
        let m = &summary["methods"][key]["ood"][set];
        let want: Vec<String> = ["fpr95", "auroc", "aupr_in", "aupr_out"]
            .iter()
            .map(|k| format!("{:.2}", 100.0 * m[k].as_f64().unwrap()))
            .collect();
        assert_eq!(
            table_row(screen, label),
            want,
            "{label} on screen vs {source}"
        );
    }
}

/// The paper's four methods: (summary key, table label).
const PAPER: [(&str, &str); 4] = [
    ("msp", "MSP"),
    ("odin", "ODIN"),
    ("energy", "Energy"),
    ("gradnorm", "GradNorm"),
];

/// `eval --json` in `work` on imagenet-val against textures with the
/// paper's four methods on the CPU, plus `args`.
fn eval_on_textures(
    work: &Path,
    data: &Path,
    checkpoint: &Path,
    args: &[&str],
) -> serde_json::Value {
    let out = Command::new(BIN)
        .current_dir(work)
        .args(["eval", "--no-store", "--json", "--device", "cpu"])
        .args(["--methods", "msp,odin,energy,gradnorm"])
        .args(args)
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg("--id")
        .arg(data.join("imagenet-val/val_list.txt"))
        .arg(format!(
            "--ood=textures={}",
            data.join("ood/textures").display()
        ))
        .arg("--out")
        .arg(work.join("runs/eval"))
        .output()
        .unwrap();
    common::success_json(&out)
}

/// ../shared, when tmux is installed too (else says why the test skips).
fn shared_under_tmux() -> Option<std::path::PathBuf> {
    if !Tmux::available() {
        eprintln!("SKIPPED: tmux is not installed");
        return None;
    }
    common::shared()
}

fn link(target: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, at).unwrap();
}

/// `work/dataset/` as a user would have it: links to the shared ImageNet
/// validation set and textures (`data` is ../shared/data; nothing copied).
fn link_datasets(data: &Path, work: &Path) {
    link(
        &data.join("imagenet-val"),
        &work.join("dataset/imagenet-val"),
    );
    link(&data.join("ood/textures"), &work.join("dataset/textures"));
}

/// The TUI started in `work` (halfblock images, its log in work/tui.log);
/// the shell then says its exit status and stays, for the screen to show.
fn start_tui(name: &str, work: &Path) -> Tmux {
    let command = format!(
        "env GRADNORM_TUI_IMAGES=halfblocks GRADNORM_LOG={} {BIN}; echo EXITED $?; sleep 600",
        work.join("tui.log").display()
    );
    Tmux::start(name, work, &command, 120, 40)
}

/// `start_tui` in a `work` set up by `link_datasets`, once its setup
/// screen has counted the ID set.
fn start_on_the_datasets(name: &str, work: &Path) -> Tmux {
    let tmux = start_tui(name, work);
    tmux.wait_for("the setup screen", |s| {
        s.contains("Setup") && s.contains("1,200 images")
    });
    tmux
}

#[test]
fn tui_end_to_end_under_tmux() {
    let Some(shared) = shared_under_tmux() else {
        return;
    };
    let data = shared.join("data");
    let tiny = shared.join("fixtures/bit/tiny.pth.tar");
    // A working directory as a user would have it: checkpoints/ and
    // dataset/ (links to the shared data, nothing copied).
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    link(&tiny, &work.join("checkpoints/tiny.pth.tar"));
    link_datasets(&data, work);
    let tmux = start_on_the_datasets("shared", work);

    // Menus: from the last row up: limit 24, image size 64, batch 8, CPU;
    // write the config, start.
    tmux.keys(&["G", "Up", "Up", "Enter"]);
    tmux.keys(&["2", "4", "Enter", "Up", "Enter", "6", "4", "Enter"]);
    tmux.keys(&["Up", "Enter", "C-u", "8", "Enter", "Up", "Up", "Right"]);
    tmux.wait_for("the limit and the image size", |s| {
        s.contains("24 images per dataset") && s.contains("64 x 64")
    });
    tmux.keys(&["w"]);
    tmux.wait_for("the config to be written", |s| {
        s.contains("wrote gradnorm-tui.toml")
    });
    tmux.keys(&["s"]);
    // Finished, and the analysis (a moment behind) covers every image.
    let screen = tmux.wait_for("the run to finish", |s| {
        s.contains("finished in") && s.contains("ID imagenet-val (24) vs ▒ OOD textures (24)")
    });
    assert!(screen.contains("24/24"), "{screen}");

    // The config file the menus wrote is the run's.
    let cfg = gradnorm_core::run::file::load(&work.join("gradnorm-tui.toml")).unwrap();
    assert_eq!(
        (
            cfg.limit.map(|l| l.get()),
            cfg.image_size.map(|s| s.get()),
            cfg.batch.get()
        ),
        (Some(24), Some(64), 8)
    );
    assert_eq!(cfg.device, gradnorm_core::run::Device::Cpu);

    // The same evaluation headless.
    let summary = eval_on_textures(
        work,
        &data,
        &tiny,
        &["--image-size", "64", "--batch", "8", "--limit", "24"],
    );
    assert_table_matches(&screen, &summary, "textures", &PAPER, "eval --json");

    // Browser: MSP's misdetections among the textures: FPR95 of 24 images.
    tmux.keys(&["4", "x", "d", "d"]);
    let s = tmux.wait_for("the filtered browser", |s| {
        s.contains("misdetections") && s.contains("· textures ·")
    });
    let fpr = summary["methods"]["msp"]["ood"]["textures"]["fpr95"]
        .as_f64()
        .unwrap();
    let want = (fpr * 24.0).round() as usize;
    let shown: usize = s
        .split("Images ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no image count in\n{s}"));
    assert_eq!(shown, want, "misdetected textures shown vs FPR95 x 24\n{s}");

    // q quits at once (no run going) and gives the terminal back.
    tmux.keys(&["q"]);
    let s = tmux.wait_for("the TUI to exit", |s| s.contains("EXITED"));
    assert!(s.contains("EXITED 0"), "{s}");
    assert!(!s.contains("Browser"), "the TUI is still on screen:\n{s}");
    let alt = tmux.run(&["display-message", "-p", "-t", "main", "#{alternate_on}"]);
    assert_eq!(String::from_utf8_lossy(&alt.stdout).trim(), "0");
}

/// The metrics of `eval --demo --json` run in `dir`, in the TUI's batches.
fn demo_summary(dir: &Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args([
            "eval",
            "--no-store",
            "--demo",
            "--json",
            "--device",
            "cpu",
            "--batch",
            "50",
        ])
        .arg("--out")
        .arg(dir.join("runs/demo"))
        .output()
        .unwrap();
    common::success_json(&out)
}

#[test]
fn tui_opens_and_runs_the_demo_under_tmux() {
    if !Tmux::available() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    // What the demo needs from a checkout: its committed checkpoint.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ckpt = here.join(gradnorm_engine::demo::CHECKPOINT);
    if !ckpt.is_file() {
        eprintln!("SKIPPED: {} is absent", ckpt.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let at = work.join(gradnorm_engine::demo::CHECKPOINT);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::copy(&ckpt, &at).unwrap();

    // No arguments, no config file: the demo, started at once.
    let tmux = start_tui("demo", work);
    let screen = tmux.wait_for("the demo run to finish", |s| {
        s.contains("finished in") && s.contains("ID shapes (500) vs ▒ OOD textures (300)")
    });
    assert!(
        work.join("dataset/demo/manifest.json").is_file(),
        "the demo drew no images"
    );

    let summary = demo_summary(work);
    assert_table_matches(
        &screen,
        &summary,
        "textures",
        &[
            ("msp", "MSP"),
            ("gradnorm", "GradNorm"),
            ("maxlogit", "MaxLogit"),
        ],
        "eval --demo --json",
    );

    tmux.keys(&["q"]);
    let s = tmux.wait_for("the TUI to exit", |s| s.contains("EXITED"));
    assert!(s.contains("EXITED 0"), "{s}");
    let alt = tmux.run(&["display-message", "-p", "-t", "main", "#{alternate_on}"]);
    assert_eq!(String::from_utf8_lossy(&alt.stdout).trim(), "0");
}

#[test]
fn the_first_key_is_honoured_without_an_image_setting() {
    if !Tmux::available() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    // An empty folder (the setup screen), and no GRADNORM_TUI_IMAGES: the
    // TUI picks its image protocol itself.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let command = format!(
        "env -u GRADNORM_TUI_IMAGES GRADNORM_LOG={} {BIN}; echo EXITED $?; sleep 600",
        work.join("tui.log").display()
    );
    let tmux = Tmux::start("firstkey", work, &command, 120, 40);
    // At once, before the first frame: the key waits in the terminal's
    // input and must reach the UI, not a graphics query.
    tmux.keys(&["2"]);
    let s = tmux.wait_for("the dashboard", |s| s.contains("No run yet"));
    assert!(s.contains("2 Dashboard"), "{s}");
    tmux.keys(&["q"]);
    let s = tmux.wait_for("the TUI to exit", |s| s.contains("EXITED"));
    assert!(s.contains("EXITED 0"), "{s}");
}

#[test]
fn efficientnet_run_from_the_setup_screen_alone() {
    let Some(shared) = shared_under_tmux() else {
        return;
    };
    let data = shared.join("data");
    let models = shared.join("models");
    // Only datasets in the folder: no checkpoint found, no config file.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    link_datasets(&data, work);
    let tmux = start_on_the_datasets("lite0", work);

    // Checkpoint: the list, a path typed and completed with Tab.
    tmux.keys(&["Enter"]);
    tmux.wait_for("the checkpoint list", |s| {
        s.contains("none (random weights)")
    });
    tmux.keys(&[&format!("{}/eff", models.display()), "Tab", "Tab"]);
    tmux.wait_for("the completed path", |s| {
        s.contains("efficientnet-lite0.safetensors")
    });
    tmux.keys(&["Enter"]);
    // Model: the list filtered by typing.
    tmux.keys(&["Down", "Enter", "lite0"]);
    tmux.wait_for("the filtered model list", |s| s.contains("1 of "));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the model chosen", |s| s.contains("‹ efficientnet-lite0 ›"));
    // The path as picked, normalised (no `..`) and cut in the middle so the
    // file name shows however deep the checkout sits.
    assert!(s.contains("efficientnet-lite0.safetensors ›"), "{s}");
    assert!(!s.contains("/../"), "{s}");
    // Limit 8 per set, device cpu from its list.
    tmux.keys(&["G", "Up", "Up", "Enter", "8", "Enter"]);
    tmux.keys(&["Up", "Up", "Up", "Up", "Enter", "cpu", "Enter"]);
    tmux.wait_for("the settings", |s| {
        s.contains("8 images per dataset") && s.contains("‹ cpu ›")
    });
    // The engine's checks (they read the checkpoint) say it would start.
    tmux.wait_for("the checks to pass", |s| s.contains("Ready to start"));
    tmux.keys(&["s"]);
    let screen = tmux.wait_for("the run to finish", |s| {
        s.contains("finished in") && s.contains("ID imagenet-val (8) vs ▒ OOD textures (8)")
    });
    assert!(
        !work.join("gradnorm-tui.toml").exists(),
        "no config file was written"
    );

    let summary = eval_on_textures(
        work,
        &data,
        &models.join("efficientnet-lite0/efficientnet-lite0.safetensors"),
        &[
            "--model",
            "efficientnet-lite0",
            "--batch",
            "64",
            "--limit",
            "8",
        ],
    );
    assert_table_matches(&screen, &summary, "textures", &PAPER, "eval --json");
    tmux.keys(&["q"]);
    let s = tmux.wait_for("the TUI to exit", |s| s.contains("EXITED"));
    assert!(s.contains("EXITED 0"), "{s}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_closed_terminal_ends_the_tui() {
    if !Tmux::available() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    // The shell writes its pid and becomes the TUI (exec), so the pid is
    // the TUI's.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let pid_file = work.join("pid");
    let command = format!(
        "echo $$ > {}; GRADNORM_LOG={} exec {BIN}",
        pid_file.display(),
        work.join("tui.log").display()
    );
    let tmux = Tmux::start("hangup", work, &command, 120, 40);
    tmux.wait_for("the setup screen", |s| s.contains("1 Setup"));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Closing the terminal (the window, the ssh session, tmux) hangs it up.
    drop(tmux);
    // Alive means a process that is not a zombie waiting to be reaped.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
    };
    let start = Instant::now();
    while alive() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let still = alive();
    if still {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(
        !still,
        "the TUI outlived its terminal by 20 s (it used to spin on it)"
    );
}

/// The store the TUI records into and lists: `--store DIR`, else the
/// config file's `store` key, else ./runs (never ./runs when one is given).
#[test]
fn the_tui_records_into_the_store_it_is_given() {
    if !Tmux::available() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checkpoints/demo/bit-demo.safetensors"
    );
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    for set in ["id", "ood"] {
        std::fs::create_dir_all(work.join(set)).unwrap();
        for i in 0..4u32 {
            image::RgbImage::from_fn(32, 32, |x, y| {
                let s = if set == "id" { 1 } else { 5 };
                image::Rgb([(x * s * 8) as u8, (y * 8 + i * 30) as u8, (i * 50) as u8])
            })
            .save(work.join(format!("{set}/{i}.png")))
            .unwrap();
        }
    }
    std::fs::write(
        work.join("gradnorm-tui.toml"),
        format!(
            "store = \"filestore\"\nbatch = 4\nimage_size = 32\ndevice = \"cpu\"\n\
             methods = [{{ method = \"msp\" }}]\n\
             [model]\ncheckpoint = \"{demo}\"\n[id]\nname = \"id\"\npath = \"id\"\n\
             [[ood]]\nname = \"ood\"\npath = \"ood\"\n"
        ),
    )
    .unwrap();
    for (case, flag, store) in [
        ("flag", "--store flagstore", "flagstore"),
        ("file", "", "filestore"),
    ] {
        let command = format!(
            "GRADNORM_LOG={} {BIN} {flag}; echo EXITED $?; sleep 600",
            work.join("tui.log").display()
        );
        let tmux = Tmux::start(&format!("store-{case}"), work, &command, 120, 40);
        tmux.wait_for("the config to load", |s| s.contains("s starts"));
        tmux.keys(&["s"]);
        tmux.wait_for("the run to finish", |s| s.contains("finished in"));
        assert!(work.join(store).join("runs.sqlite").is_file(), "{case}");
        assert!(!work.join("runs").exists(), "{case}: ./runs was used");
        // The Runs screen lists that store.
        tmux.keys(&["6"]);
        // (The tab bar says "Runs" and the dashboard "finished" at once:
        // wait for the store's own name.)
        tmux.wait_for(&format!("the Runs screen on {store}"), |s| {
            s.contains(store)
        });
        tmux.keys(&["q"]);
        tmux.wait_for("the TUI to exit", |s| s.contains("EXITED 0"));
    }
}

/// The keys that leave only `keep` ticked among the form's methods, from
/// the first method's row: each row in registry order, its parameters'
/// rows below it while it is ticked.
fn keys_to_keep(enabled: &[gradnorm_engine::score::Method], keep: &[&str]) -> Vec<&'static str> {
    let mut keys = Vec::new();
    for def in gradnorm_core::method::registry::METHODS {
        let on = enabled.iter().any(|m| m.key() == def.key);
        let want = keep.contains(&def.key);
        if on != want {
            keys.push("Space");
        }
        let rows = 1 + if want { def.params.len() } else { 0 };
        keys.extend(std::iter::repeat_n("Down", rows));
    }
    keys
}

#[test]
fn from_the_demo_to_efficientnet_with_a_fit_made_in_the_form() {
    let Some(shared) = shared_under_tmux() else {
        return;
    };
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo_ckpt = here.join(gradnorm_engine::demo::CHECKPOINT);
    if !demo_ckpt.is_file() {
        eprintln!("SKIPPED: {} is absent", demo_ckpt.display());
        return;
    }
    let data = shared.join("data");
    let lite0 = shared.join("models/efficientnet-lite0/efficientnet-lite0.safetensors");
    // A checkout's folder: the demo's checkpoint, EfficientNet-Lite0's
    // beside it, the shared ImageNet images and DTD textures (as `dtd`:
    // the demo has its own `textures`).
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let at = work.join(gradnorm_engine::demo::CHECKPOINT);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::copy(&demo_ckpt, &at).unwrap();
    link(
        &lite0,
        &work.join("checkpoints/efficientnet-lite0.safetensors"),
    );
    link(
        &data.join("imagenet-val"),
        &work.join("dataset/imagenet-val"),
    );
    link(&data.join("ood/textures"), &work.join("dataset/dtd"));

    // The demo opens and runs; then the form.
    let tmux = start_tui("fit", work);
    tmux.wait_for("the demo run to finish", |s| s.contains("finished in"));
    tmux.keys(&["1"]);
    tmux.wait_for("the demo's form, checked", |s| {
        s.contains("Ready to start") && s.contains("fit.safetensors")
    });

    // EfficientNet-Lite0's checkpoint from the list: class names and the
    // image size follow it, and the demo's fit, made for the demo model,
    // goes once the checks have loaded the new one.
    tmux.keys(&["g", "Enter", "lite0", "Enter"]);
    tmux.wait_for("the demo's fit dropped, saying why", |s| {
        s.contains("fit.safetensors cleared: it was made for BiT ResNetV2")
    });
    let s = tmux.wait_for("the new model's own settings", |s| {
        s.contains("efficientnet-lite0.safetensors ›")
            && s.contains("ImageNet's (or the ID set's folders)")
    });
    assert!(s.contains("fit           "), "{s}");

    // The ID set from its list; of the OOD sets only dtd.
    tmux.keys(&[
        "Down", "Down", "Down", "Down", "Down", "Enter", "imagenet", "Enter",
    ]);
    tmux.wait_for("imagenet-val as the ID set", |s| {
        s.contains("▶ ID set        ‹ imagenet-val")
    });
    // Below the ID set: its list root, then the other sets in the form's
    // order (the demo's shapes, textures, novel-shapes, near-shapes, dtd).
    tmux.keys(&[
        "Down", "Down", "Down", "Space", "Down", "Space", "Down", "Space",
    ]);
    tmux.keys(&["Down", "Space", "Down", "Down"]);
    let s = tmux.wait_for("dtd alone ticked", |s| s.contains("[x] dtd"));
    assert!(!s.contains("[x] novel-shapes"), "{s}");
    // The methods: msp, gradnorm and vim only.
    let demo = gradnorm_engine::demo::methods();
    tmux.keys(&keys_to_keep(&demo, &["msp", "gradnorm", "vim"]));
    // Limit 24 per set and the CPU, from the last rows up.
    tmux.keys(&["G", "Up", "Up", "Enter", "2", "4", "Enter"]);
    tmux.keys(&["Up", "Up", "Up", "Up", "Enter", "cpu", "Enter"]);
    let s = tmux.wait_for("the settings", |s| {
        s.contains("24 images per dataset") && s.contains("‹ cpu ›")
    });
    assert!(
        s.contains("224 x 224 (efficientnet-lite0's default)"),
        "{s}"
    );

    // The fit: made from the form, from the ImageNet set, then chosen.
    tmux.keys(&["g", "Down", "Down", "Down", "Down", "Enter"]);
    tmux.wait_for("the fit list", |s| {
        s.contains("make a fit from a labelled set")
    });
    tmux.keys(&["make", "Enter"]);
    tmux.wait_for("the set list", |s| s.contains("make a fit from ·"));
    tmux.keys(&["imagenet", "Enter"]);
    tmux.wait_for("the fit written", |s| s.contains("fit written"));
    let made = work.join("fits/efficientnet-lite0-imagenet-val.safetensors");
    assert!(made.is_file());
    let s = tmux.wait_for("the checks to pass with it", |s| {
        s.contains("Ready to start") && s.contains("for this model, 24 images")
    });
    assert!(s.contains("scores: MSP, GradNorm (T=1), ViM"), "{s}");
    tmux.keys(&["w"]);
    tmux.wait_for("the config written", |s| {
        s.contains("wrote gradnorm-tui.toml")
    });
    let cfg = gradnorm_core::run::file::load(&work.join("gradnorm-tui.toml")).unwrap();
    assert_eq!(
        cfg.fit.as_deref(),
        Some(Path::new(
            "fits/efficientnet-lite0-imagenet-val.safetensors"
        ))
    );
    assert_eq!((cfg.class_names.clone(), cfg.image_size), (None, None));
    // The demo's results are on screen: asked first.
    tmux.keys(&["s"]);
    tmux.wait_for("the question", |s| s.contains("Start a new run?"));
    tmux.keys(&["y"]);
    let screen = tmux.wait_for("the run to finish", |s| {
        s.contains("finished in") && s.contains("ID imagenet-val (24) vs ▒ OOD dtd (24)")
    });
    assert!(screen.contains("· fit efficien"), "{screen}");

    // Headless: `fit`, then `eval` with it, on the same settings.
    let batch = cfg.batch.get().to_string();
    let fit = work.join("headless-fit.safetensors");
    let out = Command::new(BIN)
        .current_dir(work)
        .args(["fit", "--device", "cpu", "--limit", "24", "--batch", &batch])
        .arg("--checkpoint")
        .arg(&lite0)
        .arg("--train")
        .arg(data.join("imagenet-val/val_list.txt"))
        .arg("--out")
        .arg(&fit)
        .output()
        .unwrap();
    common::assert_success(&out);
    let out = Command::new(BIN)
        .current_dir(work)
        .args(["eval", "--no-store", "--json", "--device", "cpu"])
        .args([
            "--methods",
            "msp,gradnorm,vim",
            "--limit",
            "24",
            "--batch",
            &batch,
        ])
        .arg("--checkpoint")
        .arg(&lite0)
        .arg("--fit")
        .arg(&fit)
        .arg("--id")
        .arg(data.join("imagenet-val/val_list.txt"))
        .arg(format!("--ood=dtd={}", data.join("ood/textures").display()))
        .arg("--out")
        .arg(work.join("runs/eval"))
        .output()
        .unwrap();
    let summary = common::success_json(&out);
    assert_table_matches(
        &screen,
        &summary,
        "dtd",
        &[("msp", "MSP"), ("gradnorm", "GradNorm"), ("vim", "ViM")],
        "fit + eval --json",
    );
    tmux.keys(&["q"]);
    let s = tmux.wait_for("the TUI to exit", |s| s.contains("EXITED"));
    assert!(s.contains("EXITED 0"), "{s}");
}
