//! Batch sizes and command rates: pure rules, no I/O.

use std::time::Instant;

/// The design's adaptive batch size: large batches when far behind, single
/// items near the tip for latency.
pub fn batch_size_for_lag(lag: u64) -> usize {
    match lag {
        l if l > 1000 => 100,
        l if l > 100 => 20,
        l if l > 10 => 5,
        _ => 1,
    }
}

/// The lag rule's size capped by the subscriber's hint (0: no hint).
pub fn batch_size(lag: u64, preferred: u32) -> usize {
    let size = batch_size_for_lag(lag);
    if preferred == 0 {
        size
    } else {
        size.min(preferred as usize)
    }
}

/// Counts items into a batch under a byte cap: the first item is always
/// taken, even alone over the cap, so that no item can block a stream.
pub struct ByteBudget {
    max_bytes: usize,
    used: usize,
    items: usize,
}

impl ByteBudget {
    pub fn new(max_bytes: usize) -> Self {
        ByteBudget {
            max_bytes,
            used: 0,
            items: 0,
        }
    }

    /// Takes an item of `bytes` if it fits, or if the batch is empty.
    pub fn take(&mut self, bytes: usize) -> bool {
        if self.items > 0 && self.used + bytes > self.max_bytes {
            return false;
        }
        self.used += bytes;
        self.items += 1;
        true
    }

    pub fn used(&self) -> usize {
        self.used
    }
}

/// A token bucket: `rate` commands per second sustained, `burst` at once.
/// Time is an input.
pub struct CommandLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl CommandLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        CommandLimiter {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: None,
        }
    }

    /// Whether a command at `now` is within the limit (and counts it).
    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lag_thresholds_match_the_design() {
        let cases = [
            (0, 1),
            (10, 1),
            (11, 5),
            (100, 5),
            (101, 20),
            (1000, 20),
            (1001, 100),
            (u64::MAX, 100),
        ];
        for (lag, size) in cases {
            assert_eq!(batch_size_for_lag(lag), size, "lag {lag}");
        }
        assert_eq!(batch_size(5_000, 0), 100);
        assert_eq!(batch_size(5_000, 7), 7);
        assert_eq!(batch_size(0, 7), 1);
    }

    #[test]
    fn byte_budget_caps_but_never_starves() {
        let mut budget = ByteBudget::new(100);
        assert!(budget.take(150), "a lone oversized item goes alone");
        assert!(!budget.take(1));
        let mut budget = ByteBudget::new(100);
        assert!(budget.take(60));
        assert!(budget.take(40));
        assert!(!budget.take(1));
        assert_eq!(budget.used(), 100);
    }

    #[test]
    fn limiter_allows_bursts_then_the_sustained_rate() {
        let start = Instant::now();
        let mut limiter = CommandLimiter::new(10, 3);
        assert!(limiter.allow(start));
        assert!(limiter.allow(start));
        assert!(limiter.allow(start));
        assert!(!limiter.allow(start));
        // 100 ms at 10/s refills one token.
        assert!(limiter.allow(start + Duration::from_millis(100)));
        assert!(!limiter.allow(start + Duration::from_millis(100)));
        // Refills stop at the burst.
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| limiter.allow(later)));
        assert!(!limiter.allow(later));
    }
}
