//! Datasets and images: bad files skipped and counted, odd folders and
//! list files, labels the model cannot have.

use super::*;

fn with_id(case: &str, id: &Path, extra: &[&str]) -> Output {
    with_path(case, "--id", id, extra)
}

/// Checkpoints, ID sets (exit 1) and config files (exit 2) that eval must
/// refuse: the case, the fixture the flag points at, what stderr says.
#[test]
fn bad_files() {
    #[rustfmt::skip] // one case a line
    let checkpoints = [
        ("ckpt_empty", "empty.bin", "not a checkpoint"),
        ("ckpt_random", "random.bin", "not a checkpoint"),
        ("ckpt_truncated", "truncated.safetensors", "truncated.safetensors: not a checkpoint"),
        ("ckpt_text", "file.txt", "not a checkpoint"),
        ("ckpt_folder", "id", "is a directory"),
        ("ckpt_inf", "inf.safetensors", "NaN or infinite value"),
    ];
    #[rustfmt::skip]
    let id_sets = [
        ("id_missing", "nope", "nope: No such file or directory"),
        ("id_empty", "empty", "no images found"),
        ("png_as_list", "id/0.png", "read as a list file"),
    ];
    #[rustfmt::skip]
    let configs = [
        ("config_not_toml", "id.txt", "config file"),
        ("config_not_text", "id/0.png", "must be UTF-8 TOML text"),
        ("config_missing", "nope.toml", "nope.toml: No such file or directory"),
    ];
    let groups = [
        ("--checkpoint", 1, &checkpoints[..]),
        ("--id", 1, &id_sets[..]),
        ("--config", 2, &configs[..]),
    ];
    for (flag, code, cases) in groups {
        for (case, file, msg) in cases {
            println!("case {case}");
            let path = fx().join(file);
            let out = match flag {
                "--config" => eval_config(case, &path),
                _ => with_path(case, flag, &path, &[]),
            };
            expect(&out, code, msg);
        }
    }
}

#[test]
fn id_images_beside_class_folders() {
    let out = with_id("id_mixed", &fx().join("mixed"), &[]);
    expect(&out, 1, "not both");
    expect(&out, 1, "1 image(s) at its top level");
}

/// OOD folders of odd content: the case, the folder, the exit status and
/// message, and how many images of which set count as evaluated. An empty
/// folder named like an image is no image; 16-bit grey (its high
/// byte kept), 1 x 1 and a non-UTF-8 name are evaluated, not dropped; a set where
/// nothing decodes is an error, but what was computed is kept.
#[test]
fn odd_ood_folders() {
    let weird = if cfg!(unix) { 3 } else { 2 };
    #[rustfmt::skip] // one case a line
    let cases = [
        ("loose", "loose", 0, "loose", 1, 2),
        ("weird", "weird", 0, "weird", 1, weird),
        ("all_bad", "bad", 1, "nothing evaluated in `bad`", 0, 6),
    ];
    for (case, dir, code, msg, set, count) in cases {
        println!("case {case}");
        let out = eval(case, &["--ood", &ood(dir, dir)[1]]);
        let summary = finished(case, &out, code, msg);
        assert_eq!(evaluated(&summary, set), count);
        if case == "weird" {
            assert_eq!(summary["datasets"][1]["skipped_count"], 0);
        }
    }
}

#[test]
fn undecodable_files_are_skipped_and_counted_each_with_why() {
    let f = fx();
    let list = f.join("mixed-ood.txt");
    std::fs::write(
        &list,
        "ood/0.png\nood/1.png\nbad/empty.png\nbad/text.jpg\nbad/truncated.jpg\nbad/corrupt.jpg\nbad/huge.png\n",
    )
    .unwrap();
    let out = eval("some_bad", &["--ood", &format!("some={}", list.display())]);
    let summary = finished("some_bad", &out, 0, "skipped");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated.jpg: truncated JPEG"), "{stderr}");
    assert!(stderr.contains("corrupt.jpg: corrupt JPEG"), "{stderr}");
    assert!(stderr.contains("text.jpg"), "{stderr}");
    assert!(stderr.contains("huge.png"), "{stderr}");
    assert_eq!(evaluated(&summary, 1), 2);
    assert_eq!(summary["datasets"][1]["skipped_count"], 5);
}

#[test]
fn wrong_id_root_is_an_error() {
    let root = fx().join("empty").display().to_string();
    let out = eval("wrong_root", &["--id-root", &root]);
    expect(&out, 1, "nothing evaluated in `id`");
    expect(&out, 1, "cannot read");
}

#[test]
fn label_beyond_the_model_is_left_out_of_the_accuracy_and_said() {
    let l = list("label10.txt", "id/0.png 0\nid/1.png 10\n");
    let out = with_id("label10", &l, &[]);
    let summary = finished("label10", &out, 0, "labels beyond the model's 10 classes");
    assert_eq!(summary["id_labelled"], 1);
}

#[test]
fn negative_label() {
    let l = list("labelneg.txt", "id/0.png -1\n");
    let out = with_id("labelneg", &l, &[]);
    expect(&out, 1, "non-negative");
}

#[test]
fn garbage_list_line() {
    let l = list("garbage.txt", "id/0.png 0\nthis is not a list line\n");
    let out = with_id("garbage", &l, &[]);
    expect(&out, 1, "line 2");
}

#[test]
fn more_class_folders_than_classes_is_said() {
    let out = with_id("eleven", &fx().join("eleven"), &[]);
    expect(
        &out,
        0,
        "1 ID image(s) have labels beyond the model's 10 classes",
    );
    let summary = written("eleven");
    assert_eq!(summary["id_labelled"], 10);
}

#[test]
fn limit_one_evaluates_one_per_set() {
    let out = eval("limit_one", &["--limit", "1"]);
    let summary = finished("limit_one", &out, 0, "");
    assert_eq!((evaluated(&summary, 0), evaluated(&summary, 1)), (1, 1));
}

/// A 16-bit greyscale PNG made from an 8-bit one (v * 257) is the same
/// picture: `predict` gives the same logits for both.
#[test]
fn grey16_png_is_classified_as_its_8_bit_twin() {
    let f = fx();
    let grey8 = image::GrayImage::from_fn(32, 32, |x, y| image::Luma([(x * 7 + y * 3) as u8]));
    let grey16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(32, 32, |x, y| {
        image::Luma([grey8.get_pixel(x, y).0[0] as u16 * 257])
    });
    let (p8, p16) = (f.join("twin8.png"), f.join("twin16.png"));
    grey8.save(&p8).unwrap();
    grey16.save(&p16).unwrap();
    let logits = |p: &Path| {
        let out = bin()
            .args(["predict", "--device", "cpu", "--image-size", "32", "--json"])
            .args(["--checkpoint", DEMO])
            .arg(p)
            .output()
            .unwrap();
        common::assert_success(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["logits"].clone()
    };
    let (l8, l16) = (logits(&p8), logits(&p16));
    assert_eq!(l8.as_array().unwrap().len(), 10);
    assert_eq!(l8, l16);
    // And the decoded pixels are the 8-bit ones, exactly.
    let (d8, d16) = (
        gradnorm_engine::data::image::load_rgb(&p8).unwrap(),
        gradnorm_engine::data::image::load_rgb(&p16).unwrap(),
    );
    assert_eq!(d8, d16);
}
