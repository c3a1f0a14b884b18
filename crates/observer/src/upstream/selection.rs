//! Which upstream to follow: the best one by probe, round-robin among
//! equals, backing off after failures and avoiding a faulty one for a
//! cool-down. Decisions take the time as an input; only [`probe_forever`]
//! does I/O, through [`probe`].

use super::connection::{probe, probe_channel, Probe};
use super::credentials::Credentials;
use super::transport::Transport;
use crate::config::ObserverConfig;
use dagstream_types::CommitIndex;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Most doublings of the backoff delay: 2^16 times the first delay is far
/// past any sensible cap, and bounding the shift keeps it from overflowing.
const MAX_DOUBLINGS: u32 = 16;

/// SplitMix64's finalizer: spreads a time, which in a simulation moves in
/// whole milliseconds, over all 64 bits.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The latest probe of each upstream, shared with the prober task.
pub type Probes = Arc<std::sync::Mutex<Vec<Option<Probe>>>>;

/// Which upstream to try next, and when.
pub struct Upstreams {
    pub addresses: Vec<String>,
    next: usize,
    failures: u32,
    faulty_until: Vec<Option<Instant>>,
    pub probes: Probes,
    /// When this selection began: the backoff's jitter comes from the time
    /// since, so it is the runtime's clock that varies it (and a simulation
    /// in virtual time replays it).
    created: Instant,
}

impl Upstreams {
    pub fn new(addresses: Vec<String>) -> Self {
        let faulty_until = vec![None; addresses.len()];
        let probes = Arc::new(std::sync::Mutex::new(vec![None; addresses.len()]));
        Upstreams {
            addresses,
            next: 0,
            failures: 0,
            faulty_until,
            probes,
            created: Instant::now(),
        }
    }

    /// The best upstream not in cool-down (or the one whose cool-down ends
    /// first), and how long to wait before trying it. Best is the highest
    /// probed commit, then the lowest latency; unprobed upstreams come
    /// after probed ones; ties go round-robin from the last one tried.
    pub fn pick(&mut self, now: Instant, config: &ObserverConfig) -> (usize, Duration) {
        let n = self.addresses.len();
        let probes = self.probes.lock().expect("probe lock poisoned").clone();
        let candidate = (0..n)
            .map(|i| (self.next + i) % n)
            .min_by_key(|&i| {
                let probe = probes[i].map(|p| (std::cmp::Reverse(p.highest_commit), p.latency));
                (
                    self.faulty_until[i].filter(|t| *t > now),
                    probe.is_none(),
                    probe,
                    (i + n - self.next) % n,
                )
            })
            .expect("at least one upstream");
        self.next = (candidate + 1) % n;
        let mut wait = self.faulty_until[candidate]
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        if self.failures > config.immediate_retries {
            let exponent = (self.failures - config.immediate_retries - 1).min(MAX_DOUBLINGS);
            let backoff = config
                .backoff_initial_ms
                .saturating_mul(1 << exponent)
                .min(config.backoff_max_ms);
            // Jitter of up to a quarter, so that observers that lost the
            // same upstream do not reconnect in lockstep.
            let since = now.saturating_duration_since(self.created).as_nanos() as u64;
            let jitter = mix(since) % (backoff / 4 + 1);
            wait = wait.max(Duration::from_millis(backoff - jitter));
        }
        (candidate, wait)
    }

    pub fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    pub fn faulty(&mut self, index: usize, now: Instant, config: &ObserverConfig) {
        self.failures = self.failures.saturating_add(1);
        self.faulty_until[index] = Some(now + Duration::from_millis(config.faulty_cooldown_ms));
    }

    pub fn progressed(&mut self) {
        self.failures = 0;
    }

    /// How far the best other upstream (not in cool-down) is ahead of
    /// `active`, by the latest probes.
    pub fn lead_over(&self, active: usize, active_highest: CommitIndex, now: Instant) -> u64 {
        let probes = self.probes.lock().expect("probe lock poisoned");
        probes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != active && self.faulty_until[*i].is_none_or(|t| t <= now))
            .filter_map(|(_, p)| p.map(|p| p.highest_commit.saturating_sub(active_highest)))
            .max()
            .unwrap_or(0)
    }
}

/// Probes every upstream, forever, every `interval`, each over one
/// connection kept for the purpose. With a single upstream there is no
/// choice to make: its open streams say how far it is, and nothing probes.
pub async fn probe_forever(
    addresses: Vec<String>,
    credentials: Credentials,
    transport: Transport,
    probes: Probes,
    interval: Duration,
) {
    if addresses.len() < 2 {
        return;
    }
    let channels: Vec<_> = addresses
        .iter()
        .map(|a| probe_channel(a, &credentials, &transport))
        .collect();
    loop {
        let round = channels
            .iter()
            .map(|channel| async move { probe(channel.clone()?).await });
        let results = futures::future::join_all(round).await;
        *probes.lock().expect("probe lock poisoned") = results;
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(n: usize) -> Upstreams {
        Upstreams::new(
            (0..n)
                .map(|i| format!("http://127.0.0.1:{}", 7000 + i))
                .collect(),
        )
    }

    #[test]
    fn retries_rotate_at_once_then_back_off_up_to_the_cap() {
        // Without probes, upstreams are tried in turn.
        let config = ObserverConfig::default();
        let now = Instant::now();
        let mut up = upstreams(2);
        let mut picks = Vec::new();
        let mut waits = Vec::new();
        for _ in 0..12 {
            let (index, wait) = up.pick(now, &config);
            picks.push(index);
            waits.push(wait);
            up.failed();
        }
        assert_eq!(picks, vec![0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
        // The first tries (failures 0..=3) are immediate.
        assert!(waits[..4].iter().all(|w| w.is_zero()), "{waits:?}");
        // Then 100 ms doubling (minus up to a quarter of jitter) to 10 s.
        for (i, wait) in waits[4..].iter().enumerate() {
            let full = (100u64 << i).min(10_000);
            let ms = wait.as_millis() as u64;
            assert!(
                ms <= full && ms >= full - full / 4,
                "try {i}: {ms} ms, expected ~{full}"
            );
        }
        up.progressed();
        assert!(
            up.pick(now, &config).1.is_zero(),
            "progress resets the backoff"
        );
    }

    #[test]
    fn a_faulty_upstream_is_avoided_during_its_cool_down() {
        let config = ObserverConfig::default();
        let now = Instant::now();
        let mut up = upstreams(3);
        assert_eq!(up.pick(now, &config).0, 0);
        up.faulty(0, now, &config);
        up.progressed();
        let next: Vec<usize> = (0..4).map(|_| up.pick(now, &config).0).collect();
        assert_eq!(next, vec![1, 2, 1, 2]);
        // When every upstream is faulty, the one whose cool-down ends first
        // is tried once it ends.
        up.faulty(1, now + Duration::from_secs(1), &config);
        up.faulty(2, now + Duration::from_secs(2), &config);
        up.progressed();
        let (index, wait) = up.pick(now, &config);
        assert_eq!(index, 0);
        assert_eq!(wait, Duration::from_millis(config.faulty_cooldown_ms));
        // Once its cool-down is over, it is available again at once.
        let later = now + Duration::from_millis(config.faulty_cooldown_ms);
        assert_eq!(up.pick(later, &config), (0, Duration::ZERO));
    }

    #[test]
    fn the_best_probed_upstream_is_preferred() {
        let config = ObserverConfig::default();
        let now = Instant::now();
        let mut up = upstreams(3);
        let probe = |highest_commit, ms| {
            Some(Probe {
                highest_commit,
                latency: Duration::from_millis(ms),
            })
        };
        *up.probes.lock().unwrap() = vec![probe(90, 1), probe(100, 9), probe(100, 3)];
        assert_eq!(up.pick(now, &config).0, 2, "highest commit, then latency");
        assert_eq!(up.lead_over(0, 90, now), 10);
        assert_eq!(up.lead_over(2, 100, now), 0);
        // A faulty upstream is not preferred, nor counted as ahead.
        up.faulty(2, now, &config);
        assert_eq!(up.pick(now, &config).0, 1);
        assert_eq!(up.lead_over(1, 100, now), 0);
        // Unprobed upstreams come after probed ones.
        let mut up = upstreams(2);
        *up.probes.lock().unwrap() = vec![None, probe(5, 50)];
        assert_eq!(up.pick(now, &config).0, 1);
    }
}
