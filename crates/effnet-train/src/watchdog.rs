//! A stall watchdog for training runs: if no training or validation step finishes within the
//! timeout, it reports and ends the process instead of letting it wait forever.
//!
//! Written for remote devices: burn-remote 0.22.1 can lose a race on a server (a session thread
//! panics with "Should have handle for tensor ..." when an op arrives before the transfer of its
//! input), and the driver then waits for a reply that never comes, with no error and no
//! timeout of its own. Checkpoints are complete or ignored (see [`crate::trainer`]), so ending
//! the process loses nothing that `--resume` cannot pick up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Shared progress clock: the time of the last [`Heartbeat::beat`].
#[derive(Clone, Debug)]
pub struct Heartbeat {
    start: Instant,
    /// Milliseconds after `start` of the last beat.
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    fn new() -> Self {
        Self { start: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    /// Records progress now.
    pub fn beat(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn since_last(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The running watchdog; dropping it stops the watching.
pub struct Watchdog {
    heartbeat: Heartbeat,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Watches for `timeout` without a beat, then calls `on_stall` with the time since the last
    /// beat (once; the watching ends there). The clock starts now.
    pub fn start(timeout: Duration, on_stall: impl FnOnce(Duration) + Send + 'static) -> Self {
        let heartbeat = Heartbeat::new();
        let stop = Arc::new(AtomicBool::new(false));
        let (hb, st) = (heartbeat.clone(), stop.clone());
        // Checks a few times per timeout, at most once a second (and at least every 10 ms).
        let tick = (timeout / 8).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let thread = std::thread::Builder::new()
            .name("effnet-watchdog".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    let idle = hb.since_last();
                    if idle >= timeout {
                        on_stall(idle);
                        return;
                    }
                    std::thread::park_timeout(tick);
                }
            })
            .expect("spawning the watchdog thread");
        Self { heartbeat, stop, thread: Some(thread) }
    }

    /// The clock that training steps beat.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn fires_once_without_beats_and_reports_the_idle_time() {
        let (tx, rx) = mpsc::channel();
        let _w = Watchdog::start(Duration::from_millis(100), move |idle| tx.send(idle).unwrap());
        let idle = rx.recv_timeout(Duration::from_secs(5)).expect("the watchdog fired");
        assert!(idle >= Duration::from_millis(100), "{idle:?}");
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "fired twice");
    }

    #[test]
    fn beats_keep_it_quiet_and_dropping_it_stops_it() {
        let (tx, rx) = mpsc::channel();
        let w = Watchdog::start(Duration::from_millis(300), move |idle| tx.send(idle).unwrap());
        let hb = w.heartbeat();
        for _ in 0..12 {
            std::thread::sleep(Duration::from_millis(50));
            hb.beat();
        }
        assert!(rx.try_recv().is_err(), "fired although steps kept finishing");
        drop(w);
        // The thread ended with the drop; without it the 300 ms would have run out by now.
        assert!(rx.recv_timeout(Duration::from_millis(600)).is_err(), "fired after the drop");
    }
}
