//! How the TUI starts an evaluation: a `Launcher` turns a `RunConfig` into a
//! running session whose events arrive on a channel. The real launcher is
//! the engine's thread; tests plug in deterministic ones.

use crate::engine::{Event, RunConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// A run in progress: its events and its cancel flag.
pub struct RunSession {
    pub events: Receiver<Event>,
    pub cancel: Arc<AtomicBool>,
}

impl RunSession {
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
    RunSession { events: rx, cancel }
}

/// The engine on a background thread.
pub fn engine_launcher() -> impl Launcher {
    |config: RunConfig| {
        spawn_with(move |_cancel, emit| {
            let _ = config;
            emit(Event::Failed(
                "the evaluation engine is not built into this version yet".into(),
            ));
        })
    }
}
