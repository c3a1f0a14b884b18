//! The randomness stage alone: interpolation from partials, forged
//! partials, and what a commit-stream upstream may and may not send.

use crate::randomness::RandomnessStage;
use crate::ObserverError;
use dagstream_store::MemStore;
use dagstream_test_utils::TestCommittee;
use dagstream_types::randomness::{HashedRound, RandomnessDealing};
use dagstream_types::{
    AuthorityIndex, Commit, CommittedSubDag, Digest, RandomnessOutput, SystemMessage,
    TrustedCommit, VerifiedBlock,
};
use std::sync::Arc;

struct Fixture {
    fixture: TestCommittee,
    dealing: RandomnessDealing,
}

impl Fixture {
    /// Four authorities of stake 1: a quorum of 3.
    fn new() -> Self {
        let fixture = TestCommittee::new(4, 9);
        let dealing = fixture.keys.randomness_dealing(4, 3);
        Fixture { fixture, dealing }
    }

    fn stage(&self) -> RandomnessStage {
        RandomnessStage::recover(self.fixture.committee.clone(), &MemStore::new(), 0).unwrap()
    }

    /// `author`'s partial on `round`; `forged`: its shares' signature on
    /// another round.
    fn partial(&self, author: AuthorityIndex, round: u64, forged: bool) -> SystemMessage {
        let signed = if forged { round + 100 } else { round };
        let verifier = self.fixture.committee.randomness().unwrap();
        SystemMessage::RandomnessPartial {
            round,
            shares: self
                .dealing
                .sign_shares(&HashedRound::new(0, signed), verifier.shares_of(author)),
        }
    }

    fn block(
        &self,
        author: AuthorityIndex,
        round: u64,
        messages: Vec<SystemMessage>,
    ) -> VerifiedBlock {
        crate::certify_tests::block(&self.fixture.keys, author, round, messages)
    }

    fn group(&self, round: u64) -> RandomnessOutput {
        self.dealing.sign_group(&HashedRound::new(0, round))
    }
}

/// Commit `index` of `blocks`, the last one its leader.
fn sub_dag(index: u64, blocks: Vec<VerifiedBlock>) -> CommittedSubDag {
    let refs: Vec<_> = blocks.iter().map(|b| b.reference()).collect();
    let commit = Commit {
        index,
        previous_digest: Digest::ZERO,
        timestamp_ms: 0,
        leader: *refs.last().unwrap(),
        blocks: refs,
    };
    CommittedSubDag {
        commit: TrustedCommit::new(commit),
        blocks,
    }
}

#[test]
fn a_round_is_interpolated_from_the_partials_of_its_commit_and_the_pool() {
    let f = Fixture::new();
    let mut stage = f.stage();
    // Commit 1 starts round 1; nothing is generated.
    let first = sub_dag(1, vec![f.block(0, 1, vec![])]);
    assert_eq!(stage.generate(&first, None).unwrap(), Some(vec![]));
    // Authority 2's partial arrived in a block not committed yet.
    stage.observe(&f.block(2, 4, vec![f.partial(2, 1, false)]));
    // Commit 2 brings partials of 0, 1 and 3: a quorum by count.
    let second = sub_dag(
        2,
        vec![
            f.block(0, 3, vec![f.partial(0, 1, false)]),
            f.block(1, 3, vec![f.partial(1, 1, false)]),
            f.block(3, 3, vec![f.partial(3, 1, false)]),
        ],
    );
    assert_eq!(
        stage.generate(&second, None).unwrap(),
        Some(vec![f.group(1)])
    );
    assert_eq!(stage.take_forgeries(), 0);
}

#[test]
fn a_forged_partial_holds_the_round_until_valid_partials_reach_the_threshold() {
    let f = Fixture::new();
    let mut stage = f.stage();
    stage
        .generate(&sub_dag(1, vec![f.block(0, 1, vec![])]), None)
        .unwrap();
    // Authority 3 forges: the count reaches a quorum, the valid partials
    // do not.
    let second = sub_dag(
        2,
        vec![
            f.block(0, 3, vec![f.partial(0, 1, false)]),
            f.block(1, 3, vec![f.partial(1, 1, false)]),
            f.block(3, 3, vec![f.partial(3, 1, true)]),
        ],
    );
    assert_eq!(stage.generate(&second, None).unwrap(), None);
    assert_eq!(stage.take_forgeries(), 1);
    // Nothing moved: the commit is tried again once authority 2's partial
    // is seen, and gets the group's signature.
    stage.observe(&f.block(2, 4, vec![f.partial(2, 1, false)]));
    assert_eq!(
        stage.generate(&second, None).unwrap(),
        Some(vec![f.group(1)])
    );
    // The same commit received with its signature needs no partials.
    let mut fresh = f.stage();
    fresh
        .generate(&sub_dag(1, vec![f.block(0, 1, vec![])]), None)
        .unwrap();
    assert_eq!(
        fresh.generate(&second, Some(&[f.group(1)])).unwrap(),
        Some(vec![f.group(1)])
    );
}

#[test]
fn a_received_commit_must_carry_exactly_the_rounds_its_blocks_generate() {
    let f = Fixture::new();
    let second = sub_dag(
        2,
        vec![
            f.block(0, 3, vec![f.partial(0, 1, false)]),
            f.block(1, 3, vec![f.partial(1, 1, false)]),
            f.block(2, 3, vec![f.partial(2, 1, false)]),
        ],
    );
    let mismatch = |provided: &[RandomnessOutput]| {
        let mut stage = f.stage();
        stage
            .generate(&sub_dag(1, vec![f.block(0, 1, vec![])]), None)
            .unwrap();
        match stage.generate(&second, Some(provided)).unwrap_err() {
            ObserverError::RandomnessMismatch {
                index,
                expected,
                got,
            } => (index, expected, got),
            other => panic!("{other:?}"),
        }
    };
    // Withheld, moved to a round not generated yet, or one too many.
    assert_eq!(mismatch(&[]), (2, vec![1], vec![]));
    assert_eq!(mismatch(&[f.group(2)]), (2, vec![1], vec![2]));
    assert_eq!(
        mismatch(&[f.group(1), f.group(2)]),
        (2, vec![1], vec![1, 2])
    );
    // A chain without randomness has none to receive.
    let plain = TestCommittee::new(4, 9);
    let mut genesis = plain.committee.genesis().clone();
    genesis.randomness = None;
    let committee = Arc::new(dagstream_types::Committee::new(genesis).unwrap());
    let mut stage = RandomnessStage::recover(committee, &MemStore::new(), 0).unwrap();
    assert!(matches!(
        stage.generate(&second, Some(&[f.group(1)])).unwrap_err(),
        ObserverError::RandomnessMismatch { index: 2, .. }
    ));
}

/// After a restart on a pruned store, the stage collects the partials of
/// the commits it still holds.
#[test]
fn recovery_reads_only_the_commits_a_pruned_store_holds() {
    let f = Fixture::new();
    let mut sim = f.fixture.simulator(dagstream_sim::SimConfig::default());
    let store = MemStore::new();
    let mut tip = 0;
    for _ in 0..40 {
        let output = sim.produce_round().unwrap();
        let mut batch = dagstream_store::WriteBatch::new();
        for block in &output.blocks {
            batch.add_block(block);
        }
        for commit in &output.commits {
            batch.add_commit(commit.commit.clone());
            tip = commit.index();
        }
        dagstream_store::Store::write(&store, batch).unwrap();
    }
    assert!(tip > 35, "{tip} commits");
    // Keep the last 10 commits (and their rounds) only.
    let keep_from = tip - 9;
    let round = dagstream_store::Store::read_commit(&store, keep_from)
        .unwrap()
        .unwrap()
        .leader()
        .round;
    dagstream_store::Store::prune(&store, keep_from, round.saturating_sub(5)).unwrap();
    // Reading the pruned commits would fail as a missing commit.
    let recovered = RandomnessStage::recover(f.fixture.committee.clone(), &store, tip);
    assert!(recovered.is_ok(), "{:?}", recovered.err());
}
