//! An observer following a simulated validator over real gRPC on loopback.

use dagstream_observer::{start, Mode, ObserverConfig, ObserverHandle, SubscriberConfig};
use dagstream_publisher::PublisherConfig;
use dagstream_sim::{generate, CommitteeKeys, GenesisParams, SimConfig};
use dagstream_store::{MemStore, RedbStore, Store};
use dagstream_types::{BlockLimits, CommitRef, CommittedSubDag, Committee};
use dagstream_validator::{Producer, ValidatorHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const INTERVAL_MS: u64 = 100;
/// Long enough for anything that must happen; reaching it is a failure.
const PATIENCE: Duration = Duration::from_secs(90);

fn committee_and_keys() -> (Arc<Committee>, CommitteeKeys) {
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
struct Validator {
    handle: ValidatorHandle,
    store: Arc<dyn Store>,
    clock: Arc<AtomicU64>,
    ticker: tokio::task::JoinHandle<()>,
}

async fn validator(history: u64) -> Validator {
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
    let clock = Arc::new(AtomicU64::new(history * INTERVAL_MS));
    let ticker = tokio::spawn({
        let clock = clock.clone();
        async move {
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
    fn endpoint(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    fn commits(&self, through: u64) -> Vec<CommitRef> {
        self.store
            .scan_commits(1, through as usize)
            .unwrap()
            .iter()
            .map(|c| c.reference())
            .collect()
    }

    async fn stop(self) {
        self.ticker.abort();
        let _ = self.clock;
        self.handle.stop().await.unwrap();
    }
}

/// Reads commits until `until` is reached, checking the order as it goes.
async fn consume(
    commits: &mut mpsc::Receiver<CommittedSubDag>,
    after: u64,
    until: u64,
) -> Vec<CommitRef> {
    let mut received = Vec::new();
    let mut next = after + 1;
    while next <= until {
        let sub_dag = tokio::time::timeout(PATIENCE, commits.recv())
            .await
            .expect("commits keep coming")
            .expect("observer running");
        assert_eq!(sub_dag.index(), next, "gap or duplicate");
        received.push(sub_dag.reference());
        next += 1;
    }
    received
}

/// Waits until the observer's status satisfies `condition`.
async fn wait_status(
    observer: &ObserverHandle,
    what: &str,
    condition: impl Fn(&dagstream_observer::ObserverStatus) -> bool,
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

fn modes(trace: &[(Mode, bool)]) -> Vec<Mode> {
    let mut modes: Vec<Mode> = Vec::new();
    for (mode, _) in trace {
        if modes.last() != Some(mode) {
            modes.push(*mode);
        }
    }
    modes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_observer_catches_up_through_every_mode() {
    let validator = validator(5_150).await;
    let history = validator.store.last_commit_index().unwrap();
    assert!(history >= 5_000, "{history} commits of history");
    let (committee, _) = committee_and_keys();
    let (observer, mut commits) = start(
        committee,
        Arc::new(MemStore::new()),
        vec![validator.endpoint()],
        ObserverConfig::default(),
        0,
    )
    .unwrap();

    let received = consume(&mut commits, 0, history + 50).await;
    wait_status(&observer, "back to BlocksOnly", |s| {
        modes(&s.mode_trace)
            == [
                Mode::BlocksOnly,
                Mode::CommitsOnly,
                Mode::Overlap,
                Mode::BlocksOnly,
            ]
    })
    .await;
    // Live commits keep coming in BlocksOnly, derived from blocks alone.
    let mut received = received;
    received.extend(consume(&mut commits, history + 50, history + 100).await);
    assert_eq!(received, validator.commits(history + 100));
    observer.stop().await.unwrap();
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_observer_resumes_with_nothing_lost_or_repeated() {
    let validator = validator(300).await;
    let (committee, _) = committee_and_keys();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observer.redb");
    let mut received = Vec::new();
    let mut acked = 0;
    for stint in 1..=3u64 {
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).unwrap());
        let (observer, mut commits) = start(
            committee.clone(),
            store,
            vec![validator.endpoint()],
            ObserverConfig::default(),
            acked,
        )
        .unwrap();
        let until = acked + 150 * stint;
        received.extend(consume(&mut commits, acked, until).await);
        acked = until;
        observer.stop().await.unwrap();
    }
    assert_eq!(received, validator.commits(acked));
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_pauses_blocks_and_loses_nothing() {
    let validator = validator(20).await;
    let (committee, _) = committee_and_keys();
    let config = ObserverConfig {
        subscriber: SubscriberConfig {
            pause_blocks_queue_size: 40,
            resume_blocks_queue_size: 10,
            ..SubscriberConfig::default()
        },
        block_queue_capacity: 100,
        output_queue_len: 4,
        ..ObserverConfig::default()
    };
    let (observer, mut commits) = start(
        committee,
        Arc::new(MemStore::new()),
        vec![validator.endpoint()],
        config,
        0,
    )
    .unwrap();
    let mut received = consume(&mut commits, 0, 10).await;
    // The consumer stops reading: the observer stops processing, blocks
    // queue up, and the block stream is paused.
    wait_status(&observer, "a pause", |s| s.paused).await;
    // Reading again drains the queue and resumes the stream.
    let reader = tokio::spawn(async move {
        let more = consume(&mut commits, 10, 120).await;
        (commits, more)
    });
    wait_status(&observer, "the resume", |s| {
        s.mode_trace
            .windows(2)
            .any(|w| w[0] == (Mode::BlocksOnly, true) && w[1] == (Mode::BlocksOnly, false))
    })
    .await;
    let (_commits, more) = reader.await.unwrap();
    received.extend(more);
    assert_eq!(received, validator.commits(120));
    observer.stop().await.unwrap();
    validator.stop().await;
}
