//! How worker threads (engine forwarder, analysis, previews, counting) tell
//! the UI's event loop that something arrived: a `tokio::sync::Notify`. A
//! notification sent while the loop is busy is kept (one permit), so none
//! is lost; the loop then drains every channel without blocking.

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
