//! The key property of the commit rule: the same blocks in any order, with
//! duplicates, give the same commit sequence.
//!
//! The seed comes from `DAGSTREAM_TEST_SEED` when set, and is printed so that
//! a failure can be replayed.

use crate::test_dag::{test_committee, DagBuilder};
use crate::{DagConfig, DagConsensus};
// A second copy of this crate comes with test-utils (through the
// simulator); only this function, which returns a u64, is used from it.
use dagstream_test_utils::test_seed;
use dagstream_types::{AuthorityIndex, CommitRef, Round, VerifiedBlock};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// A random DAG: each round a random live set of at least quorum stake
/// produces, each block references its own previous block plus a random
/// subset of the previous round of at least quorum stake.
fn random_dag(rng: &mut StdRng, gc_depth: Round, rounds: Round) -> DagBuilder {
    let n = rng.random_range(4..=7);
    let stakes: Vec<u64> = (0..n).map(|_| rng.random_range(1..=3)).collect();
    let mut dag = DagBuilder::with_committee(test_committee(&stakes, gc_depth));
    let committee = dag.committee();
    let mut previous: Vec<AuthorityIndex> = committee.indexes().collect();
    for round in 1..=rounds {
        let mut producers: Vec<AuthorityIndex> = committee.indexes().collect();
        producers.shuffle(rng);
        // Drop authorities while a quorum stays live.
        while producers.len() > 1 && rng.random_bool(0.3) {
            let remaining: u64 = producers[..producers.len() - 1]
                .iter()
                .map(|a| committee.stake(*a))
                .sum();
            if !committee.reached_quorum(remaining) {
                break;
            }
            producers.pop();
        }
        let mut builder = dag.round(round).producers(&producers);
        for &author in &producers {
            let mut pool = previous.clone();
            pool.shuffle(rng);
            let mut parents = vec![author];
            let mut stake: u64 = 0;
            for parent in pool {
                let needed = !committee.reached_quorum(stake);
                if needed || rng.random_bool(0.5) {
                    stake += committee.stake(parent);
                    if !parents.contains(&parent) {
                        parents.push(parent);
                    }
                }
            }
            builder = builder.parents(author, &parents);
        }
        builder.build();
        previous = producers;
    }
    dag
}

fn commit_sequence(
    dag: &DagBuilder,
    batches: impl IntoIterator<Item = Vec<VerifiedBlock>>,
) -> Vec<CommitRef> {
    let mut core = DagConsensus::new(dag.committee(), DagConfig::default());
    let mut sequence = Vec::new();
    for batch in batches {
        let output = core.add_blocks(batch).unwrap();
        sequence.extend(output.commits.iter().map(|c| c.reference()));
    }
    sequence
}

fn shuffled_order_gives_the_same_commits(gc_depth: Round) {
    let seed = test_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    for case in 0..8 {
        let dag = random_dag(&mut rng, gc_depth, 40);
        let in_order = commit_sequence(&dag, dag.blocks().iter().map(|b| vec![b.clone()]));
        assert!(
            in_order.len() >= 10,
            "seed {seed} case {case}: only {} commits",
            in_order.len()
        );

        // Shuffled, with a quarter of the blocks sent twice, fed in random
        // batch sizes.
        let mut blocks = dag.blocks().to_vec();
        let duplicates: Vec<_> = blocks
            .iter()
            .filter(|_| rng.random_bool(0.25))
            .cloned()
            .collect();
        blocks.extend(duplicates);
        blocks.shuffle(&mut rng);
        let mut batches = Vec::new();
        while !blocks.is_empty() {
            let take = rng.random_range(1..=blocks.len().min(20));
            batches.push(blocks.drain(..take).collect::<Vec<_>>());
        }
        let shuffled = commit_sequence(&dag, batches);
        assert_eq!(in_order, shuffled, "seed {seed} case {case}");
    }
}

#[test]
fn shuffled_duplicated_blocks_give_identical_commits() {
    shuffled_order_gives_the_same_commits(dagstream_types::DEFAULT_GC_DEPTH_ROUNDS);
}

#[test]
fn shuffled_duplicated_blocks_give_identical_commits_with_shallow_gc() {
    shuffled_order_gives_the_same_commits(2);
}

/// An authority that signs two blocks for one round (equivocates), each
/// referenced by part of the committee: every arrival order still gives the
/// same commits, and both blocks are accepted.
#[test]
fn equivocation_gives_identical_commits_in_any_order() {
    let seed = test_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dag = DagBuilder::new(4);
    dag.layers(1..=4);
    dag.round(5).equivocate(1, &[2, 3]).build();
    dag.layers(6..=20);
    let twin_count = dag
        .blocks()
        .iter()
        .filter(|b| b.round() == 5 && b.author() == 1)
        .count();
    assert_eq!(twin_count, 2);

    let mut core = DagConsensus::new(dag.committee(), DagConfig::default());
    let output = core.add_blocks(dag.blocks().to_vec()).unwrap();
    assert_eq!(
        output.accepted.len(),
        dag.blocks().len(),
        "both versions accepted"
    );
    let in_order: Vec<_> = output.commits.iter().map(|c| c.reference()).collect();
    assert!(in_order.len() >= 15);
    for case in 0..10 {
        let mut blocks = dag.blocks().to_vec();
        blocks.extend(dag.blocks()[..20].to_vec());
        blocks.shuffle(&mut rng);
        let shuffled = commit_sequence(&dag, blocks.into_iter().map(|b| vec![b]));
        assert_eq!(shuffled, in_order, "seed {seed} case {case}");
    }
}
