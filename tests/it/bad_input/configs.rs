//! Config files: the old form still runs, bad values and duplicate names
//! are refused; the TUI without a terminal.

use super::*;

fn config(name: &str, body: &str) -> PathBuf {
    let f = fx();
    let text = format!(
        "batch = 4\nimage_size = 32\ndevice = \"cpu\"\nmethods = [{{ method = \"msp\" }}, {{ method = \"odin\", temperature = 1000.0, epsilon = 0.0 }}]\n{body}\n\
         [model]\ncheckpoint = \"{DEMO}\"\n\n[id]\nname = \"id\"\npath = \"{}\"\n\n[[ood]]\nname = \"ood\"\npath = \"{}\"\n",
        f.join("id.txt").display(),
        f.join("ood").display()
    );
    let p = f.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn config_written_by_the_old_form_still_runs() {
    // Strings for device and dtype, as before they were types.
    let cfg = config("old.toml", "dtype = \"fp32\"\nlimit = 2");
    let out = eval_config("old_config", &cfg);
    expect(&out, 0, "");
    let summary = written("old_config");
    assert_eq!(summary["dtype"], "f32");
    assert_eq!(evaluated(&summary, 0), 2);
}

/// Config edits eval must refuse (exit 2): the case (its file's name), the
/// line of a good config replaced and by what, what stderr says. The
/// message names the file, and the key where one was set.
#[test]
fn bad_config_values() {
    let good = std::fs::read_to_string(config("base.toml", "")).unwrap();
    #[rustfmt::skip] // one case a line
    let cases = [
        ("config_limit_zero", "batch = 4", "batch = 4\nlimit = 0", "the limit must be at least 1"),
        ("config_dtype_unknown", "batch = 4", "batch = 4\ndtype = \"int8\"", "expected f32, bf16 or f16"),
        ("config_workers_huge", "batch = 4", "batch = 4\nworkers = 100000", "between 1 and 1024"),
        ("config_negative_limit", "batch = 4", "batch = 4\nlimit = -3", "limit"),
        ("config_unknown_key_type", "batch = 4", "batch = 4\nlimit = \"many\"", "limit"),
        ("config_batch_zero", "batch = 4", "batch = 0", "between 1 and 4096"),
        ("config_device_unknown", "device = \"cpu\"", "device = \"gpu\"", "expected auto, cpu, cuda or cuda:N"),
        ("config_image_size", "image_size = 32", "image_size = 5", "between 32 and 2048"),
        ("config_epsilon_nan", "epsilon = 0.0", "epsilon = nan", "`epsilon`"),
        ("config_no_batch", "batch = 4", "", "missing field `batch`"),
    ];
    for (case, from, to, msg) in cases {
        println!("case {case}");
        let p = fx().join(format!("{case}.toml"));
        std::fs::write(&p, good.replace(from, to)).unwrap();
        let out = eval_config(case, &p);
        expect(&out, 2, msg);
        expect(&out, 2, &format!("{case}.toml"));
        if let Some(key) = to.lines().last() {
            expect(&out, 2, key.split(' ').next().unwrap());
        }
    }
}

#[test]
fn config_with_duplicate_set_names() {
    let cfg = config("dupe.toml", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let ood = &text[text.find("[[ood]]").unwrap()..];
    std::fs::write(&cfg, format!("{text}\n{ood}")).unwrap();
    let out = eval_config("config_dupe", &cfg);
    expect(&out, 2, "two datasets are named `ood`");
}

#[test]
fn tui_reports_a_bad_config_without_a_terminal_too() {
    let cfg = config("tui_bad.toml", "limit = 0");
    let out = bin().arg("--config").arg(&cfg).output().unwrap();
    expect(&out, 2, "the limit must be at least 1");
}

#[test]
fn tui_without_a_terminal() {
    let cfg = config("tui_good.toml", "");
    let out = bin().args(["tui", "--config"]).arg(&cfg).output().unwrap();
    expect(&out, 1, "the TUI needs a terminal");
}

/// The config's `store` key is where `eval --config` records (and its
/// `latest/` goes) unless `--store` says otherwise; an empty one is refused
/// naming the key, by eval and by the TUI.
#[test]
fn config_store_key() {
    let store = out_dir("config_store");
    let cfg = config(
        "stored.toml",
        &format!("store = \"{}\"\nlimit = 2", store.display()),
    );
    let out = bin().args(["eval", "--config"]).arg(&cfg).output().unwrap();
    expect(&out, 0, "");
    assert!(store.join("runs.sqlite").is_file());
    assert!(store.join("latest/summary.json").is_file());
    // --store wins over the key.
    let flag = out_dir("config_store_flag");
    let out = bin()
        .args(["eval", "--config"])
        .arg(&cfg)
        .arg("--store")
        .arg(&flag)
        .output()
        .unwrap();
    expect(&out, 0, "");
    assert!(flag.join("latest/summary.json").is_file());
    let empty = config("stored_empty.toml", "store = \"\"");
    let out = bin()
        .args(["eval", "--config"])
        .arg(&empty)
        .output()
        .unwrap();
    expect(
        &out,
        2,
        "stored_empty.toml: config file: store: an empty path",
    );
    let out = bin().arg("--config").arg(&empty).output().unwrap();
    expect(&out, 2, "store: an empty path");
}
