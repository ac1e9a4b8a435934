//! How the TUI starts an evaluation: a `Launcher` turns a `RunConfig` into a
//! running session whose events arrive on a channel. The real launcher is
//! the engine's thread; tests plug in deterministic ones.

use crate::engine::RunHandle;
use crate::run::{Event, RunConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// Where a run's events come from: the engine's handle, or any channel.
pub trait Source: Send {
    fn events(&self) -> &Receiver<Event>;
    fn cancel_flag(&self) -> &AtomicBool;
}

struct Channel {
    events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
}

impl Source for Channel {
    fn events(&self) -> &Receiver<Event> {
        &self.events
    }
    fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }
}

impl Source for RunHandle {
    fn events(&self) -> &Receiver<Event> {
        &self.events
    }
    fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }
}

/// A run in progress: its events and its cancel flag. Dropping it (quitting)
/// drops the engine's handle, which cancels the run.
pub struct RunSession {
    source: Box<dyn Source>,
}

impl RunSession {
    /// A session fed by a channel (tests, other engines).
    pub fn new(events: Receiver<Event>, cancel: Arc<AtomicBool>) -> RunSession {
        RunSession::from_source(Channel { events, cancel })
    }

    pub fn from_source(source: impl Source + 'static) -> RunSession {
        RunSession {
            source: Box::new(source),
        }
    }

    pub fn events(&self) -> &Receiver<Event> {
        self.source.events()
    }

    pub fn cancel(&self) {
        self.source.cancel_flag().store(true, Ordering::Relaxed);
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

/// The engine on a background thread (`engine::spawn`).
pub fn engine_launcher() -> impl Launcher {
    |config: RunConfig| RunSession::from_source(crate::engine::spawn(config))
}
