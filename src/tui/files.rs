//! A file browser for the form's paths: a folder's entries (folders
//! first), Enter to open a folder or pick a file, Backspace (or ←) up,
//! typing to filter. What may be picked depends on the row ([`Pick`]): a
//! dataset row offers only list files and, as "this folder", a folder that
//! holds images.

use gradnorm_engine::data::dataset::{holds_images, is_list_name, LIST_EXTENSIONS};
use std::path::{Path, PathBuf};

/// Entries read from one folder at most: a folder of a million images
/// would take seconds to list; the filter still finds names among these.
const MAX_ENTRIES: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
}

/// One line of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// Pick the folder shown (datasets).
    Here,
    /// The parent folder.
    Up,
    /// An entry of the folder (index into `entries`).
    Entry(usize),
}

/// What a row takes, so what its browser offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Any file (checkpoints, class lists, fits).
    File,
    /// A dataset: a list file, or a folder holding images.
    Dataset,
    /// Any folder (a list's root).
    Folder,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileBrowser {
    /// The folder shown (absolute).
    pub dir: PathBuf,
    pub(crate) entries: Vec<Entry>,
    /// Typed to narrow the entries (any case).
    pub filter: String,
    /// Index into `items()`.
    pub selected: usize,
    pub(crate) pick: Pick,
    /// A dataset browser: whether the folder shown holds images (only then
    /// is it offered).
    here_has_images: bool,
    /// Files of the folder not offered (not list files, for a dataset).
    pub(crate) files_left_out: usize,
    /// Why the folder could not be read, that it was cut, or why a dataset
    /// browser offers neither it nor its files.
    pub(crate) note: Option<String>,
}

/// What a key in the browser gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stay,
    Picked(PathBuf),
}

impl FileBrowser {
    /// A browser at `start` (a file starts at its folder), else at the
    /// working folder.
    pub fn open(start: Option<&Path>, pick: Pick) -> FileBrowser {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let start = start
            .map(|p| {
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    cwd.join(p)
                }
            })
            .map(|p| {
                if p.is_dir() {
                    p
                } else {
                    p.parent().map(Path::to_path_buf).unwrap_or(p)
                }
            })
            .filter(|p| p.is_dir())
            .unwrap_or(cwd);
        let mut b = FileBrowser {
            dir: start,
            entries: Vec::new(),
            filter: String::new(),
            selected: 0,
            pick,
            here_has_images: false,
            files_left_out: 0,
            note: None,
        };
        b.load();
        b
    }

    /// Reads the folder shown: folders first, then the files the row may
    /// take, each by name; hidden entries only when the filter starts with a
    /// dot.
    fn load(&mut self) {
        self.entries.clear();
        self.note = None;
        self.selected = 0;
        self.files_left_out = 0;
        self.here_has_images = false;
        let read = match std::fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) => {
                self.note = Some(format!("{}: {e}", self.dir.display()));
                return;
            }
        };
        for entry in read.flatten() {
            if self.entries.len() == MAX_ENTRIES {
                self.note = Some(format!("the first {MAX_ENTRIES} entries: type to filter"));
                break;
            }
            // The entry's own type (no stat), following links to folders.
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir())
                || entry.file_type().is_ok_and(|t| t.is_symlink()) && path.is_dir();
            let name = entry.file_name().to_string_lossy().into_owned();
            let offered = is_dir
                || match self.pick {
                    Pick::File => true,
                    Pick::Dataset => is_list_name(&name),
                    Pick::Folder => false,
                };
            if offered {
                self.entries.push(Entry { name, is_dir });
            } else if !name.starts_with('.') {
                self.files_left_out += 1;
            }
        }
        self.entries
            .sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
        if self.pick == Pick::Dataset && self.note.is_none() {
            self.here_has_images = holds_images(&self.dir);
            let lists = LIST_EXTENSIONS.map(|e| format!(".{e}")).join("/");
            self.note = match (self.here_has_images, self.files_left_out) {
                (true, 0) => None,
                (true, n) => Some(format!(
                    "{n} other file(s) not shown: a dataset is a folder of images or a {lists} list"
                )),
                (false, _) => Some(format!(
                    "no images in or under this folder: open one that has them, or pick a {lists} list"
                )),
            };
        }
    }

    /// The lines shown: this folder (when the row may take it), the
    /// parent, then the entries the filter keeps.
    pub fn items(&self) -> Vec<Item> {
        let mut v = Vec::new();
        if self.pick == Pick::Folder || self.pick == Pick::Dataset && self.here_has_images {
            v.push(Item::Here);
        }
        if self.dir.parent().is_some() {
            v.push(Item::Up);
        }
        let f = self.filter.to_lowercase();
        let hidden_ok = f.starts_with('.');
        v.extend(
            self.entries
                .iter()
                .enumerate()
                .filter(|(_, e)| hidden_ok || !e.name.starts_with('.'))
                .filter(|(_, e)| e.name.to_lowercase().contains(&f))
                .map(|(i, _)| Item::Entry(i)),
        );
        v
    }

    /// An item as the list writes it.
    pub fn label(&self, item: Item) -> String {
        match item {
            Item::Here => "./  (pick this folder)".into(),
            Item::Up => "../".into(),
            Item::Entry(i) => {
                let e = &self.entries[i];
                if e.is_dir {
                    format!("{}/", e.name)
                } else {
                    e.name.clone()
                }
            }
        }
    }

    pub fn type_char(&mut self, c: char) {
        self.filter.push(c);
        self.select_first_match();
    }

    /// With a filter typed, the first entry it keeps is selected, not `./`
    /// or `../`: Enter then takes what was typed for (it once picked the
    /// folder itself, `/` being a scan of the whole disk).
    fn select_first_match(&mut self) {
        self.selected = if self.filter.is_empty() {
            0
        } else {
            let items = self.items();
            items
                .iter()
                .position(|it| matches!(it, Item::Entry(_)))
                .unwrap_or(0)
        };
    }

    pub fn move_by(&mut self, delta: isize) {
        let n = self.items().len();
        if n > 0 {
            self.selected = (self.selected as isize + delta).clamp(0, n as isize - 1) as usize;
        }
    }

    /// The parent folder, keeping the folder left selected.
    pub fn up(&mut self) {
        let Some(parent) = self.dir.parent().map(Path::to_path_buf) else {
            return;
        };
        let left = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        self.dir = parent;
        self.filter.clear();
        self.load();
        if let Some(name) = left {
            let items = self.items();
            if let Some(k) = items
                .iter()
                .position(|it| matches!(it, Item::Entry(i) if self.entries[*i].name == name))
            {
                self.selected = k;
            }
        }
    }

    /// Into the folder `name`.
    fn descend(&mut self, name: &str) {
        self.dir = self.dir.join(name);
        self.filter.clear();
        self.load();
    }

    /// Backspace: a character of the filter, or up when it is empty.
    pub fn backspace(&mut self) {
        if self.filter.pop().is_some() {
            self.select_first_match();
        } else {
            self.up();
        }
    }

    /// → : into the folder selected.
    pub fn right(&mut self) {
        if let Some(Item::Entry(i)) = self.items().get(self.selected).copied() {
            if self.entries[i].is_dir {
                let name = self.entries[i].name.clone();
                self.descend(&name);
            }
        }
    }

    /// Enter: opens a folder, picks a file (or this folder).
    pub fn enter(&mut self) -> Outcome {
        let items = self.items();
        let Some(item) = items.get(self.selected.min(items.len().saturating_sub(1))) else {
            return Outcome::Stay;
        };
        match *item {
            Item::Here => Outcome::Picked(relative(&self.dir)),
            Item::Up => {
                self.up();
                Outcome::Stay
            }
            Item::Entry(i) if self.entries[i].is_dir => {
                let name = self.entries[i].name.clone();
                self.descend(&name);
                Outcome::Stay
            }
            Item::Entry(i) => Outcome::Picked(relative(&self.dir.join(&self.entries[i].name))),
        }
    }
}

/// `path` relative to the working folder when inside it (the config file
/// stays portable), else as it is.
fn relative(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_first_filter_descend_up_and_pick() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("models/lite0")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("models/lite0/a.safetensors"), b"").unwrap();
        std::fs::write(root.join("notes.txt"), b"").unwrap();
        std::fs::write(root.join(".hidden"), b"").unwrap();
        let mut b = FileBrowser::open(Some(root), Pick::File);
        let labels: Vec<String> = b.items().into_iter().map(|i| b.label(i)).collect();
        assert_eq!(labels, ["../", "data/", "models/", "notes.txt"]);
        for c in "MOD".chars() {
            b.type_char(c);
        }
        assert_eq!(b.items(), [Item::Up, Item::Entry(1)]);
        b.move_by(1);
        assert_eq!(b.enter(), Outcome::Stay);
        assert_eq!(b.dir, root.join("models"));
        assert!(b.filter.is_empty());
        b.move_by(1);
        b.right();
        assert_eq!(b.dir, root.join("models/lite0"));
        b.move_by(1);
        assert_eq!(
            b.enter(),
            Outcome::Picked(root.join("models/lite0/a.safetensors"))
        );
        // Backspace with no filter goes up, the folder left selected.
        b.backspace();
        assert_eq!(b.dir, root.join("models"));
        assert_eq!(b.label(b.items()[b.selected]), "lite0/");
        // A folder can be picked where folders may be.
        let mut b = FileBrowser::open(Some(&root.join("data")), Pick::Folder);
        assert_eq!(b.enter(), Outcome::Picked(root.join("data")));
        // Typing selects the first match, not `./`: Enter opens it.
        let mut b = FileBrowser::open(Some(root), Pick::Folder);
        assert_eq!(b.label(b.items()[b.selected]), "./  (pick this folder)");
        for c in "dat".chars() {
            b.type_char(c);
        }
        assert_eq!(b.label(b.items()[b.selected]), "data/");
        b.type_char('x');
        b.backspace();
        assert_eq!(b.label(b.items()[b.selected]), "data/");
        assert_eq!(b.enter(), Outcome::Stay);
        assert_eq!(b.dir, root.join("data"));
        // A dataset row: list files and folders holding images only.
        std::fs::create_dir_all(root.join("data/empty")).unwrap();
        std::fs::create_dir_all(root.join("data/imgs/deeper")).unwrap();
        std::fs::write(root.join("data/imgs/deeper/a.JPG"), b"").unwrap();
        std::fs::write(root.join("data/val.txt"), b"").unwrap();
        std::fs::write(root.join("data/readme.md"), b"").unwrap();
        let mut b = FileBrowser::open(Some(&root.join("data")), Pick::Dataset);
        let labels: Vec<String> = b.items().into_iter().map(|i| b.label(i)).collect();
        assert_eq!(
            labels,
            [
                "./  (pick this folder)",
                "../",
                "empty/",
                "imgs/",
                "val.txt"
            ]
        );
        assert!(b
            .note
            .as_deref()
            .unwrap()
            .starts_with("1 other file(s) not shown"));
        assert_eq!(b.enter(), Outcome::Picked(root.join("data")));
        b.move_by(2);
        assert_eq!(b.enter(), Outcome::Stay);
        assert_eq!(b.dir, root.join("data/empty"));
        let labels: Vec<String> = b.items().into_iter().map(|i| b.label(i)).collect();
        assert_eq!(labels, ["../"], "a folder without images is not offered");
        assert!(b.note.as_deref().unwrap().starts_with("no images"));
        // An unreadable start falls back to the working folder.
        let b = FileBrowser::open(Some(&root.join("nothing/here")), Pick::Folder);
        assert_eq!(b.dir, std::env::current_dir().unwrap());
    }
}
