//! A simulator that crashes and recovers from its store continues the chain
//! exactly as if it had never stopped.

use dagstream_sim::{generate, GenesisParams, Profile, SimConfig, SimError, Simulator};
use dagstream_store::{MemStore, RedbStore, Store};
use dagstream_types::{BlockLimits, Bytes, CommitRef, Committee};
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
