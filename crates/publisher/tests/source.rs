//! StoreSource: its cache answers as the store does.

use dagstream_publisher::{Certifier, ConsensusSource, PublisherConfig, StoreSource};
use dagstream_sim::SimConfig;
use dagstream_store::{MemStore, Store};
use dagstream_test_utils::{TestChain, TestCommittee};
use dagstream_types::BlockRef;
use std::sync::Arc;

/// A 4-authority chain of 40 rounds in a `MemStore`, and a source over it
/// with a 10-round tail cache: warmed with rounds 21..=30, then rounds
/// 31..=40 published through it.
fn cached_source_over_40_rounds() -> (Arc<dyn Store>, Arc<StoreSource>) {
    let committee = TestCommittee::new(4, 1);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut chain = TestChain::new(&committee, SimConfig::default(), store.clone());
    chain.produce(30);
    let source = Arc::new(
        StoreSource::with_cache(store.clone(), committee.committee.clone(), 10, 8).unwrap(),
    );
    chain.restart_on(source.clone());
    chain.produce(10);
    (store, source)
}

/// Scans answer the same from the cache as from the store, at every
/// starting point, including past the newest round.
#[test]
fn cached_scans_equal_store_scans() {
    let (store, source) = cached_source_over_40_rounds();
    assert_eq!(source.highest_round(), 40);
    for round in 1..=42 {
        for limit in [1, 3, 1_000] {
            let from = BlockRef::round_start(round);
            assert_eq!(
                source.scan_blocks(from, 40, limit).unwrap(),
                store.scan_blocks(from, 40, limit).unwrap(),
                "from round {round}, limit {limit}"
            );
        }
    }
    let last = store.last_commit_index().unwrap();
    for index in 1..=last + 1 {
        assert_eq!(
            source.commit(index).unwrap().map(|c| c.reference()),
            store.read_commit(index).unwrap().map(|c| c.reference())
        );
    }
}

/// Many blocks at once answer as one at a time, whether they come from the
/// cache, the store, or nowhere.
#[test]
fn blocks_at_once_equal_blocks_one_by_one() {
    let (store, source) = cached_source_over_40_rounds();
    // Rounds 1..=30 only in the store, 31..=40 cached as well.
    let mut refs: Vec<BlockRef> = store
        .scan_blocks(BlockRef::round_start(0), 40, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .rev()
        .step_by(3)
        .collect();
    refs.push(BlockRef::round_start(99));
    let one_by_one: Vec<_> = refs.iter().map(|r| source.block(r).unwrap()).collect();
    assert!(one_by_one.iter().filter(|b| b.is_some()).count() > 40);
    assert_eq!(one_by_one.last(), Some(&None));
    assert_eq!(source.blocks(&refs).unwrap(), one_by_one);
}

/// Memory does not grow with the chain: the tail cache keeps its rounds and
/// commits, and the certifier its certificates, each a bounded count of
/// small items (certificates hold block refs, never block bytes).
#[test]
fn caches_are_bounded_whatever_the_chain_length() {
    let committee = TestCommittee::new(4, 2);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let source = Arc::new(
        StoreSource::with_cache(store.clone(), committee.committee.clone(), 10, 8).unwrap(),
    );
    let config = PublisherConfig {
        certificate_cache_len: 16,
        ..PublisherConfig::default()
    };
    let certifier = Certifier::new(source.clone(), &config);
    let mut chain = TestChain::new(&committee, SimConfig::default(), store.clone());
    chain.restart_on(source.clone());
    let mut feed = source.subscribe();
    for _ in 0..20 {
        chain.produce(10);
        while let Ok(accepted) = feed.try_recv() {
            certifier.on_block(&accepted.block);
        }
        let (blocks, commits) = source.cached();
        assert!(blocks <= 10 * 4, "{blocks} cached blocks");
        assert!(commits <= 8, "{commits} cached commits");
        assert!(certifier.cached_certificates() <= 16);
    }
    // Everything was certified live; an old certificate is found again by
    // a search, and the cache stays within its bound.
    let highest = certifier.highest_certified();
    assert!(highest > 150, "certified up to {highest}");
    let old = certifier
        .certificate(3)
        .unwrap()
        .expect("commit 3 is certified");
    assert_eq!(
        old.commit,
        store.read_commit(3).unwrap().unwrap().reference()
    );
    assert!(old.blocks.len() >= 3, "a quorum of 4 is 3 blocks");
    assert_eq!(certifier.cached_certificates(), 16);
}
