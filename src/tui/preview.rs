//! Image previews for the browser: decoded and encoded for the terminal's
//! graphics protocol (kitty, sixel, iTerm2 or half-blocks) on a worker
//! thread, cached per file and size, so a 480px JPEG never stalls a frame.

use super::wake::{Queue, Worker};
use ratatui::layout::Size;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::Protocol;
use ratatui_image::Resize;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

type Key = (PathBuf, u16, u16);
type Done = (Key, Result<Protocol, String>);

/// How many encoded previews to keep.
const CACHE: usize = 48;

enum Mode {
    /// Decode on a worker; the newest request wins.
    Thread(Worker<Key, Done>),
    /// Decode at once (tests: deterministic frames).
    Inline,
    /// No previews (the picker could not be built).
    Off,
}

pub struct Previews {
    picker: Picker,
    mode: Mode,
    cache: HashMap<Key, Result<Protocol, String>>,
    order: VecDeque<Key>,
    pending: Option<Key>,
}

impl Previews {
    /// `wake` is told when a preview is ready.
    pub fn threaded(picker: Picker, wake: super::wake::Wake) -> Previews {
        let worker_picker = picker.clone();
        let worker = Worker::spawn("gradnorm-preview", Queue::Latest, wake, move |key: Key| {
            let result = encode(&worker_picker, &key.0, Size::new(key.1, key.2));
            (key, result)
        });
        Previews::with_mode(picker, Mode::Thread(worker))
    }

    pub fn inline(picker: Picker) -> Previews {
        Previews::with_mode(picker, Mode::Inline)
    }

    pub fn off() -> Previews {
        Previews::with_mode(Picker::halfblocks(), Mode::Off)
    }

    fn with_mode(picker: Picker, mode: Mode) -> Previews {
        Previews {
            picker,
            mode,
            cache: HashMap::new(),
            order: VecDeque::new(),
            pending: None,
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// The preview of `path` at `size`, once encoded.
    pub fn get(&self, path: &Path, size: Size) -> Option<&Result<Protocol, String>> {
        self.cache
            .get(&(path.to_path_buf(), size.width, size.height))
    }

    /// Asks for a preview (no-op when cached or already asked for).
    pub fn request(&mut self, path: &Path, size: Size) {
        if size.width == 0 || size.height == 0 {
            return;
        }
        let key = (path.to_path_buf(), size.width, size.height);
        if self.cache.contains_key(&key) || self.pending.as_ref() == Some(&key) {
            return;
        }
        match &self.mode {
            Mode::Thread(worker) => {
                if worker.send(key.clone()) {
                    self.pending = Some(key);
                }
            }
            Mode::Inline => {
                let result = encode(&self.picker, path, size);
                self.insert(key, result);
            }
            Mode::Off => {}
        }
    }

    /// Takes finished previews in; true when one arrived.
    pub fn poll(&mut self) -> bool {
        let mut arrived = Vec::new();
        if let Mode::Thread(worker) = &self.mode {
            arrived.extend(worker.replies());
        }
        let any = !arrived.is_empty();
        for (key, result) in arrived {
            if self.pending.as_ref() == Some(&key) {
                self.pending = None;
            }
            self.insert(key, result);
        }
        any
    }

    fn insert(&mut self, key: Key, result: Result<Protocol, String>) {
        if self.cache.insert(key.clone(), result).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CACHE {
            if let Some(old) = self.order.pop_front() {
                self.cache.remove(&old);
            }
        }
    }
}

fn encode(picker: &Picker, path: &Path, size: Size) -> Result<Protocol, String> {
    let img = gradnorm_engine::data::image::load_rgb(path).map_err(|e| e.to_string())?;
    picker
        .new_protocol(
            image::DynamicImage::ImageRgb8(img),
            size,
            Resize::Scale(Some(ratatui_image::FilterType::Triangle)),
        )
        .map_err(|e| format!("{}: {e}", path.display()))
}
