//! How the TUI starts an evaluation: a `Launcher` turns a `RunConfig` into a
//! running session whose events arrive on a channel. The real launcher is
//! the engine's thread; tests plug in deterministic ones.

use super::wake::Wake;
use gradnorm_core::run::{Event, RunConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// A run in progress: its events and its cancel flag. Dropping it (quitting)
/// drops the engine's handle, which cancels the run.
pub struct RunSession {
    events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    /// What must live as long as the session (the engine's handle).
    _guard: Option<Box<dyn Send>>,
}

impl RunSession {
    /// A session fed by a channel (tests, other engines).
    pub fn new(events: Receiver<Event>, cancel: Arc<AtomicBool>) -> RunSession {
        RunSession {
            events,
            cancel,
            _guard: None,
        }
    }

    /// The engine's run; dropping the session cancels it.
    pub fn from_engine(mut handle: gradnorm_engine::engine::RunHandle) -> RunSession {
        let (_, closed) = std::sync::mpsc::channel();
        let events = std::mem::replace(&mut handle.events, closed);
        RunSession {
            events,
            cancel: handle.cancel.clone(),
            _guard: Some(Box::new(handle)),
        }
    }

    /// The same session with every event also waking the UI's loop: a
    /// forwarding thread moves the events to a new channel and wakes `wake`
    /// after each (and once when the run's channel closes).
    pub fn waking(self, wake: Wake) -> RunSession {
        let (tx, rx) = std::sync::mpsc::channel();
        let source = self.events;
        std::thread::Builder::new()
            .name("gradnorm-events".into())
            .spawn(move || {
                while let Ok(e) = source.recv() {
                    if tx.send(e).is_err() {
                        return;
                    }
                    wake.wake();
                }
                drop(tx);
                wake.wake();
            })
            .expect("spawning the event forwarder");
        RunSession {
            events: rx,
            cancel: self.cancel,
            _guard: self._guard,
        }
    }

    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

pub trait Launcher {
    fn launch(&mut self, config: RunConfig) -> RunSession;
}

impl<F: FnMut(RunConfig) -> RunSession> Launcher for F {
    fn launch(&mut self, config: RunConfig) -> RunSession {
        self(config)
    }
}

/// Runs `work` on its own thread, handing it an emitter and the cancel flag.
pub fn spawn_with<W>(work: W) -> RunSession
where
    W: FnOnce(&AtomicBool, &mut dyn FnMut(Event)) + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    std::thread::Builder::new()
        .name("gradnorm-run".into())
        .spawn(move || {
            let mut emit = |e: Event| {
                let _ = tx.send(e);
            };
            work(&flag, &mut emit);
        })
        .expect("spawning the run thread");
    RunSession::new(rx, cancel)
}

/// The engine on a background thread, unrecorded.
pub fn engine_launcher() -> impl Launcher {
    |config: RunConfig| RunSession::from_engine(gradnorm_engine::engine::Run::new(config).spawn())
}
