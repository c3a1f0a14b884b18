//! The simulated committee across epochs: each hand-off is certified by
//! the committee that ends, the commit chain goes on without a gap, a node
//! that runs the commit rule over the blocks alone places every boundary
//! where the committee did, and recovery continues the same chain from any
//! round, the boundary's included.

use dagstream_dag::{DagConfig, DagConsensus};
use dagstream_sim::{generate, GenesisParams, Profile, RoundOutput, SimConfig, Simulator};
use dagstream_store::{epoch_change_key, MemStore, Store};
use dagstream_types::epoch::EndOfPublishTally;
use dagstream_types::{
    BlockLimits, Bytes, CheckpointKind, CheckpointSummary, CommitRef, Committee, EpochChange,
    TrustedCommit,
};
use std::sync::Arc;

const EPOCH_ROUNDS: u64 = 12;

fn setup(config: &SimConfig) -> (Arc<Committee>, dagstream_sim::CommitteeKeys) {
    let (genesis, keys) = generate(&GenesisParams {
        authorities: 7,
        round_interval_ms: 100,
        genesis_time_ms: 0,
        gc_depth_rounds: 5,
        seed: config.seed,
    });
    (Arc::new(Committee::new(genesis).unwrap()), keys)
}

/// A slow authority and sparse parents (indirect decisions), randomness,
/// and an epoch every 12 rounds.
fn config() -> SimConfig {
    SimConfig {
        slow: vec![4],
        extra_parent_percent: 50,
        epoch_rounds: EPOCH_ROUNDS,
        ..Profile::Small.sim_config(31)
    }
}

fn recover(store: &dyn Store) -> Simulator {
    let (committee, keys) = setup(&config());
    Simulator::recover(committee, keys, config(), &BlockLimits::default(), store).unwrap()
}

fn run(sim: &mut Simulator, store: &dyn Store, rounds: usize) -> Vec<RoundOutput> {
    (0..rounds)
        .map(|_| {
            let output = sim.produce_round().unwrap();
            store.write(sim.batch_for(&output)).unwrap();
            output
        })
        .collect()
}

#[test]
fn each_hand_off_is_certified_by_the_ending_committee_and_the_chain_goes_on() {
    let store = MemStore::new();
    let mut sim = recover(&store);
    let genesis = sim.committee().clone();
    let outputs = run(&mut sim, &store, 110);

    let mut committee = genesis;
    let mut summaries: Vec<CheckpointSummary> = Vec::new();
    let mut last_commit: Option<TrustedCommit> = None;
    let mut changes = 0;
    for output in &outputs {
        for block in &output.blocks {
            assert_eq!(block.epoch(), committee.epoch(), "round {}", output.round);
            assert!(block.round() > committee.genesis_round());
        }
        for commit in &output.commits {
            let expected = last_commit.as_ref().map_or(1, |c| c.index() + 1);
            assert_eq!(commit.index(), expected, "commits without a gap");
            if let Some(previous) = &last_commit {
                commit
                    .commit
                    .commit()
                    .check_follows(Some(previous))
                    .unwrap();
            }
            last_commit = Some(commit.commit.clone());
        }
        summaries.extend(output.checkpoints.iter().copied());
        let Some(change) = &output.epoch_change else {
            continue;
        };
        changes += 1;
        // The final checkpoint: the epoch's last commit, after its last
        // checkpoint, which the simulator closed before it.
        let [.., last, final_checkpoint] = summaries.as_slice() else {
            panic!("an epoch without checkpoints");
        };
        assert_eq!(final_checkpoint.kind, CheckpointKind::EndOfEpoch);
        assert_eq!(change.certificate.summary, *final_checkpoint);
        assert_eq!(
            final_checkpoint.last_commit,
            last_commit.as_ref().unwrap().index()
        );
        assert_eq!(change.next.genesis_round, output.round);
        let next = change.verify(&committee, last).unwrap();
        // One authority left and one joined, every key is new, stakes and
        // randomness keys changed.
        assert_eq!(next.epoch(), committee.epoch() + 1);
        assert_eq!(next.size(), committee.size());
        for authority in next.authorities() {
            assert!(committee
                .authorities()
                .all(|old| old.public_key != authority.public_key));
        }
        assert!(next.total_stake() > committee.total_stake() - 1);
        assert!(next.authorities().any(|a| a.stake == 2));
        assert!(next.randomness().is_some());
        assert_ne!(
            next.genesis().randomness,
            committee.genesis().randomness,
            "shares dealt again"
        );
        // Stored with the round, for publishers and recovery.
        let stored = store
            .read_meta(&epoch_change_key(committee.epoch()))
            .unwrap()
            .unwrap();
        assert_eq!(EpochChange::decode(&stored).unwrap(), *change);
        committee = Arc::new(next);
    }
    assert!(changes >= 4, "{changes} epochs in 110 rounds");
    assert_eq!(sim.committee().epoch(), changes);
    // Checkpoint sequences and their chain go on across epochs.
    for pair in summaries.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence + 1);
        assert_eq!(pair[1].previous_digest, pair[0].digest());
    }
}

#[test]
fn the_commit_rule_over_the_blocks_places_every_boundary_where_the_committee_did() {
    let store = MemStore::new();
    let mut sim = recover(&store);
    let mut committee = sim.committee().clone();
    let outputs = run(&mut sim, &store, 110);
    let expected: Vec<CommitRef> = outputs
        .iter()
        .flat_map(|o| o.commits.iter().map(|c| c.reference()))
        .collect();

    // An observer: one core per epoch, fed every block; the commits after
    // the one that brings a quorum of end-of-publish are not the chain's.
    let mut core = DagConsensus::new(committee.clone(), DagConfig::default());
    let mut tally = EndOfPublishTally::default();
    let mut ended: Option<TrustedCommit> = None;
    let mut derived: Vec<CommitRef> = Vec::new();
    for output in &outputs {
        let commits = core
            .add_blocks(output.blocks.iter().cloned())
            .unwrap()
            .commits;
        for commit in commits {
            if ended.is_some() {
                continue;
            }
            derived.push(commit.reference());
            if tally.on_commit(&commit.blocks, &committee) {
                ended = Some(commit.commit.clone());
            }
        }
        if let Some(change) = &output.epoch_change {
            committee = Arc::new(change.next.committee().unwrap());
            core = DagConsensus::new_epoch(committee.clone(), DagConfig::default(), ended.take());
            tally = EndOfPublishTally::default();
        }
    }
    assert_eq!(derived, expected);
}

/// Block bytes, commits and hand-offs of each round.
type Trace = Vec<(Vec<Bytes>, Vec<CommitRef>, Option<EpochChange>)>;

fn trace(outputs: Vec<RoundOutput>) -> Trace {
    outputs
        .into_iter()
        .map(|o| {
            (
                o.blocks.iter().map(|b| b.serialized().clone()).collect(),
                o.commits.iter().map(|c| c.reference()).collect(),
                o.epoch_change,
            )
        })
        .collect()
}

#[test]
fn recovery_at_any_round_of_the_boundary_continues_the_same_chain() {
    let rounds = 70;
    let (uninterrupted, switches) = {
        let store = MemStore::new();
        let mut sim = recover(&store);
        let outputs = run(&mut sim, &store, rounds);
        let switches: Vec<u64> = outputs
            .iter()
            .filter(|o| o.epoch_change.is_some())
            .map(|o| o.round)
            .collect();
        (trace(outputs), switches)
    };
    assert!(switches.len() >= 2);
    // Around each boundary: the round that decides the last commit (two
    // before the switch), the rounds that carry the final signatures, the
    // switch, and the next committee's first rounds.
    let mut splits: Vec<u64> = switches
        .iter()
        .flat_map(|&s| [s - 2, s - 1, s, s + 1, s + 2])
        .filter(|&s| s < rounds as u64)
        .collect();
    splits.dedup();
    for split in splits {
        let store = MemStore::new();
        let mut before = recover(&store);
        let mut got = trace(run(&mut before, &store, split as usize));
        drop(before);
        let mut after = recover(&store);
        assert_eq!(after.next_round(), split + 1);
        got.extend(trace(run(&mut after, &store, rounds - split as usize)));
        assert!(got == uninterrupted, "recovered after round {split}");
    }
}
