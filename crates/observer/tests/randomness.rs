//! A Byzantine authority that forges its randomness partials changes
//! nothing an observer outputs: following blocks, the observer sets the
//! forged partials aside (or, short of valid ones, takes the commit from
//! the commit stream, with its signature) and gets the validator's
//! randomness, commit for commit.

mod common;

use common::{consume, validator_with};
use dagstream_observer::delivery::load_randomness;
use dagstream_observer::{start_with_metrics, ObserverConfig, ObserverMetrics};
use dagstream_sim::SimConfig;
use dagstream_store::MemStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_partials_change_no_randomness() {
    let sim = SimConfig {
        forged_partials: vec![3],
        ..SimConfig::default()
    };
    let validator = validator_with(100, None, sim).await;
    let (committee, _) = common::committee_and_keys();
    let store = Arc::new(MemStore::new());
    let metrics = ObserverMetrics::unregistered().unwrap();
    let (observer, mut commits) = start_with_metrics(
        committee.clone(),
        store.clone(),
        vec![validator.endpoint()],
        ObserverConfig::default(),
        0,
        metrics.clone(),
    )
    .unwrap();
    // The history comes on the commit stream; the rest from blocks.
    consume(&mut commits, 0, 250).await;
    observer.stop().await.unwrap();

    let verifier = committee.randomness().unwrap();
    let mut rounds = 0;
    for index in 1..=250 {
        let expected = load_randomness(validator.store.as_ref(), index).unwrap();
        for output in &expected {
            verifier.verify(output).unwrap();
        }
        assert_eq!(
            load_randomness(store.as_ref(), index).unwrap(),
            expected,
            "commit {index}"
        );
        rounds += expected.len();
    }
    assert!(rounds > 230, "{rounds} rounds in 250 commits");
    // Following blocks, the forgeries were found and set aside.
    assert!(metrics.randomness_forged_partials.get() > 0);
    validator.stop().await;
}
