//! A simulator that crashes and recovers from its store continues the chain
//! exactly as if it had never stopped.

use dagstream_sim::{generate, GenesisParams, Profile, SimConfig, SimError, Simulator};
use dagstream_store::{MemStore, RedbStore, Store};
use dagstream_types::{BlockLimits, BlockRef, Bytes, CommitRef, Committee};
use std::sync::Arc;

fn setup(config: &SimConfig) -> (Arc<Committee>, dagstream_sim::CommitteeKeys) {
    let (genesis, keys) = generate(&GenesisParams {
        authorities: 7,
        round_interval_ms: 100,
        genesis_time_ms: 0,
        // Shallow GC, so that recovery happens with blocks already dropped.
        gc_depth_rounds: 5,
        seed: config.seed,
    });
    (Arc::new(Committee::new(genesis).unwrap()), keys)
}

/// Sparse parents and a slow authority: skips and indirect decisions.
fn config() -> SimConfig {
    SimConfig {
        slow: vec![4],
        extra_parent_percent: 50,
        ..Profile::Small.sim_config(31)
    }
}

/// Block bytes and commit refs of each round.
type Trace = Vec<(Vec<Bytes>, Vec<CommitRef>)>;

/// Runs rounds `count` rounds, writing each to `store`.
fn run(sim: &mut Simulator, store: &dyn Store, count: usize) -> Trace {
    (0..count)
        .map(|_| {
            let output = sim.produce_round().unwrap();
            store.write(sim.batch_for(&output)).unwrap();
            (
                output
                    .blocks
                    .iter()
                    .map(|b| b.serialized().clone())
                    .collect(),
                output.commits.iter().map(|c| c.reference()).collect(),
            )
        })
        .collect()
}

fn recover(store: &dyn Store, config: SimConfig) -> Result<Simulator, SimError> {
    let (committee, keys) = setup(&config);
    Simulator::recover(committee, keys, config, &BlockLimits::default(), store)
}

#[test]
fn recovery_at_any_round_continues_the_same_chain() {
    let uninterrupted = {
        let store = MemStore::new();
        let mut sim = recover(&store, config()).unwrap();
        run(&mut sim, &store, 150)
    };
    assert!(uninterrupted.iter().map(|(_, c)| c.len()).sum::<usize>() > 80);
    for split in [1, 2, 3, 17, 64, 100, 149] {
        let store = MemStore::new();
        let mut before = recover(&store, config()).unwrap();
        let mut trace = run(&mut before, &store, split);
        drop(before);
        let mut after = recover(&store, config()).unwrap();
        assert_eq!(after.next_round(), split as u64 + 1);
        trace.extend(run(&mut after, &store, 150 - split));
        assert_eq!(trace, uninterrupted, "recovered after round {split}");
    }
}

/// A node that writes each block as it is signed crashes after `written`
/// blocks of round `split + 1`, before the round's end: recovery ignores
/// those blocks, makes them again byte for byte, and the chain goes on.
#[test]
fn recovery_after_a_round_written_block_by_block_was_cut_short() {
    let uninterrupted = {
        let store = MemStore::new();
        let mut sim = recover(&store, config()).unwrap();
        run(&mut sim, &store, 60)
    };
    for (split, written) in [(0, 1), (10, 3), (33, 6)] {
        let store = MemStore::new();
        let mut sim = recover(&store, config()).unwrap();
        let mut trace = run(&mut sim, &store, split);
        // The round in flight: each block durable alone, then the crash.
        let mut blocks = 0;
        sim.produce_round_with(|block| {
            if blocks < written {
                let mut batch = dagstream_store::WriteBatch::new();
                batch.add_block(block);
                store.write(batch).unwrap();
            }
            blocks += 1;
        })
        .unwrap();
        drop(sim);
        assert_eq!(
            store.highest_block_round().unwrap(),
            Some(split as u64 + 1),
            "part of the round is in the store"
        );
        let mut after = recover(&store, config()).unwrap();
        assert_eq!(after.next_round(), split as u64 + 1);
        trace.extend(run(&mut after, &store, 60 - split));
        assert_eq!(
            trace,
            uninterrupted,
            "cut after {written} blocks of round {}",
            split + 1
        );
    }
}

/// Writing each block as it is signed, then the round's end, stores the
/// same chain as writing each round at once.
#[test]
fn writing_block_by_block_stores_the_same_chain() {
    let whole = MemStore::new();
    let mut sim = recover(&whole, config()).unwrap();
    run(&mut sim, &whole, 40);
    let by_block = MemStore::new();
    let mut sim = recover(&by_block, config()).unwrap();
    for _ in 0..40 {
        let output = sim
            .produce_round_with(|block| {
                let mut batch = dagstream_store::WriteBatch::new();
                batch.add_block(block);
                by_block.write(batch).unwrap();
            })
            .unwrap();
        by_block.write(sim.round_end_batch(&output)).unwrap();
    }
    let blocks = |store: &MemStore| {
        store
            .scan_blocks(BlockRef::round_start(0), 40, usize::MAX)
            .unwrap()
    };
    let commits = |store: &MemStore| {
        store
            .scan_commits(1, usize::MAX)
            .unwrap()
            .iter()
            .map(|c| c.reference())
            .collect::<Vec<_>>()
    };
    assert_eq!(blocks(&by_block), blocks(&whole));
    assert_eq!(commits(&by_block), commits(&whole));
    let resumed = recover(&by_block, config()).unwrap();
    assert_eq!(resumed.next_round(), 41);
}

#[test]
fn recovery_from_a_reopened_redb_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("validator.redb");
    let uninterrupted = {
        let store = MemStore::new();
        let mut sim = recover(&store, config()).unwrap();
        run(&mut sim, &store, 90)
    };
    let mut trace = {
        let store = RedbStore::open(&path).unwrap();
        let mut sim = recover(&store, config()).unwrap();
        run(&mut sim, &store, 40)
    };
    let store = RedbStore::open(&path).unwrap();
    let mut sim = recover(&store, config()).unwrap();
    trace.extend(run(&mut sim, &store, 50));
    assert_eq!(trace, uninterrupted);
    // The stored commit sequence is the chain itself.
    let stored: Vec<CommitRef> = store
        .scan_commits(1, usize::MAX)
        .unwrap()
        .iter()
        .map(|c| c.reference())
        .collect();
    let produced: Vec<CommitRef> = uninterrupted.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(stored, produced);
}

#[test]
fn a_store_of_another_chain_is_refused() {
    let store = MemStore::new();
    let mut sim = recover(&store, config()).unwrap();
    run(&mut sim, &store, 5);
    let other = SimConfig { tps: 7, ..config() };
    assert!(matches!(
        recover(&store, other),
        Err(SimError::DifferentChain { .. })
    ));
}
