//! StoreSource: its cache answers as the store does.

use dagstream_publisher::{ConsensusSource, StoreSource};
use dagstream_sim::SimConfig;
use dagstream_store::{MemStore, Store};
use dagstream_test_utils::{TestChain, TestCommittee};
use dagstream_types::BlockRef;
use std::sync::Arc;

/// Scans answer the same from the cache as from the store, at every
/// starting point, including past the newest round.
#[test]
fn cached_scans_equal_store_scans() {
    let committee = TestCommittee::new(4, 1);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut chain = TestChain::new(&committee, SimConfig::default(), store.clone());
    chain.produce(30);
    // Warmed with rounds 21..=30, then rounds 31..=40 published.
    let source = Arc::new(
        StoreSource::with_cache(store.clone(), committee.committee.clone(), 10, 8).unwrap(),
    );
    chain.restart_on(source.clone());
    chain.produce(10);
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
