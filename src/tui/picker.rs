//! Choosers for the setup form: a popup list filtered as the user types
//! (model, checkpoint, dataset, device), and path completion for typed
//! paths (Tab, as a shell does).

use std::path::{Path, PathBuf};

/// A popup list with type-to-filter. Enter picks the highlighted item, or,
/// when nothing matches and free text is allowed, the text typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Picker {
    pub title: String,
    pub items: Vec<String>,
    pub filter: String,
    /// Index into `matches()`.
    pub selected: usize,
    /// Whether text that matches nothing may be picked (a path, a device).
    pub free_text: bool,
}

/// What Enter in a picker gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked {
    Item(usize),
    Text(String),
}

impl Picker {
    pub fn new(title: impl Into<String>, items: Vec<String>, current: Option<usize>) -> Picker {
        Picker {
            title: title.into(),
            items,
            filter: String::new(),
            selected: current.unwrap_or(0),
            free_text: false,
        }
    }

    pub fn with_free_text(mut self) -> Picker {
        self.free_text = true;
        self
    }

    /// Items whose text holds every word of the filter (any case), in order.
    pub fn matches(&self) -> Vec<usize> {
        let words: Vec<String> = self
            .filter
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        (0..self.items.len())
            .filter(|&i| {
                let item = self.items[i].to_lowercase();
                words.iter().all(|w| item.contains(w.as_str()))
            })
            .collect()
    }

    pub fn type_char(&mut self, c: char) {
        self.filter.push(c);
        self.selected = 0;
    }

    pub fn backspace(&mut self) {
        self.filter.pop();
        self.selected = 0;
    }

    pub fn move_by(&mut self, delta: isize) {
        let n = self.matches().len();
        if n > 0 {
            self.selected = (self.selected as isize + delta).rem_euclid(n as isize) as usize;
        }
    }

    /// A move or an edit of the filter; false for other actions.
    pub fn edit(&mut self, action: crate::tui::keymap::Action) -> bool {
        use crate::tui::keymap::{list_step, Action};
        if let Some(step) = list_step(action) {
            self.move_by(step);
            return true;
        }
        match action {
            Action::EditBackspace => self.backspace(),
            Action::EditClear => {
                self.filter.clear();
                self.selected = 0;
            }
            _ => return false,
        }
        true
    }

    /// The highlighted item, or the typed text when allowed.
    pub fn pick(&self) -> Option<Picked> {
        let m = self.matches();
        match m.get(self.selected.min(m.len().saturating_sub(1))) {
            Some(&i) => Some(Picked::Item(i)),
            None if self.free_text && !self.filter.trim().is_empty() => {
                Some(Picked::Text(self.filter.trim().to_string()))
            }
            None => None,
        }
    }
}

/// Completes `text` as a path: to the one entry that fits (a folder gets
/// its `/`), or to the longest prefix all fitting entries share. Returns
/// the new text and the names that fit (folders with `/`), sorted.
pub fn complete_path(text: &str) -> (String, Vec<String>) {
    let (dir, prefix) = match text.rfind('/') {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => ("", text),
    };
    let read_from = if dir.is_empty() {
        Path::new(".")
    } else {
        Path::new(dir)
    };
    let Ok(entries) = std::fs::read_dir(read_from) else {
        return (text.to_string(), Vec::new());
    };
    let mut fits: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let hidden = name.starts_with('.') && !prefix.starts_with('.');
            (!hidden && name.starts_with(prefix)).then(|| {
                let is_dir = PathBuf::from(read_from).join(&name).is_dir();
                if is_dir {
                    format!("{name}/")
                } else {
                    name
                }
            })
        })
        .collect();
    fits.sort();
    let completed = match fits.as_slice() {
        [] => prefix.to_string(),
        [one] => one.clone(),
        many => {
            let first = &many[0];
            let mut len = first.len();
            for other in &many[1..] {
                let same = first.bytes().zip(other.bytes()).take_while(|(a, b)| a == b);
                len = len.min(same.count());
            }
            while !first.is_char_boundary(len) {
                len -= 1;
            }
            first[..len].to_string()
        }
    };
    (format!("{dir}{completed}"), fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_by_words_and_pick_free_text() {
        let items = ["BiT-S-R101x1", "efficientnet-lite0", "efficientnet-lite4"];
        let mut p = Picker::new("model", items.map(String::from).to_vec(), None);
        for c in "lite 4".chars() {
            p.type_char(c);
        }
        assert_eq!(p.matches(), [2]);
        assert_eq!(p.pick(), Some(Picked::Item(2)));
        p.type_char('x');
        assert_eq!(p.pick(), None);
        let p = Picker {
            free_text: true,
            ..p
        };
        assert_eq!(p.pick(), Some(Picked::Text("lite 4x".into())));
    }

    #[test]
    fn completes_unique_entries_and_common_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("models/lite0")).unwrap();
        std::fs::write(root.join("models/lite0/a.safetensors"), b"").unwrap();
        std::fs::write(root.join("models/lite0/ab.safetensors"), b"").unwrap();
        std::fs::write(root.join("models/.hidden"), b"").unwrap();
        let base = root.display().to_string();
        let (t, fits) = complete_path(&format!("{base}/mo"));
        assert_eq!(
            (t, fits),
            (format!("{base}/models/"), vec!["models/".to_string()])
        );
        let (t, fits) = complete_path(&format!("{base}/models/"));
        assert_eq!((t, fits.len()), (format!("{base}/models/lite0/"), 1));
        let (t, fits) = complete_path(&format!("{base}/models/lite0/"));
        assert_eq!(t, format!("{base}/models/lite0/a"));
        assert_eq!(fits, ["a.safetensors", "ab.safetensors"]);
        let (t, _) = complete_path(&format!("{base}/models/lite0/ab"));
        assert_eq!(t, format!("{base}/models/lite0/ab.safetensors"));
        let (t, fits) = complete_path(&format!("{base}/nothing/x"));
        assert_eq!((t, fits.len()), (format!("{base}/nothing/x"), 0));
    }
}
