//! Ctrl-C, SIGTERM and SIGHUP as requests to stop. The first sets the run's
//! cancel flag (the engine stops after its batch and keeps what it
//! computed); a second asks the caller to stop waiting for the batch in
//! flight and finish with what it has. The exit status is 128 + the first
//! signal's number: 130 (Ctrl-C), 143 (SIGTERM), 129 (SIGHUP).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;

/// The signals received so far.
#[derive(Debug, Default)]
pub struct Interrupts {
    /// Set by the first signal; hand it to the engine.
    pub cancel: Arc<AtomicBool>,
    first: AtomicI32,
    count: AtomicUsize,
}

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

impl Interrupts {
    /// How many signals arrived.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The process exit status for an interrupted run (128 + the first
    /// signal), or None when no signal arrived.
    pub fn exit_status(&self) -> Option<u8> {
        match self.first.load(Ordering::SeqCst) {
            0 => None,
            sig => Some((128 + sig) as u8),
        }
    }

    /// Records a signal (what the listener does; public for tests and for
    /// callers with their own source of interrupts, such as a UI's key).
    pub fn record(&self, signal: i32) -> usize {
        let _ = self
            .first
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.cancel.store(true, Ordering::SeqCst);
        self.count.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// The signal's name as a user knows it.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "Ctrl-C",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// Listens for Ctrl-C, SIGTERM and SIGHUP on a thread of its own, calling
/// `on_signal(signal, count)` after recording each.
pub fn listen(on_signal: impl Fn(i32, usize) + Send + 'static) -> Arc<Interrupts> {
    let interrupts = Arc::new(Interrupts::default());
    let state = interrupts.clone();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{signal, SignalKind};
                    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                        signal(SignalKind::hangup()),
                    ) else {
                        tracing::warn!("cannot listen for signals");
                        return;
                    };
                    loop {
                        // Two signals may both be pending by the time this
                        // thread runs, and their order is lost: take them
                        // in the kernel's delivery order (lowest number
                        // first) rather than select!'s random one.
                        let sig = tokio::select! {
                            biased;
                            _ = hup.recv() => SIGHUP,
                            _ = int.recv() => SIGINT,
                            _ = term.recv() => SIGTERM,
                        };
                        let n = state.record(sig);
                        on_signal(sig, n);
                    }
                }
                #[cfg(not(unix))]
                while tokio::signal::ctrl_c().await.is_ok() {
                    let n = state.record(SIGINT);
                    on_signal(SIGINT, n);
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!("no signal handler: {e}");
    }
    interrupts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_decides_the_status() {
        let i = Interrupts::default();
        assert_eq!(i.exit_status(), None);
        assert_eq!(i.record(SIGTERM), 1);
        assert!(i.cancel.load(Ordering::SeqCst));
        assert_eq!(i.record(SIGINT), 2);
        assert_eq!(i.exit_status(), Some(143));
        assert_eq!(name(SIGHUP), "SIGHUP");
    }
}
