//! The prefetching loader: decodes and preprocesses batches on a pool of
//! worker threads while the consumer (the model) works on earlier ones.
//!
//! A producer thread keeps a small window of batches in flight on a rayon
//! pool (so idle workers steal images of the next batch instead of waiting
//! for the slowest image of the current one), and hands finished batches to
//! the consumer in order through a channel bounded at `prefetch`. Memory is
//! therefore bounded whatever the dataset's size, and buffers the consumer
//! hands back (`Loader::recycle`) are reused. Unreadable files are
//! recorded as failures, never replaced by other images (the seed's loader
//! substitutes a random image).
//!
//! Every image read is fingerprinted from the bytes it was decoded from, and
//! an image whose bytes match the fingerprint the caller expected (a record
//! the run store already has) is not decoded at all: the run store's reuse
//! costs one read per known image, in the workers, batch by batch.

use super::dataset::Item;
use super::image::{decode_rgb, to_input_into};
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use gradnorm_core::run::InputSpec;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoaderConfig {
    pub input: InputSpec,
    /// Images per batch (at least 1).
    pub batch: usize,
    /// Decoding threads; 0 = every core.
    pub workers: usize,
    /// Finished batches waiting for the consumer (at least 1). At most
    /// `prefetch + 3` batches exist at once (those, two being decoded, the
    /// consumer's), each `batch * 3 * size * size * 4` bytes.
    pub prefetch: usize,
}

/// Consecutive items, preprocessed.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Indices into the items of the images in `data`, ascending.
    pub indices: Vec<usize>,
    /// `indices.len() * 3 * size * size` values, NCHW, normalized.
    pub data: Vec<f32>,
    /// Items of this batch that could not be read or decoded, with why.
    pub failures: Vec<(usize, String)>,
    /// The content fingerprint of each image in `data` (as `indices`).
    pub fingerprints: Vec<String>,
    /// Items whose bytes had the expected fingerprint: read, not decoded.
    pub matched: Vec<usize>,
}

/// An image's content fingerprint: its size and CRC-32, `SIZE-CRC`.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("{}-{:08x}", bytes.len(), crc32fast::hash(bytes))
}

/// Per item, the fingerprint whose bytes need no decoding (see `Batch::matched`).
pub type Expected = Arc<[Option<String>]>;

/// An iterator over the batches, in order. Stops early when `cancel` is
/// set; dropping it stops the background work.
pub struct Loader {
    rx: Option<Receiver<Batch>>,
    /// Buffers handed back by the consumer, for reuse.
    spare: Sender<Vec<f32>>,
    cancel: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    remaining: usize,
}

/// How often blocked threads look at the cancel flag.
const POLL: Duration = Duration::from_millis(20);

/// Starts loading `items` in batches of `cfg.batch`.
pub fn batches(items: Arc<[Item]>, cfg: LoaderConfig, cancel: Arc<AtomicBool>) -> Loader {
    batches_checked(items, None, cfg, cancel)
}

/// [`batches`], where an item whose bytes have its `expected` fingerprint is
/// reported in `Batch::matched` instead of being decoded.
pub fn batches_checked(
    items: Arc<[Item]>,
    expected: Option<Expected>,
    cfg: LoaderConfig,
    cancel: Arc<AtomicBool>,
) -> Loader {
    let cfg = LoaderConfig {
        batch: cfg.batch.max(1),
        prefetch: cfg.prefetch.max(1),
        workers: match cfg.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        },
        ..cfg
    };
    let remaining = items.len().div_ceil(cfg.batch);
    let (tx, rx) = crossbeam_channel::bounded(cfg.prefetch);
    let (spare, spares) = crossbeam_channel::bounded(cfg.prefetch + 3);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (cancel, stop) = (cancel.clone(), stop.clone());
        std::thread::Builder::new()
            .name("data-loader".into())
            .spawn(move || produce(items, expected, cfg, tx, spares, cancel, stop))
            .expect("spawn the loader thread")
    };
    Loader {
        rx: Some(rx),
        spare,
        cancel,
        stop,
        thread: Some(thread),
        remaining,
    }
}

impl Iterator for Loader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let rx = self.rx.as_ref()?;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                self.shutdown();
                return None;
            }
            match rx.recv_timeout(POLL) {
                Ok(batch) => {
                    self.remaining -= 1;
                    return Some(batch);
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    self.shutdown();
                    return None;
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.rx {
            Some(_) => (0, Some(self.remaining)),
            None => (0, Some(0)),
        }
    }
}

impl Loader {
    /// Hands a batch's `data` back once it is no longer needed (say, after
    /// copying it to the device), so that a later batch reuses the memory:
    /// fresh memory costs about as much as preprocessing at 480 x 480.
    /// Optional; extra buffers are dropped.
    pub fn recycle(&self, data: Vec<f32>) {
        let _ = self.spare.try_send(data);
    }

    /// Stops the producer and waits for it; the workers finish the image
    /// at hand and skip the rest.
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn produce(
    items: Arc<[Item]>,
    expected: Option<Expected>,
    cfg: LoaderConfig,
    tx: Sender<Batch>,
    spares: Receiver<Vec<f32>>,
    cancel: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let halt = || cancel.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.workers)
        .thread_name(|i| format!("data-worker-{i}"))
        // Without a handler a panic in `spawn` aborts the process (and
        // leaves the TUI's terminal raw); batches catch their own below.
        .panic_handler(|_| tracing::error!("a decoding worker panicked"))
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            // Without threads every item fails; the consumer still learns why.
            let reason = format!("cannot start the decoding threads: {e}");
            for start in (0..items.len()).step_by(cfg.batch) {
                let end = (start + cfg.batch).min(items.len());
                let failures = (start..end).map(|i| (i, reason.clone())).collect();
                if tx
                    .send(Batch {
                        failures,
                        ..Batch::default()
                    })
                    .is_err()
                {
                    return;
                }
            }
            return;
        }
    };
    let n_batches = items.len().div_ceil(cfg.batch);
    // Two batches in flight let idle workers start the next one.
    let window = 2;
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<(usize, Batch)>();
    let mut ready = BTreeMap::new();
    let (mut spawned, mut sent) = (0usize, 0usize);
    while sent < n_batches {
        while spawned < n_batches && spawned < sent + window {
            let (items, done_tx, spares) = (items.clone(), done_tx.clone(), spares.clone());
            let expected = expected.clone();
            let (cancel, stop) = (cancel.clone(), stop.clone());
            let k = spawned;
            pool.spawn(move || {
                let halt = || cancel.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
                let start = k * cfg.batch;
                let end = (start + cfg.batch).min(items.len());
                let buffer = spares.try_recv().unwrap_or_default();
                // A panic (a bug, or a decoder crashing on malformed data)
                // fails this batch's files instead of the whole run.
                let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let expected = expected.as_deref().map(|e| &e[start..end]);
                    build(&items, start..end, expected, &cfg.input, buffer, &halt)
                }))
                .unwrap_or_else(|_| Batch {
                    failures: (start..end)
                        .map(|i| {
                            (
                                i,
                                "internal error while decoding (a bug: see the log)".into(),
                            )
                        })
                        .collect(),
                    ..Batch::default()
                });
                let _ = done_tx.send((k, batch));
            });
            spawned += 1;
        }
        // Wait for the next batch in order, watching the flags.
        while !ready.contains_key(&sent) {
            if halt() {
                return;
            }
            match done_rx.recv_timeout(POLL) {
                Ok((k, batch)) => {
                    ready.insert(k, batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let mut batch = ready.remove(&sent).expect("checked above");
        loop {
            if halt() {
                return;
            }
            match tx.send_timeout(batch, POLL) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(b)) => batch = b,
                Err(SendTimeoutError::Disconnected(_)) => return,
            }
        }
        sent += 1;
    }
}

/// What became of one item of a batch.
enum Outcome {
    /// Decoded into its slot; the fingerprint of its bytes.
    Decoded(String),
    /// Its bytes had the expected fingerprint: not decoded.
    Matched,
    Failed(String),
}

/// Decodes items `range` in parallel (on the current rayon pool) into one
/// batch, in `data` (a recycled buffer, or an empty one); failed images are
/// left out and recorded, matched ones (`expected`, per item of the range)
/// left out and listed.
fn build(
    items: &[Item],
    range: std::ops::Range<usize>,
    expected: Option<&[Option<String>]>,
    input: &InputSpec,
    mut data: Vec<f32>,
    halt: &(dyn Fn() -> bool + Sync),
) -> Batch {
    let per = 3 * input.size * input.size;
    let start = range.start;
    // Every kept slot is overwritten; zeroing a reused buffer is cheap.
    data.clear();
    data.resize(range.len() * per, 0.0);
    let outcomes: Vec<Outcome> = data
        .par_chunks_mut(per)
        .enumerate()
        .map(|(j, slot)| {
            if halt() {
                return Outcome::Failed("cancelled".to_string());
            }
            let item = &items[start + j];
            let bytes = match std::fs::read(&item.path) {
                Ok(b) => b,
                Err(e) => {
                    return Outcome::Failed(format!("cannot read: {}", crate::error::io_reason(&e)))
                }
            };
            let fp = fingerprint(&bytes);
            if expected.and_then(|e| e[j].as_ref()) == Some(&fp) {
                return Outcome::Matched;
            }
            match decode_rgb(&bytes) {
                Ok(img) => {
                    to_input_into(&img, input, slot);
                    Outcome::Decoded(fp)
                }
                Err(reason) => Outcome::Failed(reason),
            }
        })
        .collect();
    let mut batch = Batch::default();
    for (j, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Decoded(fp) => {
                // Close the gaps left by failures and matches.
                let dst = batch.indices.len();
                if dst != j {
                    data.copy_within(j * per..(j + 1) * per, dst * per);
                }
                batch.indices.push(start + j);
                batch.fingerprints.push(fp);
            }
            Outcome::Matched => batch.matched.push(start + j),
            Outcome::Failed(reason) => batch.failures.push((start + j, reason)),
        }
    }
    data.truncate(batch.indices.len() * per);
    batch.data = data;
    batch
}
