//! Property: observers of two upstreams, each delivering the blocks of
//! several epochs in its own shuffled order (the hand-off of each epoch
//! after that epoch's blocks, before the next one's), agree with each
//! other and with the committee on every commit, every checkpoint and
//! every committee.
//!
//! The stages run as the node wires them (consensus core, sequencer,
//! certifier, an atomic write per step, the hand-off verified with the
//! committee trusted so far), over a `MemStore` and no sockets.

use dagstream_observer::certify::Certifier;
use dagstream_observer::derive::Deriver;
use dagstream_observer::sequencer::Sequencer;
use dagstream_sim::{Profile, SimConfig};
use dagstream_store::{epoch_change_key, MemStore, Store, WriteBatch};
use dagstream_test_utils::TestCommittee;
use dagstream_types::{
    CheckpointSummary, CommitRef, Committee, Digest, EpochChange, VerifiedBlock,
};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

/// The committee's chain: each epoch's blocks, and the hand-off that
/// ended it (none for the last, still going).
struct Chain {
    genesis: Arc<Committee>,
    epochs: Vec<(Vec<VerifiedBlock>, Option<EpochChange>)>,
    commits: Vec<CommitRef>,
    checkpoints: Vec<CheckpointSummary>,
}

/// 90 rounds of a 4-authority committee, an epoch every 10 rounds; made
/// once.
fn chain() -> &'static Chain {
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let committee = TestCommittee::new(4, 21);
        let mut sim = committee.simulator(SimConfig {
            epoch_rounds: 10,
            ..Profile::Small.sim_config(21)
        });
        let mut epochs = vec![(Vec::new(), None)];
        let (mut commits, mut checkpoints) = (Vec::new(), Vec::new());
        for _ in 0..90 {
            let output = sim.produce_round().unwrap();
            let current = epochs.last_mut().unwrap();
            current.0.extend(output.blocks);
            commits.extend(output.commits.iter().map(|c| c.reference()));
            checkpoints.extend(output.checkpoints);
            if let Some(change) = output.epoch_change {
                current.1 = Some(change);
                epochs.push((Vec::new(), None));
            }
        }
        assert!(epochs.len() >= 6, "{} epochs", epochs.len());
        Chain {
            genesis: committee.committee.clone(),
            epochs,
            commits,
            checkpoints,
        }
    })
}

/// The node's stages following one upstream.
struct Follower {
    store: MemStore,
    committee: Arc<Committee>,
    deriver: Deriver,
    sequencer: Sequencer,
    certifier: Certifier,
    commits: Vec<CommitRef>,
}

impl Follower {
    fn new(genesis: &Arc<Committee>) -> Follower {
        let store = MemStore::new();
        Follower {
            deriver: Deriver::recover(genesis.clone(), &store).unwrap(),
            sequencer: Sequencer::recover(&store, genesis.clone(), None).unwrap(),
            certifier: Certifier::recover(genesis.clone(), &store).unwrap(),
            committee: genesis.clone(),
            commits: Vec::new(),
            store,
        }
    }

    /// Verified blocks of the current epoch: derive, sequence, certify,
    /// write.
    fn blocks(&mut self, blocks: &[VerifiedBlock]) {
        for block in blocks {
            assert_eq!(block.epoch(), self.committee.epoch());
            self.certifier.observe(block);
            self.sequencer.observe(block);
        }
        let derived = self.deriver.add_blocks(blocks.to_vec()).unwrap();
        let Some(mut sequenced) = self.sequencer.sequence(derived, &self.store).unwrap() else {
            return;
        };
        self.certifier.on_sequenced(&sequenced, false, false);
        self.certifier.take_certified(&mut sequenced.batch);
        self.commits
            .extend(sequenced.sub_dags.iter().map(|d| d.sub_dag.reference()));
        self.store.write(sequenced.batch).unwrap();
    }

    /// A hand-off: verified with the committee trusted so far and this
    /// follower's own last checkpoint, then every stage switches.
    fn hand_off(&mut self, change: &EpochChange) {
        let last = *self
            .sequencer
            .ended()
            .expect("the epoch's last commit came");
        let next = Arc::new(change.verify(&self.committee, &last).unwrap());
        let mut batch = WriteBatch::new();
        batch.put_meta(epoch_change_key(change.epoch()), change.encode());
        let tip = self.sequencer.tip().cloned().unwrap();
        self.sequencer
            .start_epoch(next.clone(), &change.certificate.summary, &mut batch);
        self.certifier
            .start_epoch(next.clone(), change.certificate.clone());
        self.certifier.take_certified(&mut batch);
        self.deriver.start_epoch(next.clone(), tip);
        self.store.write(batch).unwrap();
        self.committee = next;
    }

    /// The stored summaries, in order.
    fn checkpoints(&self) -> Vec<CheckpointSummary> {
        (0..)
            .map_while(|sequence| {
                dagstream_observer::checkpoint::load_summary(&self.store, sequence).unwrap()
            })
            .collect()
    }

    /// The committee digests of the stored hand-offs, in order.
    fn committees(&self) -> Vec<Digest> {
        (0..)
            .map_while(|epoch| self.store.read_meta(&epoch_change_key(epoch)).unwrap())
            .map(|bytes| EpochChange::decode(&bytes).unwrap().next.digest())
            .collect()
    }
}

/// `blocks` in the order `keys` gives (a permutation by sort keys), in
/// steps of `step` blocks.
fn shuffled(blocks: &[VerifiedBlock], keys: &[u32], step: usize) -> Vec<Vec<VerifiedBlock>> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| keys[i % keys.len()].wrapping_mul(i as u32 + 1));
    order
        .chunks(step.max(1))
        .map(|chunk| chunk.iter().map(|&i| blocks[i].clone()).collect())
        .collect()
}

fn follow(keys: &[u32], step: usize) -> Follower {
    let chain = chain();
    let mut follower = Follower::new(&chain.genesis);
    for (blocks, change) in &chain.epochs {
        for batch in shuffled(blocks, keys, step) {
            follower.blocks(&batch);
        }
        if let Some(change) = change {
            follower.hand_off(change);
        }
    }
    follower
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn two_shuffled_upstreams_give_the_same_chain_checkpoints_and_committees(
        keys_a in prop::collection::vec(any::<u32>(), 1..64),
        keys_b in prop::collection::vec(any::<u32>(), 1..64),
        step_a in 1usize..40,
        step_b in 1usize..40,
    ) {
        let chain = chain();
        let a = follow(&keys_a, step_a);
        let b = follow(&keys_b, step_b);
        // Every commit of the chain up to the last one the blocks decide,
        // in order, on both.
        prop_assert_eq!(&a.commits, &b.commits);
        prop_assert_eq!(&a.commits[..], &chain.commits[..a.commits.len()]);
        prop_assert!(a.commits.len() + 3 >= chain.commits.len());
        // The same checkpoints, equal to the committee's own.
        let (checkpoints_a, checkpoints_b) = (a.checkpoints(), b.checkpoints());
        prop_assert_eq!(&checkpoints_a, &checkpoints_b);
        prop_assert_eq!(&checkpoints_a[..], &chain.checkpoints[..checkpoints_a.len()]);
        // The same committees, handed over by the committee's hand-offs.
        let expected: Vec<Digest> = chain
            .epochs
            .iter()
            .filter_map(|(_, change)| change.as_ref().map(|c| c.next.digest()))
            .collect();
        prop_assert_eq!(a.committees(), expected.clone());
        prop_assert_eq!(b.committees(), expected);
        prop_assert_eq!(a.committee.digest(), b.committee.digest());
    }
}
