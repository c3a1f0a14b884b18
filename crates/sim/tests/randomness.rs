//! The simulated committee's randomness: partials in blocks, rounds placed
//! by the tally, and signatures equal to what the partials interpolate to.

use dagstream_sim::{generate, GenesisParams, Profile, Simulator};
use dagstream_types::randomness::HashedRound;
use dagstream_types::{
    AuthorityIndex, BlockLimits, BlsSignature, CommitIndex, Committee, RandomnessOutput,
    RandomnessTally, SystemMessage,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[test]
fn every_commit_gets_its_round_signed_by_the_group_from_committed_partials() {
    let (genesis, keys) = generate(&GenesisParams {
        authorities: 7,
        round_interval_ms: 100,
        genesis_time_ms: 1_700_000_000_000,
        gc_depth_rounds: 50,
        seed: 5,
    });
    let committee = Arc::new(Committee::new(genesis).unwrap());
    let mut config = Profile::Small.sim_config(5);
    config.crashed = vec![6];
    let mut sim = Simulator::new(committee.clone(), keys, config, &BlockLimits::default()).unwrap();
    let outputs: Vec<_> = (0..150).map(|_| sim.produce_round().unwrap()).collect();
    let verifier = committee.randomness().unwrap();

    let mut tally = RandomnessTally::default();
    // Committed partials so far, by round.
    let mut committed: HashMap<u64, Vec<(AuthorityIndex, Vec<BlsSignature>)>> = HashMap::new();
    let mut placed: BTreeMap<CommitIndex, Vec<RandomnessOutput>> = BTreeMap::new();
    let mut last_commit = 0;
    for commit in outputs.iter().flat_map(|o| &o.commits) {
        last_commit = commit.index();
        for block in &commit.blocks {
            for message in block.system_messages() {
                let SystemMessage::RandomnessPartial { round, shares } = message else {
                    continue;
                };
                // Every partial is its author's shares' signature.
                let hashed = HashedRound::new(0, *round);
                assert!(verifier.verify_partial(&hashed, block.author(), shares));
                committed
                    .entry(*round)
                    .or_default()
                    .push((block.author(), shares.clone()));
            }
        }
        let generated = tally.on_commit(commit.index(), &commit.blocks, &committee);
        let outputs: Vec<RandomnessOutput> = generated
            .iter()
            .map(|round| {
                let partials: Vec<(AuthorityIndex, &[BlsSignature])> = committed[round]
                    .iter()
                    .map(|(a, s)| (*a, s.as_slice()))
                    .collect();
                let aggregation = verifier.aggregate(&HashedRound::new(0, *round), &partials);
                assert!(aggregation.forgers.is_empty());
                aggregation.output.expect("a quorum of partials")
            })
            .collect();
        if !outputs.is_empty() {
            placed.insert(commit.index(), outputs);
        }
    }
    // The simulator placed the same rounds at the same commits, with the
    // signatures the partials interpolate to.
    let simulated: BTreeMap<CommitIndex, Vec<RandomnessOutput>> = outputs
        .iter()
        .flat_map(|o| o.randomness.iter().cloned())
        .collect();
    assert_eq!(simulated, placed);
    // Every round but the last few is generated, within 8 commits.
    let generated: Vec<(CommitIndex, u64)> = placed
        .iter()
        .flat_map(|(c, outputs)| outputs.iter().map(move |o| (*c, o.round)))
        .collect();
    assert!(generated.len() as u64 > last_commit - 8, "{generated:?}");
    for (commit, round) in &generated {
        assert!(
            (round + 1..=round + 8).contains(commit),
            "round {round} at {commit}"
        );
    }
}
