//! A fit made from the form: the engine's `make_fit` (the same as
//! `gradnorm-tui fit`) on its own thread, telling its progress through a
//! channel and waking the loop; cancelled between batches.

use super::discover::FoundFit;
use super::wake::Wake;
use gradnorm_engine::engine::fit::{make_fit, FitJob, FitStep};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::Arc;

/// What the fit's thread says.
#[derive(Debug, Clone, PartialEq)]
pub enum FitMsg {
    Step(FitStep),
    /// Written: the fit as a menu lists it, and how many images were
    /// unreadable (skipped).
    Made(FoundFit, usize),
    Failed(String),
}

/// A fit being made.
pub struct FitTask {
    rx: Receiver<FitMsg>,
    cancel: Arc<AtomicBool>,
    pub out: PathBuf,
    /// The set it reads, by name.
    pub set: String,
}

impl FitTask {
    /// Starts `job` on a thread; `wake` is told after each message.
    pub fn spawn(job: FitJob, wake: Wake) -> std::io::Result<FitTask> {
        let (tx, rx) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let out = job.out.clone();
        let set = job
            .sets
            .first()
            .map_or_else(String::new, |s| s.name.clone());
        let flag = cancel.clone();
        std::thread::Builder::new()
            .name("gradnorm-fit".into())
            .spawn(move || {
                let send = |m: FitMsg| {
                    let _ = tx.send(m);
                    wake.wake();
                };
                let made = make_fit(&job, flag, &mut |step| send(FitMsg::Step(step)));
                send(match made {
                    Ok(m) => {
                        let info = gradnorm_engine::score::fit::Fit::peek(&m.out);
                        match info {
                            Ok(info) => FitMsg::Made(
                                FoundFit {
                                    path: m.out.clone(),
                                    info,
                                },
                                m.skipped.len(),
                            ),
                            Err(e) => FitMsg::Failed(e.to_string()),
                        }
                    }
                    Err(e) => FitMsg::Failed(e.to_string()),
                });
            })?;
        Ok(FitTask {
            rx,
            cancel,
            out,
            set,
        })
    }

    /// Stops it after the current batch (it then says `Failed`).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The messages that arrived; a thread gone without a last word says
    /// `Failed`.
    pub fn poll(&self) -> Vec<FitMsg> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(m) => out.push(m),
                Err(TryRecvError::Empty) => return out,
                Err(TryRecvError::Disconnected) => {
                    if !out
                        .iter()
                        .any(|m| matches!(m, FitMsg::Made(..) | FitMsg::Failed(_)))
                    {
                        out.push(FitMsg::Failed("the fit stopped without a word".into()));
                    }
                    return out;
                }
            }
        }
    }
}
