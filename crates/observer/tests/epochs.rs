//! Observers that trust only the genesis committee follow a chain across
//! its epoch changes, over real gRPC on loopback: catching up through
//! many hand-offs, then live across more, and after restarts.

mod common;

use common::{consume, fresh_observer, validator_with, wait_status, Validator};
use dagstream_observer::ObserverConfig;
use dagstream_publisher::epochs::Epochs;
use dagstream_sim::{Profile, SimConfig};
use dagstream_store::{epoch_change_key, Store};
use std::sync::Arc;

/// An epoch every 25 rounds (2.5 s of the chain).
fn epochs_every(rounds: u64) -> SimConfig {
    SimConfig {
        epoch_rounds: rounds,
        ..Profile::Small.sim_config(9)
    }
}

fn epoch_of(validator: &Validator) -> u64 {
    let (genesis, _) = common::committee_and_keys();
    Epochs::load(validator.store.as_ref(), genesis)
        .unwrap()
        .current()
        .epoch()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_with_only_genesis_follows_the_chain_across_epochs() {
    let validator = validator_with(400, None, epochs_every(25)).await;
    let history = validator.store.last_commit_index().unwrap();
    let epochs_in_history = epoch_of(&validator);
    assert!(epochs_in_history >= 5, "epoch {epochs_in_history}");
    let (observer, mut commits) =
        fresh_observer(vec![validator.endpoint()], ObserverConfig::default());

    // Catching up through every hand-off, then live across more.
    let mut epochs = Vec::new();
    let mut received = Vec::new();
    let until = history + 120;
    while received.len() < until as usize {
        let Some(delivered) = tokio::time::timeout(common::PATIENCE, commits.recv())
            .await
            .expect("commits keep coming")
        else {
            panic!("STOPPED {:?}", observer.stop().await)
        };
        assert_eq!(delivered.index(), received.len() as u64 + 1);
        epochs.push(delivered.epoch());
        received.push(delivered.sub_dag.reference());
    }
    assert_eq!(received, validator.commits(until).await);
    // Epochs go up one at a time, each boundary where the validator put it.
    assert!(epochs.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1));
    let live_epoch = *epochs.last().unwrap();
    assert!(live_epoch > epochs_in_history, "crossed a boundary live");
    wait_status(&observer, "in the validator's epoch", |s| {
        s.epoch >= live_epoch
    })
    .await;
    // The observer's store holds the very hand-offs the validator wrote.
    let store = observer.source().store().clone();
    for epoch in 0..live_epoch {
        assert_eq!(
            store.read_meta(&epoch_change_key(epoch)).unwrap(),
            validator.store.read_meta(&epoch_change_key(epoch)).unwrap(),
            "hand-off of epoch {epoch}"
        );
    }
    observer.stop().await.unwrap();
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_restarted_around_the_boundaries_loses_and_repeats_nothing() {
    let validator = validator_with(60, None, epochs_every(12)).await;
    let (committee, _) = common::committee_and_keys();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let seed = common::test_seed();
    let mut received = Vec::new();
    let mut acked = 0;
    for stint in 0..6u64 {
        let store: Arc<dyn Store> = Arc::new(dagstream_store::SegmentStore::open(&path).unwrap());
        let (observer, mut commits) = dagstream_observer::start(
            committee.clone(),
            store,
            vec![validator.endpoint()],
            ObserverConfig::default(),
            acked,
        )
        .unwrap();
        // Stop at a seeded point 1 to 30 commits further: an epoch is
        // about 8 commits, so stints end on every side of a boundary.
        let until = acked + 1 + (seed.rotate_left(stint as u32 * 10) % 30);
        received.extend(consume(&mut commits, acked, until).await);
        acked = until;
        observer.stop().await.unwrap();
    }
    assert_eq!(received, validator.commits(acked).await, "seed {seed}");
    assert!(epoch_of(&validator) >= 3);
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_observer_crosses_the_epochs_its_relay_crossed() {
    let validator = validator_with(200, None, epochs_every(25)).await;
    let history = validator.store.last_commit_index().unwrap();
    // Observer A follows the validator and serves what it verified.
    let (a, mut a_commits) = fresh_observer(vec![validator.endpoint()], ObserverConfig::default());
    let mut relay = dagstream_publisher::Publisher::start(
        a.source(),
        dagstream_publisher::PublisherConfig {
            heartbeat_interval_ms: 200,
            ..dagstream_publisher::PublisherConfig::default()
        },
        &prometheus::Registry::new(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_endpoint = format!("http://{}", relay.spawn_server(listener).unwrap());
    let a_reader = tokio::spawn(async move { while a_commits.recv().await.is_some() {} });

    // Observer B follows only A: through the history, then live.
    let (b, mut b_commits) = fresh_observer(vec![relay_endpoint], ObserverConfig::default());
    let until = history + 80;
    let received = consume(&mut b_commits, 0, until).await;
    assert_eq!(received, validator.commits(until).await);
    let epoch = epoch_of(&validator);
    assert!(epoch >= 4, "epoch {epoch}");
    let a_store = a.source().store().clone();
    let b_store = b.source().store().clone();
    let b_epoch = b.status().epoch;
    b.stop().await.unwrap();
    // The same hand-offs, and the same checkpoints, on both observers.
    assert!(b_epoch >= 4, "epoch {b_epoch}");
    for epoch in 0..b_epoch {
        let key = epoch_change_key(epoch);
        let expected = validator.store.read_meta(&key).unwrap();
        assert!(expected.is_some());
        assert_eq!(b_store.read_meta(&key).unwrap(), expected, "{key}");
        assert_eq!(a_store.read_meta(&key).unwrap(), expected, "{key}");
    }
    let mut sequence = 0;
    while let Some(summary) = b_store
        .read_meta(&format!("checkpoint/{sequence:020}"))
        .unwrap()
    {
        let key = format!("checkpoint/{sequence:020}");
        assert_eq!(a_store.read_meta(&key).unwrap(), Some(summary), "{key}");
        sequence += 1;
    }
    assert!(sequence > 20, "{sequence} checkpoints");
    relay.stop().await;
    a.stop().await.unwrap();
    a_reader.abort();
    validator.stop().await;
}

/// Cuts writes off at one point around epoch 0's end, as a crash would.
struct CutAt {
    point: Cut,
    /// Epoch 0's last commit.
    last_commit: u64,
    /// Whether the cut has happened: nothing is written after it.
    cut: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// The write that holds the epoch's last commit never lands.
    BeforeLastCommit,
    /// It lands; the hand-off's write does not.
    BeforeHandOff,
    /// The hand-off lands (the certified final checkpoint with the next
    /// committee); nothing of the next epoch does.
    AfterHandOff,
    Never,
}

impl dagstream_test_utils::store::StoreHooks for CutAt {
    fn accept(&self, batch: &dagstream_store::WriteBatch) -> bool {
        use std::sync::atomic::Ordering;
        if self.cut.load(Ordering::SeqCst) {
            return false;
        }
        let hands_over = batch
            .meta()
            .iter()
            .any(|(key, _)| key == &epoch_change_key(0));
        let ends = batch
            .commits()
            .iter()
            .any(|c| c.index() == self.last_commit);
        let (cut_now, cut_after) = match self.point {
            Cut::BeforeLastCommit => (ends, false),
            Cut::BeforeHandOff => (hands_over, false),
            Cut::AfterHandOff => (false, hands_over),
            Cut::Never => (false, false),
        };
        if cut_now || cut_after {
            self.cut.store(true, Ordering::SeqCst);
        }
        !cut_now
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_each_point_of_the_boundary_resumes_with_nothing_lost_or_repeated() {
    let validator = validator_with(40, None, epochs_every(12)).await;
    let hand_off = validator
        .store
        .read_meta(&epoch_change_key(0))
        .unwrap()
        .unwrap();
    let last_commit = dagstream_types::EpochChange::decode(&hand_off)
        .unwrap()
        .certificate
        .summary
        .last_commit;
    let (committee, _) = common::committee_and_keys();
    for point in [Cut::BeforeLastCommit, Cut::BeforeHandOff, Cut::AfterHandOff] {
        let hooked = |point, inner| {
            Arc::new(dagstream_test_utils::store::HookedStore {
                inner,
                hooks: CutAt {
                    point,
                    last_commit,
                    cut: false.into(),
                },
            })
        };
        let store = hooked(point, dagstream_store::MemStore::new());
        let (observer, mut commits) = dagstream_observer::start(
            committee.clone(),
            store.clone(),
            vec![validator.endpoint()],
            ObserverConfig::default(),
            0,
        )
        .unwrap();
        // The consumer takes what was durable until the crash, which
        // stops the observer.
        let mut received = Vec::new();
        while let Some(delivered) = commits.recv().await {
            assert_eq!(delivered.index(), received.len() as u64 + 1);
            received.push(delivered.sub_dag.reference());
        }
        assert!(
            observer.stop().await.is_err(),
            "{point:?}: the write failed"
        );
        let durable = store.last_commit_index().unwrap();
        let handed_over = store.read_meta(&epoch_change_key(0)).unwrap().is_some();
        let expected = match point {
            Cut::BeforeLastCommit => (durable < last_commit, false),
            Cut::BeforeHandOff => (durable == last_commit, false),
            _ => (durable == last_commit, true),
        };
        assert_eq!((true, handed_over), (expected.0, expected.1), "{point:?}");
        // What was durable but not handed over comes again after the
        // restart, from the store.
        assert!(received.len() as u64 <= durable, "{point:?}");
        // Restarted on what was durable, it goes on from there.
        let inner = Arc::into_inner(store).expect("the observer let go").inner;
        let acked = received.len() as u64;
        let (observer, mut commits) = dagstream_observer::start(
            committee.clone(),
            hooked(Cut::Never, inner),
            vec![validator.endpoint()],
            ObserverConfig::default(),
            acked,
        )
        .unwrap();
        let until = last_commit + 30;
        received.extend(consume(&mut commits, acked, until).await);
        assert_eq!(received, validator.commits(until).await, "{point:?}");
        wait_status(&observer, "the next epoch", |s| s.epoch >= 1).await;
        observer.stop().await.unwrap();
    }
    validator.stop().await;
}
