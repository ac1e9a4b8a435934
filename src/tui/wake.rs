//! How worker threads (engine forwarder, analysis, previews, counting) tell
//! the UI's event loop that something arrived: a `tokio::sync::Notify`. A
//! notification sent while the loop is busy is kept (one permit), so none
//! is lost; the loop then drains every channel without blocking.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use tokio::sync::Notify;

/// A handle that wakes the event loop; `Wake::none()` wakes nothing (tests
/// drive the app step by step).
#[derive(Clone, Default)]
pub struct Wake(Option<Arc<Notify>>);

impl Wake {
    pub fn new() -> (Wake, Arc<Notify>) {
        let n = Arc::new(Notify::new());
        (Wake(Some(n.clone())), n)
    }

    pub fn none() -> Wake {
        Wake(None)
    }

    pub fn wake(&self) {
        if let Some(n) = &self.0 {
            n.notify_one();
        }
    }
}

/// A worker thread that answers jobs and wakes the loop after each answer.
/// `Latest` drops queued jobs for the newest (scrolling or re-analysing
/// fast queues many requests; only the last matters); `Each` answers all.
pub struct Worker<J, R> {
    jobs: Sender<J>,
    replies: Receiver<R>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Latest,
    Each,
}

impl<J: Send + 'static, R: Send + 'static> Worker<J, R> {
    pub fn spawn(
        name: &str,
        queue: Queue,
        wake: Wake,
        mut work: impl FnMut(J) -> R + Send + 'static,
    ) -> Worker<J, R> {
        let (jobs, job_rx) = channel::<J>();
        let (reply_tx, replies) = channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(mut job) = job_rx.recv() {
                    if queue == Queue::Latest {
                        while let Ok(newer) = job_rx.try_recv() {
                            job = newer;
                        }
                    }
                    if reply_tx.send(work(job)).is_err() {
                        return;
                    }
                    wake.wake();
                }
            })
            .unwrap_or_else(|e| panic!("spawning the {name} thread: {e}"));
        Worker { jobs, replies }
    }

    /// False when the worker is gone.
    pub fn send(&self, job: J) -> bool {
        self.jobs.send(job).is_ok()
    }

    /// The answers that arrived, oldest first, without waiting.
    pub fn replies(&self) -> std::sync::mpsc::TryIter<'_, R> {
        self.replies.try_iter()
    }
}
