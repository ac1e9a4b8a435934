//! The embedded demo: a dataset the project draws itself (ten classes of
//! shapes, three OOD sets from far to near) and a small BiT trained on it
//! (`train-demo`, weights committed in `checkpoints/demo/`), so that a fresh
//! clone evaluates with nothing to download.

pub mod fit;
pub mod generate;
pub mod train;

use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::score::Method;
use generate::{OodKind, CLASSES};
use gradnorm_core::run::{self, Batch, DatasetSpec, ImageSize, RunConfig};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Bumped whenever the generator's output changes, so old folders are redrawn.
pub const GENERATOR_VERSION: u32 = 2;
/// The seed of the evaluation images.
pub const SEED: u64 = 2021;
/// Where the images go, relative to the project root (git-ignored).
pub const DATA_DIR: &str = "dataset/demo";
/// The committed weights, relative to the project root.
pub const CHECKPOINT: &str = "checkpoints/demo/bit-demo.safetensors";
/// The input size the demo model was trained at (the images' own size).
pub const IMAGE_SIZE: usize = generate::SIZE as usize;
/// The ID set's name in tables.
pub const ID_NAME: &str = "shapes";

const MANIFEST: &str = "manifest.json";
const CLASS_FILE: &str = "classes.txt";

/// How many images to draw, and from which seed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataSpec {
    pub seed: u64,
    pub id_per_class: usize,
    /// Images in each OOD set.
    pub ood_count: usize,
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec {
            seed: SEED,
            id_per_class: 50,
            ood_count: 300,
        }
    }
}

/// The generated sets on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoData {
    pub root: PathBuf,
    /// ImageFolder root: `id/<class>/NNNN.png`.
    pub id: PathBuf,
    /// Class names, one per line, in label order.
    pub classes: PathBuf,
    /// (name, folder of PNGs), far to near.
    pub ood: Vec<(String, PathBuf)>,
}

impl DemoData {
    /// The ID set as a run's dataset, named `shapes`.
    pub fn id_spec(&self) -> DatasetSpec {
        DatasetSpec {
            name: ID_NAME.into(),
            path: self.id.clone(),
            root: None,
            format: None,
            group: None,
        }
    }

    /// The OOD sets as a run's datasets, far to near.
    pub fn ood_specs(&self) -> Vec<DatasetSpec> {
        self.ood
            .iter()
            .map(|(name, path)| DatasetSpec {
                name: name.clone(),
                path: path.clone(),
                root: None,
                format: None,
                group: None,
            })
            .collect()
    }
}

/// What a complete folder records; any difference means "draw again".
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Manifest {
    generator_version: u32,
    spec: DataSpec,
    image_size: u32,
    classes: Vec<String>,
    ood: Vec<String>,
}

impl Manifest {
    fn for_spec(spec: &DataSpec) -> Self {
        Manifest {
            generator_version: GENERATOR_VERSION,
            spec: spec.clone(),
            image_size: generate::SIZE,
            classes: CLASSES.iter().map(|s| s.to_string()).collect(),
            ood: OodKind::ALL.iter().map(|k| k.name().to_string()).collect(),
        }
    }
}

/// The demo's images in `root` (normally `dataset/demo`), drawn on first use
/// or when the folder is stale or incomplete.
pub fn ensure_data(root: &Path) -> Result<DemoData> {
    ensure_data_with(root, &DataSpec::default())
}

/// `ensure_data` with other counts or another seed (tests use small sets).
pub fn ensure_data_with(root: &Path, spec: &DataSpec) -> Result<DemoData> {
    let want = Manifest::for_spec(spec);
    if read_manifest(root).as_ref() == Some(&want) {
        return Ok(layout(root));
    }
    // Draw into a sibling folder and move it into place when complete, so
    // an interrupted run never leaves a folder that looks finished.
    let parent = match root.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "demo".into());
    static DRAWS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = DRAWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = parent.join(format!(".{name}.partial-{}-{n}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let drawn = write_sets(&tmp, spec, &want);
    if let Err(e) = drawn {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if root.exists() {
        if read_manifest(root).as_ref() == Some(&want) {
            // Another process finished first.
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(layout(root));
        }
        check_ours(root)?;
        std::fs::remove_dir_all(root).map_err(|e| Error::io(root, e))?;
    }
    if let Err(e) = std::fs::rename(&tmp, root) {
        let _ = std::fs::remove_dir_all(&tmp);
        if read_manifest(root).as_ref() != Some(&want) {
            return Err(Error::io(root, e));
        }
    }
    Ok(layout(root))
}

fn layout(root: &Path) -> DemoData {
    DemoData {
        root: root.to_path_buf(),
        id: root.join("id"),
        classes: root.join(CLASS_FILE),
        ood: OodKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), root.join(k.name())))
            .collect(),
    }
}

fn read_manifest(root: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(root.join(MANIFEST)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Refuses to delete a folder the demo did not make.
fn check_ours(root: &Path) -> Result<()> {
    if root.join(MANIFEST).is_file() {
        return Ok(());
    }
    let known: Vec<&str> = ["id", CLASS_FILE, MANIFEST, fit::FIT_DIR, fit::FIT_FILE]
        .into_iter()
        .chain(OodKind::ALL.iter().map(|k| k.name()))
        .collect();
    let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !known.contains(&name.as_str()) {
            return Err(Error::data(
                root,
                format!(
                    "holds `{name}`, which the demo did not make; move the folder away to let the demo draw its images there"
                ),
            ));
        }
    }
    Ok(())
}

fn write_sets(dir: &Path, spec: &DataSpec, manifest: &Manifest) -> Result<()> {
    // (path, image maker) for every file, drawn in parallel.
    enum Job {
        Class(usize, usize),
        Ood(OodKind, usize),
    }
    let mut jobs = Vec::new();
    for (c, class) in CLASSES.iter().enumerate() {
        let d = dir.join("id").join(class);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        jobs.extend((0..spec.id_per_class).map(|i| Job::Class(c, i)));
    }
    for kind in OodKind::ALL {
        let d = dir.join(kind.name());
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        jobs.extend((0..spec.ood_count).map(|i| Job::Ood(kind, i)));
    }
    jobs.par_iter().try_for_each(|job| {
        let (img, path) = match *job {
            Job::Class(c, i) => (
                generate::class_image(spec.seed, "id", c, i),
                dir.join("id")
                    .join(CLASSES[c])
                    .join(format!("{:04}.png", i + 1)),
            ),
            Job::Ood(kind, i) => {
                let (img, variant) = generate::ood_image(spec.seed, kind, i);
                let file = format!("{:04}-{variant}.png", i + 1);
                (img, dir.join(kind.name()).join(file))
            }
        };
        write_png(&img, &path)
    })?;
    let classes = dir.join(CLASS_FILE);
    std::fs::write(&classes, CLASSES.join("\n") + "\n").map_err(|e| Error::io(&classes, e))?;
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(manifest).expect("manifest serializes");
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))
}

pub(crate) fn write_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::with_capacity(16 * 1024);
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut bytes),
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| Error::data(path, format!("cannot encode PNG: {e}")))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// The methods the demo runs, with their defaults, in the registry's
/// order: every one but Mahalanobis (whose tuning is a separate command).
pub fn methods() -> Vec<Method> {
    gradnorm_core::method::registry::METHODS
        .iter()
        .filter(|d| !d.needs.taps)
        .filter_map(|d| Method::from_key(d.key))
        .collect()
}

/// The demo's evaluation: the committed checkpoint, the ID set and every
/// OOD set (drawn now if needed), all methods, on the best device.
pub fn run_config(project_root: &Path) -> Result<RunConfig> {
    let checkpoint = project_root.join(CHECKPOINT);
    Error::require_file(
        &checkpoint,
        "the demo checkpoint is missing (run from the repository, or make it with `gradnorm-tui train-demo`)",
    )?;
    let data = ensure_data(&project_root.join(DATA_DIR))?;
    Ok(RunConfig {
        model: ModelSpec {
            name: None,
            checkpoint: Some(checkpoint.clone()),
        },
        class_names: Some(data.classes.clone()),
        class_order: None,
        id: data.id_spec(),
        ood: data.ood_specs(),
        methods: methods(),
        fit: Some(fit::ensure_fit(&data.root, &checkpoint, SEED)?),
        image_size: Some(ImageSize::new(IMAGE_SIZE).expect("the demo's size is valid")),
        preprocess: None,
        batch: Batch::new(50).expect("the demo's batch is valid"),
        device: run::Device::Auto,
        dtype: run::DType::F32,
        limit: None,
        workers: None,
    })
}

/// The size the demo's checkpoint was trained at, when `checkpoint` is it
/// (by its file name): BiT's own default, 480, would run it at a size it
/// never saw.
pub fn trained_image_size(checkpoint: &Path) -> Option<usize> {
    let demo = Path::new(CHECKPOINT).file_name()?;
    (checkpoint.file_name()? == demo).then_some(IMAGE_SIZE)
}

/// The nearest folder at or above the working directory that holds the
/// demo checkpoint (so the demo runs from any folder of a checkout).
pub fn locate_project_root() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .find(|d| d.join(CHECKPOINT).is_file())
        .map(Path::to_path_buf)
}
