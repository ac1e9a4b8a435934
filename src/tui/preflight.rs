//! The engine's own pre-run checks of the form's run (`engine::preflight`:
//! the sets, the checkpoint, the fit against the model, the class names,
//! each method's needs, and the model's weight layers for `layer=`), on a
//! worker thread: they read the checkpoint. The Plan panel says "Ready"
//! only when they pass.

use super::wake::{Queue, Wake, Worker};
use gradnorm_core::run::RunConfig;
use gradnorm_engine::engine::Preflight;

/// A config and what its checks found (no problems: the run would start).
pub type Checked = (RunConfig, Preflight);

/// Checks configs, each once; inline (tests) or on a thread.
pub struct Checker {
    worker: Option<Worker<RunConfig, Checked>>,
    /// The last config asked about, so a form left alone is checked once.
    asked: Option<RunConfig>,
}

impl Checker {
    /// Answers at once, on the caller's thread.
    pub fn inline() -> Checker {
        Checker {
            worker: None,
            asked: None,
        }
    }

    /// Answers on its own thread (the newest config only), waking the loop.
    pub fn threaded(wake: Wake) -> Checker {
        let worker = Worker::spawn("gradnorm-check", Queue::Latest, wake, |config| {
            let found = gradnorm_engine::engine::preflight(&config);
            (config, found)
        });
        Checker {
            worker: Some(worker),
            asked: None,
        }
    }

    /// Asks about `config` unless it was the last one asked; an inline
    /// checker answers here.
    pub fn ask(&mut self, config: &RunConfig) -> Option<Checked> {
        if self.asked.as_ref() == Some(config) {
            return None;
        }
        self.asked = Some(config.clone());
        match &self.worker {
            Some(w) => {
                w.send(config.clone());
                None
            }
            None => Some((config.clone(), gradnorm_engine::engine::preflight(config))),
        }
    }

    /// Lets the last config be asked about again (files may have changed
    /// on disk since: a fit made, a checkpoint copied).
    pub fn forget(&mut self) {
        self.asked = None;
    }

    /// The answers that arrived.
    pub fn poll(&self) -> Vec<Checked> {
        self.worker
            .as_ref()
            .map_or_else(Vec::new, |w| w.replies().collect())
    }
}
