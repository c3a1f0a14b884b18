//! An observer following a simulated validator over real gRPC on loopback.

mod common;

use common::{committee_and_keys, consume, fresh_observer, modes, validator, wait_status};
use dagstream_observer::{start, Mode, ObserverConfig, SubscriberConfig};
use dagstream_store::{MemStore, SegmentStore, Store};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_observer_catches_up_through_every_mode() {
    let validator = validator(5_150).await;
    let history = validator.store.last_commit_index().unwrap();
    assert!(history >= 5_000, "{history} commits of history");
    let (observer, mut commits) =
        fresh_observer(vec![validator.endpoint()], ObserverConfig::default());

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
    assert_eq!(received, validator.commits(history + 100).await);
    observer.stop().await.unwrap();
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_observer_resumes_with_nothing_lost_or_repeated() {
    let validator = validator(300).await;
    let (committee, _) = committee_and_keys();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let seed = common::test_seed();
    let mut received = Vec::new();
    let mut acked = 0;
    for stint in 0..4u64 {
        let store: Arc<dyn Store> = Arc::new(SegmentStore::open(&path).unwrap());
        let (observer, mut commits) = start(
            committee.clone(),
            store,
            vec![validator.endpoint()],
            ObserverConfig::default(),
            acked,
        )
        .unwrap();
        // Stop at a seeded random point: 1 to 120 commits further.
        let until = acked + 1 + (seed.rotate_left(stint as u32 * 16) % 120);
        received.extend(consume(&mut commits, acked, until).await);
        acked = until;
        observer.stop().await.unwrap();
    }
    assert_eq!(received, validator.commits(acked).await, "seed {seed}");
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_pauses_blocks_and_loses_nothing() {
    let validator = validator(20).await;
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
    let (observer, mut commits) = fresh_observer(vec![validator.endpoint()], config);
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
    assert_eq!(received, validator.commits(120).await);
    observer.stop().await.unwrap();
    validator.stop().await;
}

/// Every verified block and every delivered commit is measured once, and
/// verified blocks are offered as they are verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_latency_is_measured_for_every_block_and_commit() {
    let validator = validator(40).await;
    let history = validator.store.last_commit_index().unwrap();
    let (committee, _) = committee_and_keys();
    let registry = prometheus::Registry::new();
    let (observer, mut commits) = dagstream_observer::start_with_metrics(
        committee,
        Arc::new(MemStore::new()),
        vec![validator.endpoint()],
        ObserverConfig::default(),
        0,
        dagstream_observer::ObserverMetrics::new(&registry).unwrap(),
    )
    .unwrap();
    let mut verified = observer.subscribe_verified();
    let mut delivered = consume(&mut commits, 0, history + 30).await.len() as u64;
    observer.stop().await.unwrap();
    while commits.try_recv().is_ok() {
        delivered += 1;
    }

    let metric = |name: &str| {
        let family = registry.gather().into_iter().find(|f| f.name() == name);
        let family = family.unwrap_or_else(|| panic!("{name} is not exported"));
        let metric = &family.get_metric()[0];
        if metric.get_histogram().get_sample_count() > 0 {
            metric.get_histogram().get_sample_count() as f64
        } else {
            metric.get_counter().get_value()
        }
    };
    let blocks = metric("dagstream_observer_blocks_verified_total");
    assert!(blocks > 0.0);
    assert_eq!(
        metric("dagstream_observer_receive_to_verify_seconds"),
        blocks
    );
    assert_eq!(
        metric("dagstream_observer_verify_to_deliver_seconds"),
        delivered as f64
    );
    assert_eq!(
        metric("dagstream_observer_commit_lag_seconds"),
        delivered as f64
    );

    // The verified feed: each block once, each author's in round order.
    let mut highest = std::collections::HashMap::new();
    let mut tapped = 0;
    while let Ok(block) = verified.try_recv() {
        let previous = highest.insert(block.author(), block.round());
        assert!(previous.is_none_or(|p| p < block.round()), "{block:?}");
        tapped += 1;
    }
    assert!(
        tapped > 0 && tapped as f64 <= blocks,
        "{tapped} of {blocks}"
    );
    validator.stop().await;
}
