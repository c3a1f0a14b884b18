//! Shared by the observer's end-to-end tests: validators on a fast test
//! clock, and consumer helpers.
#![allow(dead_code)]

use dagstream_observer::{DeliveredSubDag, Mode, ObserverHandle, ObserverStatus};
use dagstream_publisher::PublisherConfig;
use dagstream_sim::{generate, CommitteeKeys, GenesisParams, SimConfig};
use dagstream_store::{MemStore, Store};
use dagstream_types::{BlockLimits, CommitRef, Committee};
use dagstream_validator::{Producer, ValidatorHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const INTERVAL_MS: u64 = 100;
/// Long enough for anything that must happen; reaching it is a failure.
pub const PATIENCE: Duration = Duration::from_secs(90);

pub fn committee_and_keys() -> (Arc<Committee>, CommitteeKeys) {
    let (genesis, keys) = generate(&GenesisParams {
        authorities: 4,
        round_interval_ms: INTERVAL_MS,
        genesis_time_ms: 0,
        gc_depth_rounds: 50,
        seed: 9,
    });
    (Arc::new(Committee::new(genesis).unwrap()), keys)
}

/// A validator with `history` rounds, then producing on a clock that runs
/// five times faster than real time.
pub struct Validator {
    pub handle: ValidatorHandle,
    pub store: Arc<dyn Store>,
    pub clock: Arc<AtomicU64>,
    pub ticker: tokio::task::JoinHandle<()>,
}

pub async fn validator(history: u64) -> Validator {
    validator_on_clock(history, None).await
}

/// A validator sharing `clock` with others (same chain, same pace), or with
/// its own clock.
pub async fn validator_on_clock(history: u64, clock: Option<Arc<AtomicU64>>) -> Validator {
    let (committee, keys) = committee_and_keys();
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut producer = Producer::new(
        committee,
        keys,
        SimConfig::default(),
        &BlockLimits::default(),
        store.clone(),
    )
    .unwrap();
    for _ in 0..history {
        producer.produce_round().unwrap();
    }
    let shared = clock.is_some();
    let clock = clock.unwrap_or_else(|| Arc::new(AtomicU64::new(history * INTERVAL_MS)));
    let ticker = tokio::spawn({
        let clock = clock.clone();
        async move {
            if shared {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                clock.fetch_add(INTERVAL_MS, Ordering::Relaxed);
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let now = clock.clone();
    let handle = dagstream_validator::start(
        producer,
        Arc::new(move || now.load(Ordering::Relaxed)),
        listener,
        PublisherConfig {
            heartbeat_interval_ms: 200,
            ..PublisherConfig::default()
        },
        &prometheus::Registry::new(),
    )
    .unwrap();
    Validator {
        handle,
        store,
        clock,
        ticker,
    }
}

impl Validator {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    pub fn commits(&self, through: u64) -> Vec<CommitRef> {
        self.store
            .scan_commits(1, through as usize)
            .unwrap()
            .iter()
            .map(|c| c.reference())
            .collect()
    }

    pub async fn stop(self) {
        self.ticker.abort();
        let _ = self.clock;
        self.handle.stop().await.unwrap();
    }
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
            assert!(
                delivered.checkpoint == previous || delivered.checkpoint == previous + 1,
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

/// The seed of a randomized test: `DAGSTREAM_TEST_SEED` if set, else fresh.
/// Printed, so that a failure can be replayed.
pub fn test_seed() -> u64 {
    let seed = std::env::var("DAGSTREAM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as u64)
        });
    println!("DAGSTREAM_TEST_SEED={seed}");
    seed
}
