//! What the setup screen offers: checkpoint files under `checkpoints/`,
//! fit files (under `fits/`, where the form writes them, `checkpoints/`
//! and `dataset/`), datasets under `dataset/`, and their image counts
//! (counted on a worker thread: a 50,000-image folder must not stall the
//! menus).

use super::wake::{Queue, Worker};
use gradnorm_engine::error::Result;
use std::path::{Path, PathBuf};

const CHECKPOINT_SUFFIXES: [&str; 5] = [".pth", ".pth.tar", ".tar", ".npz", ".safetensors"];
/// How deep the scans look below `checkpoints/` and `dataset/`.
const MAX_DEPTH: usize = 3;

/// Checkpoint files below `dir`, sorted (fit files, safetensors too, left out).
pub fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(dir, MAX_DEPTH, &mut |p| {
        let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase());
        if name.is_some_and(|n| CHECKPOINT_SUFFIXES.iter().any(|s| n.ends_with(s))) && !is_fit(p) {
            found.push(p.to_path_buf());
        }
    });
    found.sort();
    found
}

/// Where the form writes the fits it makes (relative to the working
/// folder, as `checkpoints/` and `dataset/`).
pub const FIT_DIR: &str = "fits";

/// A fit file found, with what its header says (the model it was made
/// for), read without its tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundFit {
    pub path: PathBuf,
    pub info: FitInfo,
}

pub use gradnorm_engine::score::fit::FitInfo;

/// The fit file at `path`, when it is one.
pub fn fit_file(path: &Path) -> Option<FoundFit> {
    let info = gradnorm_engine::score::fit::Fit::peek(path).ok()?;
    Some(FoundFit {
        path: path.to_path_buf(),
        info,
    })
}

fn is_fit(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "safetensors") && fit_file(p).is_some()
}

/// Fit files under `fits/` and `checkpoints/` (as deep as checkpoints are
/// looked for) and in `dataset/`'s folders (the demo's is there; a deeper
/// look would list every image folder), each once, sorted by path.
pub fn fits(fits_dir: &Path, checkpoints: &Path, datasets: &Path) -> Vec<FoundFit> {
    let mut found = Vec::new();
    let mut look = |p: &Path| {
        if p.extension().is_some_and(|e| e == "safetensors") {
            found.extend(fit_file(p));
        }
    };
    walk(fits_dir, MAX_DEPTH, &mut look);
    walk(checkpoints, MAX_DEPTH, &mut look);
    walk(datasets, 1, &mut look);
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found.dedup_by(|a, b| a.path == b.path);
    found
}

fn walk(dir: &Path, depth: usize, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            if depth > 0 {
                walk(&p, depth - 1, f);
            }
        } else {
            f(&p);
        }
    }
}

/// A dataset the menus can offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub path: PathBuf,
    pub root: Option<PathBuf>,
}

/// Datasets under `dir`: each list file (`*.txt` at the top or one level
/// down) and each folder without list files (an ImageFolder root or a plain
/// folder of images).
pub fn datasets(dir: &Path) -> Vec<Candidate> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            let lists = list_files(&p);
            if lists.is_empty() {
                found.push(Candidate {
                    name: name_of(&p),
                    path: p,
                    root: None,
                });
            } else {
                let single = lists.len() == 1;
                for l in lists {
                    let name = if single { name_of(&p) } else { name_of(&l) };
                    found.push(Candidate {
                        name,
                        path: l,
                        root: None,
                    });
                }
            }
        } else if is_list_file(&p) {
            found.push(Candidate {
                name: name_of(&p),
                path: p,
                root: None,
            });
        }
    }
    found
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_list_file(p))
        .collect();
    v.sort();
    v
}

fn is_list_file(p: &Path) -> bool {
    p.is_file()
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(gradnorm_engine::data::dataset::is_list_name)
        && names_images(p)
}

/// Whether a text file lists images: its first line names an image file
/// (so `classes.txt` or a README is not taken for a dataset).
fn names_images(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4096];
    let Ok(n) = std::fs::File::open(p).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let text = String::from_utf8_lossy(&head[..n]);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .and_then(|l| l.split_whitespace().next())
        .is_some_and(gradnorm_engine::data::dataset::is_image_name)
}

/// A short dataset name from a path: the folder's name, or the list
/// file's stem.
pub fn name_of(p: &Path) -> String {
    let stem = if p.is_dir() {
        p.file_name()
    } else {
        p.file_stem()
    };
    stem.map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| p.display().to_string())
}

/// How many images a dataset holds (the data module's count: list lines,
/// or images under a folder, without opening them). A list that only
/// reads as OpenOOD's (its `-1` labels) is counted as such: a config gives
/// it that format.
pub fn count(path: &Path, root: Option<&Path>) -> Result<usize> {
    gradnorm_engine::data::dataset::Dataset::count(path, root).or_else(|e| match path.is_file() {
        true => gradnorm_engine::data::openood::read_imglist(path)
            .map(|items| items.len())
            .map_err(|_| e),
        false => Err(e),
    })
}

/// An image count as the menus show it.
#[derive(Debug, Clone, PartialEq)]
pub enum Count {
    Pending,
    Images(usize),
    Error(String),
}

/// Counts datasets on a worker thread; results come back in any order.
pub struct Counter {
    worker: Worker<(PathBuf, Option<PathBuf>), (PathBuf, Count)>,
}

impl Counter {
    /// `wake` is told when a count is ready.
    pub fn new(wake: super::wake::Wake) -> Counter {
        let worker = Worker::spawn(
            "gradnorm-count",
            Queue::Each,
            wake,
            |(path, root): (PathBuf, Option<PathBuf>)| {
                let c = match count(&path, root.as_deref()) {
                    Ok(n) => Count::Images(n),
                    Err(e) => Count::Error(e.to_string()),
                };
                (path, c)
            },
        );
        Counter { worker }
    }

    pub fn request(&self, path: &Path, root: Option<&Path>) {
        self.worker
            .send((path.to_path_buf(), root.map(Path::to_path_buf)));
    }

    pub fn poll(&self) -> Vec<(PathBuf, Count)> {
        self.worker.replies().collect()
    }
}
