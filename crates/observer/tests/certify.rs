//! Checkpoint certification and randomness end to end: observers of one
//! chain, following different upstreams over gRPC, certify the same
//! checkpoints from the signatures in the blocks they receive, and get the
//! same randomness, received while catching up and interpolated from
//! partials while following blocks.

mod common;

use common::{
    committee_and_keys, consume, fresh_observer, validator_on_clock, wait_status, TestClock,
    INTERVAL_MS,
};
use dagstream_observer::checkpoint::{load_certification, load_highest_certified, load_summary};
use dagstream_observer::delivery::load_randomness;
use dagstream_observer::ObserverConfig;
use dagstream_store::Store;
use dagstream_types::{CheckpointBuilder, CheckpointSummary};
use std::time::Duration;

/// The summaries of checkpoints `0..=through`, formed from the validator's
/// own commits.
fn validator_summaries(store: &dyn Store, through: u64) -> Vec<CheckpointSummary> {
    let mut builder = CheckpointBuilder::new(0);
    let mut summaries = Vec::new();
    for commit in store.scan_commits(1, usize::MAX).unwrap() {
        let randomness = load_randomness(store, commit.index()).unwrap();
        let placed = builder.place(
            commit.index(),
            commit.digest(),
            commit.timestamp_ms(),
            &randomness,
        );
        summaries.extend(placed.closed);
    }
    assert!(
        summaries.len() as u64 > through,
        "{} closed",
        summaries.len()
    );
    summaries.truncate(through as usize + 1);
    summaries
}

/// The summaries of checkpoints `0..=through` as certified in `store`:
/// each by a valid certificate of its own, or chained to a later one's.
/// Returns them with how many had their own.
fn certified(store: &dyn Store, through: u64) -> (Vec<CheckpointSummary>, usize) {
    let (committee, _) = committee_and_keys();
    let mut own = 0;
    let summaries = (0..=through)
        .map(|sequence| {
            let certification = load_certification(store, sequence)
                .unwrap()
                .unwrap_or_else(|| panic!("checkpoint {sequence} is not certified"));
            certification.certificate.verify(&committee).unwrap();
            let summary = certification.chain[0];
            assert_eq!(load_summary(store, sequence).unwrap(), Some(summary));
            own += usize::from(certification.chain.len() == 1);
            summary
        })
        .collect();
    (summaries, own)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_of_different_upstreams_certify_the_same_checkpoints_and_randomness() {
    // Two validators of one chain, on one clock; each observer catches up
    // on its own upstream's commit stream, then follows its blocks.
    let history = 200;
    let clock = TestClock::at(history * INTERVAL_MS);
    let first = validator_on_clock(history, Some(clock.clone())).await;
    let second = validator_on_clock(history, Some(clock.clone())).await;
    let ticker = clock.tick(INTERVAL_MS, Duration::from_millis(20));
    let (a, mut a_commits) = fresh_observer(vec![first.endpoint()], ObserverConfig::default());
    let (b, mut b_commits) = fresh_observer(vec![second.endpoint()], ObserverConfig::default());
    let a_received = consume(&mut a_commits, 0, 300).await;
    let b_received = consume(&mut b_commits, 0, 300).await;
    assert_eq!(a_received, b_received);

    // Checkpoints close about every 200 ms of commit time: 300 commits
    // make about 100, certified a round or two after they close.
    let through = 60;
    for observer in [&a, &b] {
        wait_status(observer, "60 checkpoints certified", |s| {
            s.highest_certified_checkpoint >= Some(through)
        })
        .await;
        // The upstreams report theirs, which the simulated committee
        // certifies as its blocks carry the signatures.
        wait_status(observer, "the upstream's certified checkpoint", |s| {
            s.upstream_certified_checkpoint >= Some(through)
        })
        .await;
    }
    let (a_store, b_store) = (a.source().store().clone(), b.source().store().clone());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    drop(ticker);

    let (a_certified, a_own) = certified(a_store.as_ref(), through);
    let (b_certified, b_own) = certified(b_store.as_ref(), through);
    assert_eq!(a_certified, b_certified);
    assert_eq!(
        a_certified,
        validator_summaries(first.store.as_ref(), through)
    );
    // Catching up, a commit batch's newest checkpoint certifies the older
    // ones through its chain; following blocks, each its own.
    for own in [a_own, b_own] {
        assert!((1..=through as usize).contains(&own), "{own} certificates");
    }
    for store in [&a_store, &b_store] {
        assert!(load_highest_certified(store.as_ref()).unwrap() >= Some(through));
    }

    // Randomness: what the validator generated, commit by commit, both for
    // the history (the commit stream's) and the live commits (from blocks).
    let (committee, _) = committee_and_keys();
    let verifier = committee.randomness().unwrap();
    let mut rounds = 0;
    for index in 1..=300 {
        let expected = load_randomness(first.store.as_ref(), index).unwrap();
        for output in &expected {
            verifier.verify(output).unwrap();
        }
        assert_eq!(load_randomness(a_store.as_ref(), index).unwrap(), expected);
        assert_eq!(load_randomness(b_store.as_ref(), index).unwrap(), expected);
        rounds += expected.len();
    }
    assert!(rounds > 280, "{rounds} rounds in 300 commits");
    first.stop().await;
    second.stop().await;
}
