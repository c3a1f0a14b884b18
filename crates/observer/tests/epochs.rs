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
        let delivered = tokio::time::timeout(common::PATIENCE, commits.recv())
            .await
            .expect("commits keep coming")
            .expect("observer running");
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
