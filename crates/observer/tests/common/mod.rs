//! Shared by the observer's end-to-end tests: validators on a fast test
//! clock (from `dagstream-test-utils`), and consumer helpers.
#![allow(dead_code)]

use dagstream_observer::{DeliveredSubDag, Mode, ObserverHandle, ObserverStatus};
use dagstream_publisher::PublisherConfig;
use dagstream_sim::{CommitteeKeys, SimConfig};
use dagstream_test_utils::{TestChain, TestCommittee, ROUND_INTERVAL_MS};
use dagstream_types::{CommitRef, Committee};
use dagstream_validator::retention::ValidatorConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

// Each test binary uses a part of what is shared here.
#[allow(unused_imports)]
pub use dagstream_test_utils::{test_seed, ClockedValidator as Validator, TestClock};

pub const INTERVAL_MS: u64 = ROUND_INTERVAL_MS;
/// Long enough for anything that must happen; reaching it is a failure.
pub const PATIENCE: Duration = Duration::from_secs(90);
/// The committee of these tests: 4 authorities, seed 9.
const AUTHORITIES: usize = 4;
const COMMITTEE_SEED: u64 = 9;
/// A validator's own clock moves one round every 20 ms: five times faster
/// than real time.
pub const TICK: Duration = Duration::from_millis(20);

pub fn committee_and_keys() -> (Arc<Committee>, CommitteeKeys) {
    let TestCommittee { committee, keys } = TestCommittee::new(AUTHORITIES, COMMITTEE_SEED);
    (committee, keys)
}

/// A validator of the same chain that stops at `history` rounds: valid,
/// answering, sending heartbeats, and never advancing.
pub async fn stale_validator(history: usize) -> dagstream_test_utils::TestValidator {
    let committee = TestCommittee::new(AUTHORITIES, COMMITTEE_SEED);
    let mut chain = TestChain::in_memory(&committee).keep_blocks(false);
    chain.produce(history);
    let config = PublisherConfig {
        heartbeat_interval_ms: 200,
        ..PublisherConfig::default()
    };
    dagstream_test_utils::TestValidator::start(chain, config).await
}

/// A validator with `history` rounds, then producing on a clock that runs
/// five times faster than real time.
pub async fn validator(history: u64) -> Validator {
    validator_on_clock(history, None).await
}

/// A validator sharing `clock` with others (same chain, same pace), or with
/// its own clock.
pub async fn validator_on_clock(history: u64, clock: Option<TestClock>) -> Validator {
    validator_with(history, clock, SimConfig::default()).await
}

/// [`validator_on_clock`] of a committee that behaves as `sim` says.
pub async fn validator_with(history: u64, clock: Option<TestClock>, sim: SimConfig) -> Validator {
    validator_retaining(history, clock, sim, &ValidatorConfig::default(), None).await
}

/// [`validator_with`], keeping the history that `retention` says, and
/// naming `archive` to subscribers of what it pruned.
pub async fn validator_retaining(
    history: u64,
    clock: Option<TestClock>,
    sim: SimConfig,
    retention: &ValidatorConfig,
    archive: Option<&str>,
) -> Validator {
    let committee = TestCommittee::new(AUTHORITIES, COMMITTEE_SEED);
    // The observers read the validator's store, not the blocks kept here.
    let store: Arc<dyn dagstream_store::Store> = Arc::new(dagstream_store::MemStore::new());
    let mut chain = TestChain::new(&committee, sim, store).keep_blocks(false);
    chain.produce(history as usize);
    let own_clock = clock.is_none();
    let clock = clock.unwrap_or_else(|| TestClock::at(history * INTERVAL_MS));
    let config = PublisherConfig {
        heartbeat_interval_ms: 200,
        history_archive: archive.map(Into::into),
        ..PublisherConfig::default()
    };
    let mut validator = chain.start_clocked_with(clock, config, retention).await;
    if own_clock {
        validator.tick(INTERVAL_MS, TICK);
    }
    validator
}

/// An observer of the test committee on a new in-memory store, following
/// `upstreams` from commit 0.
pub fn fresh_observer(
    upstreams: Vec<String>,
    config: dagstream_observer::ObserverConfig,
) -> (ObserverHandle, mpsc::Receiver<DeliveredSubDag>) {
    let (committee, _) = committee_and_keys();
    dagstream_observer::start(
        committee,
        Arc::new(dagstream_store::MemStore::new()),
        upstreams,
        config,
        0,
    )
    .expect("the observer starts")
}

/// Reads commits until `until` is reached, checking the order as it goes,
/// and that checkpoints follow each other without a gap.
pub async fn consume(
    commits: &mut mpsc::Receiver<DeliveredSubDag>,
    after: u64,
    until: u64,
) -> Vec<CommitRef> {
    let mut received = Vec::new();
    let mut next = after + 1;
    let mut checkpoint = None;
    while next <= until {
        let delivered = tokio::time::timeout(PATIENCE, commits.recv())
            .await
            .expect("commits keep coming")
            .expect("observer running");
        assert_eq!(delivered.index(), next, "gap or duplicate");
        if let Some(previous) = checkpoint {
            // The same, the next, or the next after a randomness
            // checkpoint, and after an epoch's final checkpoint.
            assert!(
                (previous..=previous + 3).contains(&delivered.checkpoint),
                "checkpoint {} after {previous}",
                delivered.checkpoint
            );
        }
        checkpoint = Some(delivered.checkpoint);
        received.push(delivered.sub_dag.reference());
        next += 1;
    }
    received
}

/// Waits until the observer's status satisfies `condition`.
pub async fn wait_status(
    observer: &ObserverHandle,
    what: &str,
    condition: impl Fn(&ObserverStatus) -> bool,
) {
    let mut status = observer.watch_status();
    tokio::time::timeout(PATIENCE, async {
        while !condition(&status.borrow_and_update()) {
            status.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", observer.status()));
}

pub fn modes(trace: &[(Mode, bool)]) -> Vec<Mode> {
    let mut modes: Vec<Mode> = Vec::new();
    for (mode, _) in trace {
        if modes.last() != Some(mode) {
            modes.push(*mode);
        }
    }
    modes
}
