//! [`TestClock`]: a validator clock that the test moves.

use dagstream_validator::Clock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Unix milliseconds that only the test moves, directly or with a
/// [`Ticker`]. Clones share the time: validators on clones of one clock
/// produce the same chain at the same pace.
#[derive(Clone, Debug, Default)]
pub struct TestClock(Arc<AtomicU64>);

impl TestClock {
    pub fn at(now_ms: u64) -> Self {
        TestClock(Arc::new(AtomicU64::new(now_ms)))
    }

    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }

    /// This clock as a validator reads it.
    pub fn clock(&self) -> Clock {
        let time = self.0.clone();
        Arc::new(move || time.load(Ordering::Relaxed))
    }

    /// Advances the clock by `step_ms` every `every` of real time, until the
    /// ticker is dropped. Must be called inside a Tokio runtime.
    pub fn tick(&self, step_ms: u64, every: Duration) -> Ticker {
        let clock = self.clone();
        Ticker(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                clock.advance(step_ms);
            }
        }))
    }
}

/// Moves a [`TestClock`] until dropped.
#[derive(Debug)]
pub struct Ticker(JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}
