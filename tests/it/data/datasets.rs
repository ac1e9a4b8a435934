//! Datasets: listed like the seed and torchvision, image folders in
//! torchvision's order, list files parsed like the seed's.

use crate::common;

use gradnorm_engine::data::{Dataset, DatasetKind, Item};
use std::path::{Path, PathBuf};

#[test]
fn shared_datasets_list_like_the_seed_and_torchvision() {
    let Some(shared) = common::shared() else {
        return;
    };
    let data = shared.join("data");
    // (path, kind, count, classes, first item, its label, last item, its label);
    // the orders are torchvision's (sorted(os.walk)) and the lists' own.
    let cases = [
        (
            "imagenet-val/val_list.txt",
            DatasetKind::List,
            1300,
            0,
            "images/ILSVRC2012_val_00000347.JPEG",
            472,
            "images/ILSVRC2012_val_00048552.JPEG",
            20,
        ),
        (
            "imagenet-sample/list.txt",
            DatasetKind::List,
            1000,
            0,
            "images/n01440764_tench.JPEG",
            0,
            "images/n15075141_toilet_tissue.JPEG",
            999,
        ),
        (
            "ood/textures",
            DatasetKind::ImageFolder,
            1200,
            10,
            "banded/banded_0002.jpg",
            0,
            "crystalline/crystalline_0220.jpg",
            9,
        ),
        (
            "ood/scenes",
            DatasetKind::ImageFolder,
            1100,
            2,
            "indoor/sun_aaapjusaqihskred.jpg",
            0,
            "outdoor/sun_dyymwcrzleboflzy.jpg",
            1,
        ),
        (
            "ood/cifar10",
            DatasetKind::ImageFolder,
            2000,
            10,
            "airplane/0000.jpg",
            0,
            "truck/0199.jpg",
            9,
        ),
    ];
    for (rel, kind, count, classes, first, first_label, last, last_label) in cases {
        let path = data.join(rel);
        let ds = Dataset::open(&path, None).unwrap();
        let base = if kind == DatasetKind::List {
            path.parent().unwrap().to_path_buf()
        } else {
            path.clone()
        };
        assert_eq!(ds.kind, kind, "{rel}");
        assert_eq!(ds.items.len(), count, "{rel}");
        assert_eq!(ds.classes.len(), classes, "{rel}");
        assert_eq!(
            ds.items[0],
            Item {
                path: base.join(first),
                label: Some(first_label)
            },
            "{rel}"
        );
        assert_eq!(
            ds.items[count - 1],
            Item {
                path: base.join(last),
                label: Some(last_label)
            },
            "{rel}"
        );
        assert_eq!(Dataset::count(&path, None).unwrap(), count, "{rel}");
    }
    let val = Dataset::open(&data.join("imagenet-val/val_list.txt"), None).unwrap();
    let labels: std::collections::BTreeSet<usize> =
        val.items.iter().filter_map(|i| i.label).collect();
    assert_eq!(
        (labels.len(), labels.first(), labels.last()),
        (725, Some(&0), Some(&998))
    );
    let scenes = Dataset::open(&data.join("ood/scenes"), None).unwrap();
    assert_eq!(scenes.classes, ["indoor", "outdoor"]);
    // A list resolved against another root.
    let mut sample = Dataset::open(
        &data.join("imagenet-sample/list.txt"),
        Some(Path::new("/elsewhere")),
    )
    .unwrap();
    assert_eq!(
        sample.items[1].path,
        Path::new("/elsewhere/images/n01443537_goldfish.JPEG")
    );
    sample.limit(10);
    assert_eq!(sample.items.len(), 10);
}

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"").unwrap();
}

#[test]
fn image_folder_order_follows_torchvision() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    for f in [
        "b_class/img2.PNG",
        "b_class/img10.png",
        "b_class/.hidden.png",
        "b_class/notes.txt",
        "b_class/Z.webp",
        "b_class/sub/z.jpg",
        "b_class/sub/inner/a.tif",
        "b_class/sub dir/a.jpeg",
        "a_class/x.JPG",
        ".hidden_class/y.png",
        // No top-level image: torchvision would drop it silently, we
        // refuse the folder (tests/it/bad_input/).
    ] {
        touch(&root.join(f));
    }
    touch(&tmp.path().join("ext/e.bmp"));
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(tmp.path().join("ext"), root.join("link")).unwrap();
        // A link back up must not loop.
        std::os::unix::fs::symlink(root.join("b_class"), root.join("b_class/sub/loop")).unwrap();
    }
    let ds = Dataset::open(&root, None).unwrap();
    assert_eq!(ds.kind, DatasetKind::ImageFolder);
    // torchvision (os.scandir, sorted(os.walk(followlinks=True))) gives this
    // order; it would also take the hidden folder and file, which we skip.
    let mut want = vec![
        ("a_class/x.JPG", 0),
        ("b_class/Z.webp", 1),
        ("b_class/img10.png", 1),
        ("b_class/img2.PNG", 1),
        ("b_class/sub/z.jpg", 1),
        ("b_class/sub dir/a.jpeg", 1),
        ("b_class/sub/inner/a.tif", 1),
    ];
    let mut classes = vec!["a_class", "b_class"];
    if cfg!(unix) {
        want.push(("link/e.bmp", 2));
        classes.push("link");
    }
    let got: Vec<(String, usize)> = ds
        .items
        .iter()
        .map(|i| {
            let rel = i.path.strip_prefix(&root).unwrap();
            (rel.to_string_lossy().replace('\\', "/"), i.label.unwrap())
        })
        .collect();
    let want: Vec<(String, usize)> = want.into_iter().map(|(p, l)| (p.to_string(), l)).collect();
    assert_eq!(got, want);
    assert_eq!(ds.classes, classes);
    assert_eq!(Dataset::count(&root, None).unwrap(), want.len());

    // Without subfolders: a plain folder, unlabelled.
    let flat = tmp.path().join("ext");
    let ds = Dataset::open(&flat, None).unwrap();
    assert_eq!(ds.kind, DatasetKind::Folder);
    assert_eq!(
        ds.items,
        [Item {
            path: flat.join("e.bmp"),
            label: None
        }]
    );
    assert!(ds.classes.is_empty());

    // No images at all is an error naming the folder.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = Dataset::open(&empty, None).unwrap_err().to_string();
    assert!(err.contains("empty") && err.contains("no images"), "{err}");
}

#[test]
fn list_files_parse_like_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let list = common::write_file(
        tmp.path(),
        "list.txt",
        "# a comment\n\nimages/a b.jpg 3\r\n  images/c.JPEG\t12  \nimages/no label.png\nplain\n",
    );
    let ds = Dataset::open(&list, None).unwrap();
    assert_eq!(ds.kind, DatasetKind::List);
    let want = [
        ("images/a b.jpg", Some(3)),
        ("images/c.JPEG", Some(12)),
        ("images/no label.png", None),
        ("plain", None),
    ];
    let got: Vec<(PathBuf, Option<usize>)> =
        ds.items.iter().map(|i| (i.path.clone(), i.label)).collect();
    let want: Vec<(PathBuf, Option<usize>)> =
        want.iter().map(|(p, l)| (tmp.path().join(p), *l)).collect();
    assert_eq!(got, want);
    assert_eq!(Dataset::count(&list, None).unwrap(), 4);

    for (text, line) in [
        ("a.jpg 1\nb.jpg cat\n", 2),
        ("a.jpg -1\n", 1),
        ("\n\nx y\n", 3),
    ] {
        std::fs::write(&list, text).unwrap();
        let err = Dataset::open(&list, None).unwrap_err().to_string();
        assert!(
            err.contains("list.txt") && err.contains(&format!("line {line}")),
            "{err}"
        );
    }
    let err = Dataset::open(&tmp.path().join("absent.txt"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.txt"), "{err}");
}
