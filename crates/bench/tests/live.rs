//! The live benchmark's runs at the small profile: every block published in
//! the window reaches every subscriber once, and is measured once.

use dagstream_bench::live::{self, Kind, LiveConfig};
use dagstream_sim::Profile;
use std::time::Duration;

fn config() -> LiveConfig {
    LiveConfig {
        profile: Profile::Small,
        warmup: Duration::from_millis(1_500),
        window: Duration::from_secs(1),
    }
}

#[test]
fn receivers_get_every_block_of_the_window_once() {
    let run = live::run(&config(), Kind::Receiver, 2).unwrap();
    let report = &run.report;
    assert!(report.published > 0);
    assert_eq!(report.complete, 2);
    assert_eq!(report.latencies.len(), 2 * report.published);
    // Every block reached both, so each has a spread.
    assert_eq!(report.spreads.len(), report.published);
    assert_eq!(run.scheduled_to_accepted.count, report.published);
    assert_eq!(run.scheduled_to_received.count, 2 * report.published);
    // A block arrives after it is accepted.
    assert!(run.scheduled_to_received.max >= run.scheduled_to_accepted.max);
}

#[test]
fn an_observer_verifies_every_block_of_the_window() {
    let run = live::run(&config(), Kind::Observer, 1).unwrap();
    let report = &run.report;
    assert!(report.published > 0);
    assert_eq!(report.complete, 1);
    assert_eq!(report.latencies.len(), report.published);
}
