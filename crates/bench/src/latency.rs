//! From publish times and arrival times to latency percentiles and the
//! spread between subscribers. Free of I/O: times are nanoseconds on one
//! monotonic clock, taken by the callers.

use std::collections::HashMap;

/// A message's identity in a run: a block's `(round, author)`, or a peer
/// message's sequence number.
pub type Key = u64;

/// The key of block `(round, author)`.
pub fn block_key(round: u64, author: u32) -> Key {
    (round << 16) | u64::from(author)
}

/// The round of a block's key.
pub fn round_of(key: Key) -> u64 {
    key >> 16
}

/// When each message arrived at one subscriber.
pub type Arrivals = Vec<(Key, u64)>;

/// Percentiles of a set of durations, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    /// Of `samples`, which it sorts.
    pub fn of(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        Percentiles {
            count: samples.len(),
            p50: quantile(samples, 0.5),
            p99: quantile(samples, 0.99),
            p999: quantile(samples, 0.999),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

/// The `q` quantile of sorted `samples` (nearest rank); 0 if empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Publish → arrival, every subscriber's every message.
    pub latencies: Vec<u64>,
    /// Per message that every subscriber got: last arrival − first.
    pub spreads: Vec<u64>,
    /// Messages published in the window.
    pub published: usize,
    /// Subscribers that got every message published in the window.
    pub complete: usize,
}

impl Report {
    /// Measures the messages published in `window` (nanoseconds, start
    /// inclusive, end exclusive). `published` may hold others; arrivals of
    /// messages outside the window are ignored.
    pub fn new(published: &[(Key, u64)], subscribers: &[Arrivals], window: (u64, u64)) -> Self {
        let sent: HashMap<Key, u64> = published
            .iter()
            .filter(|(_, at)| (window.0..window.1).contains(at))
            .copied()
            .collect();
        let mut report = Report {
            published: sent.len(),
            ..Report::default()
        };
        // Per message: (subscribers that got it, first arrival, last).
        let mut seen: HashMap<Key, (usize, u64, u64)> = HashMap::with_capacity(sent.len());
        for arrivals in subscribers {
            let mut got = 0;
            for (key, at) in arrivals {
                let Some(published) = sent.get(key) else {
                    continue;
                };
                got += 1;
                report.latencies.push(at.saturating_sub(*published));
                let entry = seen.entry(*key).or_insert((0, *at, *at));
                entry.0 += 1;
                entry.1 = entry.1.min(*at);
                entry.2 = entry.2.max(*at);
            }
            if got == sent.len() {
                report.complete += 1;
            }
        }
        report.spreads = seen
            .values()
            .filter(|(count, _, _)| *count == subscribers.len())
            .map(|(_, first, last)| last - first)
            .collect();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut samples: Vec<u64> = (1..=1000).rev().collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!(
            p,
            Percentiles {
                count: 1000,
                p50: 500,
                p99: 990,
                p999: 999,
                max: 1000
            }
        );
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(quantile(&[7], 0.999), 7);
    }

    #[test]
    fn a_report_counts_the_window_only_and_spreads_over_all_subscribers() {
        // Messages 1 and 2 in the window, 3 after it.
        let published = [(1, 100), (2, 200), (3, 1_000)];
        let a = vec![(1, 110), (2, 260), (3, 1_010)];
        // b misses message 2.
        let b = vec![(1, 150), (3, 1_020)];
        let report = Report::new(&published, &[a, b], (0, 500));
        assert_eq!(report.published, 2);
        assert_eq!(report.complete, 1);
        let mut latencies = report.latencies.clone();
        latencies.sort_unstable();
        assert_eq!(latencies, vec![10, 50, 60]);
        // Only message 1 reached both: spread 150 - 110.
        assert_eq!(report.spreads, vec![40]);
    }

    #[test]
    fn block_keys_are_distinct_per_round_and_author() {
        assert_ne!(block_key(1, 2), block_key(2, 1));
        assert_eq!(block_key(3, 0x00ff), (3 << 16) | 0xff);
        assert_eq!(round_of(block_key(3, 0x00ff)), 3);
    }
}
