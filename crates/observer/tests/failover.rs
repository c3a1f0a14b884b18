//! Several upstreams: failover with no gap, and relaying through an
//! observer.

mod common;

use common::{
    committee_and_keys, consume, fresh_observer, stale_validator, validator, validator_on_clock,
    wait_status, TestClock, INTERVAL_MS,
};
use dagstream_observer::delivery::load_randomness;
use dagstream_observer::{start, ObserverConfig};
use dagstream_publisher::{Publisher, PublisherConfig};
use dagstream_store::MemStore;
use dagstream_test_utils::proxy::{Fault, FaultProxy};
use dagstream_test_utils::TestCommittee;
use dagstream_types::CheckpointBuilder;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_fails_over_to_a_second_validator_with_no_gap() {
    // Two validators of the same genesis and seed, on one clock: the same
    // chain from two processes.
    let history = 200;
    let clock = TestClock::at(history * INTERVAL_MS);
    let first = validator_on_clock(history, Some(clock.clone())).await;
    let second = validator_on_clock(history, Some(clock.clone())).await;
    let ticker = clock.tick(INTERVAL_MS, Duration::from_millis(20));
    let (observer, mut commits) = fresh_observer(
        vec![first.endpoint(), second.endpoint()],
        ObserverConfig::default(),
    );
    let mut received = consume(&mut commits, 0, 250).await;
    assert_eq!(observer.status().active_upstream, Some(first.endpoint()));

    // The validator in use goes away.
    first.stop().await;
    received.extend(consume(&mut commits, 250, 400).await);
    wait_status(&observer, "the second upstream", |s| {
        s.active_upstream == Some(second.endpoint())
    })
    .await;
    assert_eq!(received, second.commits(400).await);
    observer.stop().await.unwrap();
    drop(ticker);
    second.stop().await;
}

/// The link to the upstream in use goes silent without closing (a black
/// hole: no reset, no FIN, no heartbeat): the stall timeout notices, and
/// the observer goes on from the second upstream with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_upstream_is_left_by_its_stall_timeout() {
    let history = 200;
    let clock = TestClock::at(history * INTERVAL_MS);
    let first = validator_on_clock(history, Some(clock.clone())).await;
    let second = validator_on_clock(history, Some(clock.clone())).await;
    let proxy = FaultProxy::start(first.handle.addr).await;
    let ticker = clock.tick(INTERVAL_MS, Duration::from_millis(20));
    let config = ObserverConfig {
        stall_timeout_ms: 1_000,
        ..ObserverConfig::default()
    };
    let (observer, mut commits) = fresh_observer(vec![proxy.endpoint(), second.endpoint()], config);
    let mut received = consume(&mut commits, 0, 250).await;
    assert_eq!(observer.status().active_upstream, Some(proxy.endpoint()));

    proxy.set(Fault::BlackHole);
    received.extend(consume(&mut commits, 250, 400).await);
    wait_status(&observer, "the second upstream", |s| {
        s.active_upstream == Some(second.endpoint())
    })
    .await;
    assert!(observer.status().connections >= 2);
    assert_eq!(received, second.commits(400).await);
    observer.stop().await.unwrap();
    drop(ticker);
    drop(proxy);
    first.stop().await;
    second.stop().await;
}

/// An upstream that is valid but never advances (a stuck node, or one
/// withholding the tip): probes see another upstream ahead, and the
/// observer moves to it with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_upstream_that_never_advances_is_left_for_one_ahead() {
    let stale = stale_validator(150).await;
    let live = validator(150).await;
    let stuck_at = stale.chain.certified();
    let config = ObserverConfig {
        probe_interval_ms: 200,
        ..ObserverConfig::default()
    };
    let (observer, mut commits) = fresh_observer(vec![stale.endpoint(), live.endpoint()], config);
    // The stale upstream is first in the list, so it is followed first.
    let mut received = consume(&mut commits, 0, 50).await;
    let until = stuck_at + 80;
    received.extend(consume(&mut commits, 50, until).await);
    wait_status(&observer, "the upstream ahead", |s| {
        s.active_upstream == Some(live.endpoint())
    })
    .await;
    assert_eq!(received, live.commits(until).await);
    observer.stop().await.unwrap();
    stale.stop().await;
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_relays_to_another_observer() {
    let validator = validator(150).await;

    // Observer A follows the validator and serves what it verified.
    let (a, mut a_commits) = fresh_observer(vec![validator.endpoint()], ObserverConfig::default());
    let mut relay = Publisher::start(
        a.source(),
        PublisherConfig {
            heartbeat_interval_ms: 200,
            ..PublisherConfig::default()
        },
        &prometheus::Registry::new(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_endpoint = format!("http://{}", relay.spawn_server(listener).unwrap());
    // A's consumer keeps reading, so that A keeps going.
    let a_reader = tokio::spawn(async move { while a_commits.recv().await.is_some() {} });

    // Observer B follows only A.
    let (b, mut b_commits) = fresh_observer(vec![relay_endpoint], ObserverConfig::default());
    let received = consume(&mut b_commits, 0, 250).await;
    assert_eq!(received, validator.commits(250).await);

    // Checkpoints are the same on every observer of the chain, and follow
    // from the commits' timestamps alone.
    let a_store = a.source().store().clone();
    let b_store = b.source().store().clone();
    b.stop().await.unwrap();
    let mut builder = CheckpointBuilder::new(0);
    let mut expected = Vec::new();
    for commit in validator.store.scan_commits(1, 250).unwrap() {
        let randomness = load_randomness(validator.store.as_ref(), commit.index()).unwrap();
        let placed = builder.place(
            commit.index(),
            commit.digest(),
            commit.timestamp_ms(),
            &randomness,
        );
        expected.extend(placed.closed);
    }
    assert!(expected.len() > 10);
    for closed in &expected {
        let key = format!("checkpoint/{:020}", closed.sequence);
        let summary = closed.encode();
        assert_eq!(
            b_store.read_meta(&key).unwrap().as_deref(),
            Some(summary.as_slice()),
            "{key}"
        );
        assert_eq!(
            a_store.read_meta(&key).unwrap().as_deref(),
            Some(summary.as_slice()),
            "{key}"
        );
    }

    relay.stop().await;
    a.stop().await.unwrap();
    a_reader.abort();
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_leaves_an_upstream_that_falls_behind() {
    // The first validator's clock is frozen: it stays at its history. The
    // second, of the same chain, keeps producing.
    let history = 100;
    let stuck = validator_on_clock(history, Some(TestClock::at(history * INTERVAL_MS))).await;
    let live = validator(history).await;
    let stuck_tip = stuck.store.last_commit_index().unwrap();
    let config = ObserverConfig {
        probe_interval_ms: 200,
        ..ObserverConfig::default()
    };
    let (observer, mut commits) = fresh_observer(vec![stuck.endpoint(), live.endpoint()], config);
    // Commits past the stuck validator's tip can only come from the other.
    let received = consume(&mut commits, 0, stuck_tip + 150).await;
    assert_eq!(received, live.commits(stuck_tip + 150).await);
    assert_eq!(observer.status().active_upstream, Some(live.endpoint()));
    observer.stop().await.unwrap();
    stuck.stop().await;
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_at_the_tip_of_a_quiet_validator_is_caught_up() {
    let history = 150;
    let quiet = validator_on_clock(history, Some(TestClock::at(history * INTERVAL_MS))).await;
    let tip = quiet.store.last_commit_index().unwrap();
    let (observer, mut commits) = fresh_observer(vec![quiet.endpoint()], ObserverConfig::default());
    assert_eq!(
        consume(&mut commits, 0, tip).await,
        quiet.commits(tip).await
    );
    wait_status(&observer, "caught up", |s| s.caught_up).await;
    let status = observer.status();
    assert_eq!(status.local_highest_commit, tip);
    assert_eq!(status.upstream_highest_commit, Some(tip));
    assert_eq!(
        status.last_closed_checkpoint.map(|c| c + 1),
        status.checkpoint
    );
    observer.stop().await.unwrap();
    quiet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_of_another_chain_is_refused() {
    let validator = validator(20).await;
    // The same committee size and schedule, but another genesis seed: keys
    // and digest differ.
    let other = TestCommittee::new(4, 10).committee;
    let (observer, _commits) = start(
        other.clone(),
        Arc::new(MemStore::new()),
        vec![validator.endpoint()],
        ObserverConfig::default(),
        0,
    )
    .unwrap();
    let err = tokio::time::timeout(common::PATIENCE, observer.join())
        .await
        .expect("the observer refuses at once")
        .unwrap_err();
    assert!(
        matches!(&err, dagstream_observer::ObserverError::WrongChain { ours, .. } if *ours == other.digest()),
        "{err}"
    );
    assert!(err.to_string().contains("refusing"), "{err}");
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_that_cannot_keep_up_in_commits_only_backs_off() {
    // Far behind, and a consumer that never reads: in CommitsOnly the lag
    // cannot improve, so the observer degrades gracefully.
    let validator = validator(600).await;
    let (committee, _) = committee_and_keys();
    let registry = prometheus::Registry::new();
    let config = ObserverConfig {
        degrade_after_ms: 500,
        output_queue_len: 4,
        ..ObserverConfig::default()
    };
    let (observer, commits) = dagstream_observer::start_with_metrics(
        committee,
        Arc::new(MemStore::new()),
        vec![validator.endpoint()],
        config,
        0,
        dagstream_observer::ObserverMetrics::new(&registry).unwrap(),
    )
    .unwrap();
    let degraded = || {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "dagstream_observer_session_ends_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == "degraded"))
            .map(|m| m.get_counter().get_value())
            .sum::<f64>()
    };
    wait_status(&observer, "CommitsOnly", |s| {
        s.mode == Some(dagstream_observer::Mode::CommitsOnly)
    })
    .await;
    tokio::time::timeout(common::PATIENCE, async {
        while degraded() < 1.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the observer degraded");
    // It reconnects (after its backoff) rather than giving up.
    wait_status(&observer, "a second session", |s| s.connections >= 2).await;
    drop(commits);
    observer.stop().await.unwrap();
    validator.stop().await;
}

/// Probing compares upstreams with one unary call each, over a kept
/// connection: no stream is opened or closed for it, on either upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_open_no_streams() {
    let history = 60;
    let clock = TestClock::at(history * INTERVAL_MS);
    let mut a = validator_on_clock(history, Some(clock.clone())).await;
    let b = validator_on_clock(history, Some(clock)).await;
    a.tick(INTERVAL_MS, common::TICK);
    let config = ObserverConfig {
        // Fifty probe rounds a second: the old stream probes would have
        // opened and closed dozens of commit streams during this test.
        probe_interval_ms: 20,
        ..ObserverConfig::default()
    };
    let (observer, mut commits) = fresh_observer(vec![a.endpoint(), b.endpoint()], config);
    let tip = a.store.last_commit_index().unwrap();
    consume(&mut commits, 0, tip + 40).await;
    assert_eq!(observer.status().connections, 1);
    let disconnects = "dagstream_publisher_disconnects_total";
    assert_eq!(a.metric(disconnects, &[]), 0.0);
    assert_eq!(b.metric(disconnects, &[]), 0.0);
    // The followed upstream holds the observer's two streams, the other none.
    let streams = "dagstream_publisher_active_streams";
    let (active, idle) = if observer.status().active_upstream == Some(a.endpoint()) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(active.metric(streams, &[]), 2.0);
    assert_eq!(idle.metric(streams, &[]), 0.0);
    observer.stop().await.unwrap();
    a.stop().await;
    b.stop().await;
}
