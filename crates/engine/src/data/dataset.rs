//! Datasets as the seed and torchvision see them: a list file
//! (`relative/path label` per line), an ImageFolder (class subfolders) or a
//! plain folder of images.

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub path: PathBuf,
    /// Class index, when the dataset gives one.
    pub label: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// A list file: `relative/path label` per line.
    List,
    /// Class subfolders, as torchvision's ImageFolder.
    ImageFolder,
    /// A folder of images without class subfolders (no labels).
    Folder,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub kind: DatasetKind,
    pub path: PathBuf,
    pub items: Vec<Item>,
    /// Class folder names (ImageFolder; label = index); empty otherwise.
    pub classes: Vec<String>,
}

/// torchvision's IMG_EXTENSIONS, compared case-insensitively.
pub const IMG_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// Whether a file name has one of [`IMG_EXTENSIONS`].
pub fn is_image_name(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((_, ext)) => IMG_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)),
        None => false,
    }
}

/// Extensions a list file is named by where a path must be told from a
/// folder without reading it (pickers, shown paths); `Dataset::open` itself
/// reads any file as a list.
pub const LIST_EXTENSIONS: [&str; 2] = ["txt", "lst"];

/// Whether a file name has one of [`LIST_EXTENSIONS`].
pub fn is_list_name(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((_, ext)) => LIST_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)),
        None => false,
    }
}

/// Folders [`holds_images`] reads at most: a picker asks this of any folder
/// shown (`/` included), so the search is bounded; a folder whose first
/// image lies beyond it is taken as holding none.
const IMAGE_SEARCH_DIRS: usize = 256;

/// Whether `dir` or a folder under it (breadth first, hidden ones skipped)
/// holds an image file: what `Dataset::open` would find any of, asked
/// cheaply.
pub fn holds_images(dir: &Path) -> bool {
    let mut queue = std::collections::VecDeque::from([dir.to_path_buf()]);
    let mut read = 0;
    while let Some(d) = queue.pop_front() {
        if read == IMAGE_SEARCH_DIRS {
            return false;
        }
        read += 1;
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if is_hidden(&name) {
                continue;
            }
            if entry_is_dir(&entry) {
                queue.push_back(entry.path());
            } else if is_image_file_name(&name) {
                return true;
            }
        }
    }
    false
}

/// [`is_image_name`] for any OS file name: a name that is not UTF-8
/// (`caf\xe9.jpg` in Latin-1) is still an image by its extension.
fn is_image_file_name(name: &std::ffi::OsStr) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|ext| IMG_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Image files directly in `dir` (not in its subfolders).
fn top_level_images(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if !is_hidden(&name) && !entry_is_dir(&entry) && is_image_file_name(&name) {
            n += 1;
        }
    }
    Ok(n)
}

impl Dataset {
    /// Opens a list file (paths resolved against `root`, by default the
    /// list's folder), an ImageFolder root or a plain folder of images.
    /// Listed files are not checked for existence here: the loader records
    /// missing ones as failures.
    pub fn open(path: &Path, root: Option<&Path>) -> Result<Dataset> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let (kind, items, classes) = if meta.is_dir() {
            let mut classes = class_dirs(path)?;
            let loose = top_level_images(path)?;
            if loose > 0 {
                // Images beside subfolders: a plain folder when the
                // subfolders hold no images (an empty folder named `x.jpg`
                // must not turn it into an empty ImageFolder), else an
                // error: an ImageFolder would silently drop them.
                let mut with_images = Vec::new();
                for c in &classes {
                    let mut n = 0usize;
                    walk_images(&path.join(c), &mut |_, _| n += 1)?;
                    if n > 0 {
                        with_images.push(c.as_str());
                    }
                }
                if !with_images.is_empty() {
                    return Err(Error::data(
                        path,
                        format!(
                            "holds {loose} image(s) at its top level and {} subfolder(s) with images ({}): \
                             class folders (an ImageFolder) or a plain folder, not both; \
                             move the top-level images into a folder or point at a subfolder",
                            with_images.len(),
                            with_images.iter().take(3).copied().collect::<Vec<_>>().join(", "),
                        ),
                    ));
                }
                classes.clear();
            }
            if classes.is_empty() {
                let mut items = Vec::new();
                walk_images(path, &mut |dir, name| {
                    items.push((dir.to_path_buf(), name.to_os_string()))
                })?;
                let items = sorted_paths(items)
                    .into_iter()
                    .map(|path| Item { path, label: None })
                    .collect();
                (DatasetKind::Folder, items, Vec::new())
            } else {
                let mut items = Vec::new();
                for (label, class) in classes.iter().enumerate() {
                    let mut found = Vec::new();
                    walk_images(&path.join(class), &mut |dir, name| {
                        found.push((dir.to_path_buf(), name.to_os_string()))
                    })?;
                    items.extend(sorted_paths(found).into_iter().map(|path| Item {
                        path,
                        label: Some(label),
                    }));
                }
                (DatasetKind::ImageFolder, items, classes)
            }
        } else {
            let root = match root {
                Some(r) => r.to_path_buf(),
                None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            let items = read_list(path)?
                .into_iter()
                .map(|(rel, label)| Item {
                    path: root.join(rel),
                    label,
                })
                .collect();
            (DatasetKind::List, items, Vec::new())
        };
        if items.is_empty() {
            return Err(Error::data(
                path,
                format!(
                    "no images found (a list file, class folders or a folder of .{} files)",
                    IMG_EXTENSIONS.join(" .")
                ),
            ));
        }
        Ok(Dataset {
            kind,
            path: path.to_path_buf(),
            items,
            classes,
        })
    }

    /// Keeps the first `n` items.
    pub fn limit(&mut self, n: usize) {
        self.items.truncate(n);
    }

    /// How many items `open` would give, without sorting or building
    /// paths (for menus over large folders).
    pub fn count(path: &Path, root: Option<&Path>) -> Result<usize> {
        let _ = root; // a list's length does not depend on its root
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_dir() {
            return Ok(read_list(path)?.len());
        }
        let classes = class_dirs(path)?;
        let mut n = 0usize;
        if classes.is_empty() || top_level_images(path)? > 0 {
            walk_images(path, &mut |_, _| n += 1)?;
        } else {
            for class in &classes {
                walk_images(&path.join(class), &mut |_, _| n += 1)?;
            }
        }
        Ok(n)
    }
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Whether a directory entry is a directory, following symlinks.
fn entry_is_dir(entry: &std::fs::DirEntry) -> bool {
    match entry.file_type() {
        Ok(t) if t.is_symlink() => std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()),
        Ok(t) => t.is_dir(),
        Err(_) => false,
    }
}

/// Sorted names of the non-hidden subdirectories (symlinks followed).
fn class_dirs(root: &Path) -> Result<Vec<String>> {
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let name = entry.file_name();
        if is_hidden(&name) || !entry_is_dir(&entry) {
            continue;
        }
        let name = name
            .into_string()
            .map_err(|n| Error::data(root.join(n), "folder name is not valid UTF-8"))?;
        classes.push(name);
    }
    classes.sort();
    Ok(classes)
}

/// Calls `found(dir, name)` for every non-hidden image file under `root`,
/// recursively, following symlinks (a link back to a folder being walked
/// is skipped, so links cannot loop), in no particular order.
fn walk_images(root: &Path, found: &mut dyn FnMut(&Path, &std::ffi::OsStr)) -> Result<()> {
    walk(root, &mut Vec::new(), found)
}

fn walk(
    dir: &Path,
    ancestors: &mut Vec<PathBuf>,
    found: &mut dyn FnMut(&Path, &std::ffi::OsStr),
) -> Result<()> {
    let canonical = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if ancestors.contains(&canonical) {
        return Ok(());
    }
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if is_hidden(&name) {
            continue;
        }
        if entry_is_dir(&entry) {
            subdirs.push(entry.path());
        } else if is_image_file_name(&name) {
            found(dir, &name);
        }
    }
    ancestors.push(canonical);
    for sub in subdirs {
        walk(&sub, ancestors, found)?;
    }
    ancestors.pop();
    Ok(())
}

/// torchvision's order: `sorted(os.walk(...))` sorts directories by their
/// full path string (not component-wise), then files by name.
fn sorted_paths(mut files: Vec<(PathBuf, OsString)>) -> Vec<PathBuf> {
    files.sort_by(|a, b| {
        (a.0.as_os_str().as_encoded_bytes(), a.1.as_encoded_bytes())
            .cmp(&(b.0.as_os_str().as_encoded_bytes(), b.1.as_encoded_bytes()))
    });
    files
        .into_iter()
        .map(|(dir, name)| dir.join(name))
        .collect()
}

/// Parses a list file: `path label` per line, split at the last
/// whitespace (paths may hold spaces); a line without an integer label is
/// a path alone when it has no whitespace or ends in an image extension.
/// Blank lines and `#` comments are skipped.
fn read_list(path: &Path) -> Result<Vec<(String, Option<usize>)>> {
    let text = gradnorm_core::error::read_text(
        path,
        "read as a list file (`path label` lines) but it is not UTF-8 text \
             (an image or a binary file? pass a folder or a list)",
    )?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| Error::data(path, format!("line {}: {why}: `{line}`", n + 1));
        let Some((head, tail)) = line.rsplit_once(char::is_whitespace) else {
            items.push((line.to_string(), None));
            continue;
        };
        match tail.parse::<i64>() {
            Ok(label) if label >= 0 => {
                items.push((head.trim_end().to_string(), Some(label as usize)))
            }
            Ok(_) => return Err(bad("the label must be a non-negative integer")),
            Err(_) if is_image_name(line) => items.push((line.to_string(), None)),
            Err(_) if tail.bytes().all(|c| c.is_ascii_digit()) => {
                return Err(bad("label out of range"))
            }
            Err(_) => return Err(bad("expected `path label` with an integer label")),
        }
    }
    Ok(items)
}
