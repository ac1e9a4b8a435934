//! The one way to start a run: a [`Run`] built from its config, told how
//! (a cancel flag of the caller's, a shard, a recording, parameters in
//! memory), then run on this thread or spawned on its own. `eval`, the TUI,
//! `bench` and `fit` all start runs here; the store only records what it is
//! given, through [`Recording`].

use super::{execute, KnownRecords, RunOptions};
use crate::error::{Error, Result};
use crate::score::mahalanobis::MahalanobisParams;
use gradnorm_core::run::{Event, RunConfig, Shard};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};

/// Where a run's events are recorded as they come (the run store's
/// `Recorder`), and what it knows from earlier runs (resume and reuse).
pub trait Recording: KnownRecords + Send {
    /// Records one event.
    fn on(&mut self, event: &Event) -> Result<()>;
    /// The run's id in the store, once it has one.
    fn run_id(&self) -> Option<i64>;
    /// Marks the run stopped in `state` ("failed", ...).
    fn finish(&mut self, state: &str, error: Option<&str>) -> Result<()>;
    /// The shard the recording was opened for.
    fn shard(&self) -> Option<Shard>;
}

/// What a recorded run does when its recording fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Say so (a `Notice`) and go on unrecorded: the TUI, where the run on
    /// screen matters more than its record.
    Notice,
    /// Stop the run after the batch in flight and end it with the error
    /// (`Event::Failed`): `eval`, whose long runs are made for the record.
    Stop,
}

/// A run to start: its config and how it is carried out.
pub struct Run<'a> {
    config: RunConfig,
    cancel: Arc<AtomicBool>,
    shard: Option<Shard>,
    recording: Option<(Box<dyn Recording + 'a>, OnStoreError)>,
    mahalanobis: Option<&'a MahalanobisParams>,
    notice: Option<String>,
}

impl<'a> Run<'a> {
    /// `config`, unrecorded, with a cancel flag of its own.
    pub fn new(config: RunConfig) -> Self {
        Run {
            config,
            cancel: Arc::new(AtomicBool::new(false)),
            shard: None,
            recording: None,
            mahalanobis: None,
            notice: None,
        }
    }

    /// The caller's cancel flag (e.g. set by a signal): the run stops after
    /// the batch in flight.
    pub fn cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = flag;
        self
    }

    /// Only this shard of every set.
    pub fn shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// Records every event through `recording` (its shard is the run's) and
    /// reuses the records it knows.
    pub fn record(mut self, recording: impl Recording + 'a, on_error: OnStoreError) -> Self {
        self.shard = recording.shard();
        self.recording = Some((Box::new(recording), on_error));
        self
    }

    /// Mahalanobis's parameters in memory, for a `mahalanobis` given no
    /// file (bench's synthetic ones).
    pub fn mahalanobis(mut self, params: &'a MahalanobisParams) -> Self {
        self.mahalanobis = Some(params);
        self
    }

    /// A `Notice` the run's events begin with (e.g. why it is not recorded).
    pub fn notice(mut self, text: impl Into<String>) -> Self {
        self.notice = Some(text.into());
        self
    }

    /// Runs to the end on this thread, reporting through `emit`; returns
    /// the error that stopped it, if any.
    pub fn run(self, emit: &mut dyn FnMut(Event)) -> Result<()> {
        self.run_noting_id(&OnceLock::new(), emit)
    }

    fn run_noting_id(self, run_id: &OnceLock<i64>, emit: &mut dyn FnMut(Event)) -> Result<()> {
        let Run {
            config,
            cancel,
            shard,
            recording,
            mahalanobis,
            notice,
        } = self;
        if let Some(text) = notice {
            emit(Event::Notice(text));
        }
        let Some((recording, on_error)) = recording else {
            let options = RunOptions {
                shard,
                known: None,
                mahalanobis,
            };
            return execute(&config, options, &cancel, emit);
        };
        let recording = RefCell::new(recording);
        let mut store_error: Option<Error> = None;
        let mut known = Lookup(&recording);
        let options = RunOptions {
            shard,
            known: Some(&mut known),
            mahalanobis,
        };
        let result = execute(&config, options, &cancel, &mut |event: Event| {
            if store_error.is_none() {
                let mut r = recording.borrow_mut();
                match r.on(&event) {
                    Ok(()) => {
                        if let Some(id) = r.run_id() {
                            let _ = run_id.set(id);
                        }
                    }
                    Err(e) => {
                        match on_error {
                            OnStoreError::Notice => {
                                emit(Event::Notice(format!("recording stopped: {e}")));
                            }
                            OnStoreError::Stop => cancel.store(true, Ordering::Relaxed),
                        }
                        store_error = Some(e);
                    }
                }
            }
            emit(event);
        });
        if let Err(e) = &result {
            let _ = recording
                .borrow_mut()
                .finish("failed", Some(&e.to_string()));
        }
        result?;
        match store_error {
            Some(e) if on_error == OnStoreError::Stop => Err(Error::Invalid(format!(
                "recording the run (what was computed is in --out): {e}"
            ))),
            _ => Ok(()),
        }
    }
}

impl Run<'static> {
    /// Starts the run on a background thread; events arrive on the handle,
    /// an error as `Event::Failed` (then the channel closes).
    pub fn spawn(self) -> RunHandle {
        let (tx, rx) = std::sync::mpsc::channel();
        let cancel = self.cancel.clone();
        let run_id = Arc::new(OnceLock::new());
        let id = run_id.clone();
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let mut emit = |e: Event| {
                    let _ = tx.send(e);
                };
                if let Err(e) = self.run_noting_id(&id, &mut emit) {
                    tracing::error!("run failed: {e}");
                    let _ = tx.send(Event::Failed(e.to_string()));
                }
            })
            .expect("spawning the engine thread");
        RunHandle {
            events: rx,
            cancel,
            run_id,
            thread: Some(thread),
        }
    }
}

/// A run on its own thread.
pub struct RunHandle {
    pub events: Receiver<Event>,
    pub cancel: Arc<AtomicBool>,
    /// The run's id in the store, once a recorded run has started.
    pub run_id: Arc<OnceLock<i64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunHandle {
    /// Asks the run to stop after the batch in flight; what was computed stays.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Waits for the thread to end.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// The engine's view of a recording shared with the event sink.
struct Lookup<'r, 'a>(&'r RefCell<Box<dyn Recording + 'a>>);

impl KnownRecords for Lookup<'_, '_> {
    fn lookup(
        &mut self,
        dataset: usize,
        path: &std::path::Path,
        label: Option<usize>,
    ) -> Option<(String, gradnorm_core::run::ImageRecord)> {
        self.0.borrow_mut().lookup(dataset, path, label)
    }

    fn scored(&mut self, path: &std::path::Path, fingerprint: String) {
        self.0.borrow_mut().scored(path, fingerprint);
    }
}
