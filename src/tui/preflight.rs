//! The engine's own pre-run checks of the form's run (`engine::inspect`:
//! the sets, the checkpoint, the fit against the model, the class names,
//! each method's needs, and the model's weight layers for `layer=`), on a
//! worker thread: they read the checkpoint. The Plan panel says "Ready"
//! only when they pass.

use super::wake::{Queue, Wake, Worker};
use gradnorm_core::run::RunConfig;

/// A config and its checks (no problems: the run would start), with the
/// loaded model's stamp (which fits are for it) and weight layers.
pub type Answer = (RunConfig, gradnorm_engine::engine::Checks);

/// Checks configs, each once; inline (tests) or on a thread.
pub struct Checker {
    worker: Option<Worker<RunConfig, Answer>>,
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
            let checks = gradnorm_engine::engine::inspect(&config);
            (config, checks)
        });
        Checker {
            worker: Some(worker),
            asked: None,
        }
    }

    /// Asks about `config` unless it was the last one asked; an inline
    /// checker answers here.
    pub fn ask(&mut self, config: &RunConfig) -> Option<Answer> {
        if self.asked.as_ref() == Some(config) {
            return None;
        }
        self.asked = Some(config.clone());
        match &self.worker {
            Some(w) => {
                w.send(config.clone());
                None
            }
            None => Some((config.clone(), gradnorm_engine::engine::inspect(config))),
        }
    }

    /// Lets the last config be asked about again (files may have changed
    /// on disk since: a fit made, a checkpoint copied).
    pub fn forget(&mut self) {
        self.asked = None;
    }

    /// The answers that arrived.
    pub fn poll(&self) -> Vec<Answer> {
        self.worker
            .as_ref()
            .map_or_else(Vec::new, |w| w.replies().collect())
    }
}
