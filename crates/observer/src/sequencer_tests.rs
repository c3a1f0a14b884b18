//! The stages behind the network, over a `MemStore` and no sockets: the
//! block path ([`Deriver`]), the [`Sequencer`], checkpoints, the
//! [`Certifier`] and [`Delivery`], wired as the node wires them.

use crate::certify::{Certified, Certifier};
use crate::checkpoint::{load_certification, load_summary, CheckpointLookup};
use crate::delivery::{DeliveredSubDag, Delivery};
use crate::derive::Deriver;
use crate::sequencer::{decide, Sequencer, Sequencing};
use crate::ObserverError;
use dagstream_sim::SimConfig;
use dagstream_store::{MemStore, Store};
use dagstream_test_utils::TestCommittee;
use dagstream_types::{
    CheckpointBuilder, CommittedSubDag, Committee, Digest, RandomnessOutput, TrustedCommit,
    VerifiedBlock,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

struct Chain {
    committee: Arc<Committee>,
    /// Every block, in production order.
    blocks: Vec<VerifiedBlock>,
    /// Every commit, in order.
    commits: Vec<CommittedSubDag>,
    /// Each commit's checkpoint, placed in order from commit 1.
    checkpoints: Vec<u64>,
    /// Each commit's randomness, as the committee generated it.
    randomness: Vec<Vec<RandomnessOutput>>,
}

/// 40 rounds of a 4-authority committee, made once.
fn chain() -> &'static Chain {
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let fixture = TestCommittee::new(4, 5);
        let committee = fixture.committee.clone();
        let mut sim = fixture.simulator(SimConfig::default());
        let (mut blocks, mut commits) = (Vec::new(), Vec::new());
        let mut generated = HashMap::new();
        for _ in 0..40 {
            let output = sim.produce_round().unwrap();
            blocks.extend(output.blocks);
            commits.extend(output.commits);
            generated.extend(output.randomness);
        }
        let randomness: Vec<Vec<RandomnessOutput>> = commits
            .iter()
            .map(|c| generated.remove(&c.index()).unwrap_or_default())
            .collect();
        let mut builder = CheckpointBuilder::new(committee.epoch());
        let checkpoints = commits
            .iter()
            .zip(&randomness)
            .map(|(c, generated)| {
                let commit = &c.commit;
                builder
                    .place(
                        commit.index(),
                        commit.digest(),
                        commit.timestamp_ms(),
                        generated,
                    )
                    .sequence
            })
            .collect();
        Chain {
            committee,
            blocks,
            commits,
            checkpoints,
            randomness,
        }
    })
}

/// A delivered commit: index, digest, checkpoint, randomness.
type Outline = (u64, Digest, u64, Vec<RandomnessOutput>);

/// What the consumer should get: every commit, each with its checkpoint
/// and the randomness the committee generated with it.
fn expected(chain: &Chain, after: usize) -> Vec<Outline> {
    chain.commits[after..]
        .iter()
        .zip(&chain.checkpoints[after..])
        .zip(&chain.randomness[after..])
        .map(|((c, checkpoint), randomness)| {
            (
                c.index(),
                c.commit.digest(),
                *checkpoint,
                randomness.clone(),
            )
        })
        .collect()
}

fn outline(delivered: &[DeliveredSubDag]) -> Vec<Outline> {
    delivered
        .iter()
        .map(|d| {
            (
                d.index(),
                d.sub_dag.commit.digest(),
                d.checkpoint,
                d.randomness.clone(),
            )
        })
        .collect()
}

/// The checkpoints certified by the signatures in committed blocks alone,
/// as a catch-up over the commit stream finds them.
fn certifiable() -> &'static Vec<u64> {
    static CERTIFIABLE: OnceLock<Vec<u64>> = OnceLock::new();
    CERTIFIABLE.get_or_init(|| {
        let chain = chain();
        let mut pipeline = Pipeline::new(Arc::new(MemStore::new()), 0, 1_000);
        pipeline.commits(&chain.commits).unwrap();
        let sequences = sequences(&pipeline.certified);
        // All but the newest closed checkpoints (two, each with its
        // randomness checkpoint), whose signatures are in blocks not
        // committed yet.
        let closed = *chain.checkpoints.last().unwrap();
        assert!(
            sequences.len() as u64 + 4 >= closed,
            "{sequences:?} of {closed}"
        );
        sequences
    })
}

/// The certified checkpoints' sequences, sorted, each checked: the
/// summary the store holds, with its own valid certificate stored, or
/// chained to a later one's.
fn checked(pipeline: &Pipeline) -> Vec<u64> {
    let committee = &chain().committee;
    let store = pipeline.store.as_ref();
    for certified in &pipeline.certified {
        let sequence = certified.summary.sequence;
        assert_eq!(
            load_summary(store, sequence).unwrap(),
            Some(certified.summary)
        );
        let certification = load_certification(store, sequence).unwrap().unwrap();
        certification.certificate.verify(committee).unwrap();
        assert_eq!(certification.chain[0], certified.summary);
        match &certified.certificate {
            Some(certificate) => {
                assert_eq!(&certification.certificate, certificate);
                assert_eq!(certification.chain.len(), 1);
            }
            None => assert!(certification.chain.len() > 1),
        }
    }
    sequences(&pipeline.certified)
}

fn sequences(certified: &[Certified]) -> Vec<u64> {
    let mut sequences: Vec<u64> = certified.iter().map(|c| c.summary.sequence).collect();
    sequences.sort();
    let count = sequences.len();
    sequences.dedup();
    assert_eq!(sequences.len(), count, "a checkpoint certified twice");
    sequences
}

/// The node's stages, minus the network and the tasks.
struct Pipeline {
    store: Arc<MemStore>,
    deriver: Deriver,
    sequencer: Sequencer,
    certifier: Certifier,
    delivery: Delivery,
    /// What the consumer received.
    delivered: Vec<DeliveredSubDag>,
    /// What the certifier certified, in the order it did.
    certified: Vec<Certified>,
}

impl Pipeline {
    fn new(store: Arc<MemStore>, resume_after: u64, queue_len: usize) -> Pipeline {
        let committee = chain().committee.clone();
        let sequencer = Sequencer::recover(store.as_ref(), committee.clone(), None).unwrap();
        let certifier = Certifier::recover(committee.clone(), store.as_ref()).unwrap();
        let deriver = Deriver::recover(committee, store.as_ref()).unwrap();
        let delivery = Delivery::new(resume_after, queue_len);
        Pipeline {
            store,
            deriver,
            sequencer,
            certifier,
            delivery,
            delivered: Vec::new(),
            certified: Vec::new(),
        }
    }

    fn sequence(
        &mut self,
        sub_dags: Vec<CommittedSubDag>,
        received: bool,
    ) -> Result<(), ObserverError> {
        let mut sequenced = self
            .sequencer
            .sequence(sub_dags, self.store.as_ref())?
            .unwrap_or_default();
        self.certifier.on_sequenced(&sequenced, received, false);
        let certified = self.certifier.take_certified(&mut sequenced.batch);
        self.certified.extend(certified);
        if !sequenced.batch.is_empty() {
            self.store.write(sequenced.batch)?;
            self.delivery.push(sequenced.sub_dags);
        }
        // A consumer that keeps up.
        while self.delivery.pending(self.sequencer.tip_index()) {
            let next = self.delivery.take_next(self.store.as_ref())?;
            self.delivered.push(next);
        }
        Ok(())
    }

    fn blocks(&mut self, blocks: Vec<VerifiedBlock>) -> Result<(), ObserverError> {
        for block in &blocks {
            self.certifier.observe(block);
            self.sequencer.observe(block);
        }
        let commits = self.deriver.add_blocks(blocks)?;
        self.sequence(commits, false)
    }

    /// A commit batch, as if verified; one that leaves a gap after the tip
    /// is refused, as the node refuses the upstream that sent it.
    fn commits(&mut self, batch: &[CommittedSubDag]) -> Result<(), ObserverError> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        match self
            .sequencer
            .chain_before(first.index(), self.store.as_ref())
        {
            Err(ObserverError::BrokenChain { .. }) => Ok(()),
            Err(err) => Err(err),
            Ok(_) => self.sequence(batch.to_vec(), true),
        }
    }

    /// What a Start for blocks does first.
    fn resync(&mut self) -> Result<(), ObserverError> {
        self.deriver
            .resync(self.sequencer.tip_index(), self.store.as_ref())
    }
}

#[test]
fn the_sequencer_persists_the_next_ignores_repeats_and_refuses_conflicts() {
    let (a, b) = (Digest([1; 32]), Digest([2; 32]));
    assert_eq!(decide(0, 1, a, None), Sequencing::Persist);
    assert_eq!(decide(7, 8, a, None), Sequencing::Persist);
    assert_eq!(decide(7, 9, a, None), Sequencing::Ahead);
    assert_eq!(decide(7, 7, a, Some(a)), Sequencing::AlreadyPersisted);
    assert_eq!(decide(7, 3, a, Some(a)), Sequencing::AlreadyPersisted);
    assert_eq!(
        decide(7, 3, a, Some(b)),
        Sequencing::Conflict { persisted: b }
    );
    // A pruned commit cannot be compared.
    assert_eq!(decide(7, 3, a, None), Sequencing::AlreadyPersisted);
}

/// Half the chain derived from blocks, the rest from commit batches: one
/// chain, delivered once each with its checkpoint, and the stored
/// checkpoint keys say the same.
#[test]
fn blocks_and_commits_sequence_into_one_chain_with_checkpoints() {
    let chain = chain();
    assert!(chain.commits.len() > 20, "{}", chain.commits.len());
    let store = Arc::new(MemStore::new());
    let mut pipeline = Pipeline::new(store.clone(), 0, 8);
    pipeline
        .blocks(chain.blocks[..chain.blocks.len() / 2].to_vec())
        .unwrap();
    let derived = pipeline.sequencer.tip_index() as usize;
    assert!(derived > 5, "blocks derived {derived} commits");
    // Overlapping batches: the repeats are checked and skipped.
    for start in (derived.saturating_sub(3)..chain.commits.len()).step_by(5) {
        let end = (start + 7).min(chain.commits.len());
        pipeline.commits(&chain.commits[start..end]).unwrap();
    }
    assert_eq!(outline(&pipeline.delivered), expected(chain, 0));
    let last = chain.checkpoints.last().copied().unwrap();
    assert!(last > 3, "{last} checkpoints");
    assert_eq!(
        pipeline
            .sequencer
            .last_closed_checkpoint()
            .map(|c| c.sequence),
        Some(last - 1)
    );
    let mut lookup = CheckpointLookup::default();
    for (commit, checkpoint) in chain.commits.iter().zip(&chain.checkpoints) {
        assert_eq!(
            lookup.sequence_of(store.as_ref(), commit.index()).unwrap(),
            *checkpoint,
            "commit {}",
            commit.index()
        );
    }
    // Out of order, the lookup searches.
    let mut lookup = CheckpointLookup::default();
    for position in [17, 2, 30, 0, 9] {
        let index = chain.commits[position].index();
        assert_eq!(
            lookup.sequence_of(store.as_ref(), index).unwrap(),
            chain.checkpoints[position]
        );
    }
    // The signatures of both paths certify what the commits alone do.
    assert_eq!(&checked(&pipeline), certifiable());
}

/// A consumer resuming from further back than the queue holds reads the
/// store, checkpoints included; a restarted sequencer continues the same
/// checkpoints.
#[test]
fn delivery_and_sequencing_resume_from_the_store() {
    let chain = chain();
    let store = Arc::new(MemStore::new());
    let half = chain.commits.len() / 2;
    let mut first = Pipeline::new(store.clone(), 0, 4);
    first.commits(&chain.commits[..half]).unwrap();

    let mut resumed = Pipeline::new(store.clone(), 3, 4);
    assert_eq!(resumed.delivery.delivered(), 3);
    assert!(!resumed.delivery.has_room(half as u64));
    resumed.commits(&chain.commits[half - 2..]).unwrap();
    assert_eq!(outline(&resumed.delivered), expected(chain, 3));
    // Certificates too continue, each recorded once: what the first run
    // left uncertified, the resumed one certifies from the stored blocks.
    checked(&first);
    let mut both = first.certified.clone();
    both.extend(checked(&resumed).iter().map(|s| {
        resumed
            .certified
            .iter()
            .find(|c| c.summary.sequence == *s)
            .unwrap()
            .clone()
    }));
    assert_eq!(&sequences(&both), certifiable());

    // A consumer ahead of the store (a repaired store re-syncing from
    // genesis) is not handed again what it has: delivery starts after it.
    let mut ahead = Pipeline::new(Arc::new(MemStore::new()), 5, 4);
    assert_eq!(ahead.delivery.delivered(), 5);
    assert!(!ahead.delivery.pending(3));
    ahead.commits(&chain.commits).unwrap();
    assert_eq!(outline(&ahead.delivered), expected(chain, 5));
}

#[test]
fn a_commit_that_conflicts_with_the_persisted_one_is_refused() {
    let chain = chain();
    let store = Arc::new(MemStore::new());
    let mut pipeline = Pipeline::new(store, 0, 8);
    pipeline.commits(&chain.commits[..3]).unwrap();
    let honest = &chain.commits[1];
    let mut forged = honest.commit.commit().clone();
    forged.timestamp_ms += 1;
    let forged = CommittedSubDag {
        commit: TrustedCommit::new(forged),
        blocks: honest.blocks.clone(),
    };
    let err = pipeline.commits(std::slice::from_ref(&forged)).unwrap_err();
    assert!(
        matches!(
            err,
            ObserverError::Conflict { index: 2, persisted, received }
                if persisted == honest.commit.digest() && received == forged.commit.digest()
        ),
        "{err:?}"
    );
    assert_eq!(pipeline.sequencer.tip_index(), 3);
}

/// One input to the pipeline.
#[derive(Clone, Debug)]
enum Input {
    /// Blocks `from..from + len` of production order, shuffled by `seed`.
    Blocks { from: usize, len: usize, seed: u64 },
    /// Commits `from..from + len`, as one verified batch.
    Commits { from: usize, len: usize },
    /// A Start for blocks.
    Resync,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (0usize..200, 1usize..60, any::<u64>())
            .prop_map(|(from, len, seed)| Input::Blocks { from, len, seed }),
        2 => (0usize..40, 1usize..12).prop_map(|(from, len)| Input::Commits { from, len }),
        1 => Just(Input::Resync),
    ]
}

/// A Fisher-Yates shuffle driven by xorshift: reproducible from the seed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the order, repetition and mix of blocks and commit batches,
    /// the consumer receives the chain: the same commits, in order, each
    /// once, with the same checkpoints.
    #[test]
    fn shuffled_and_duplicated_inputs_deliver_the_same_sequence(
        inputs in proptest::collection::vec(input(), 1..25),
        queue_len in 1usize..6,
    ) {
        let chain = chain();
        let store = Arc::new(MemStore::new());
        let mut pipeline = Pipeline::new(store, 0, queue_len);
        for input in inputs {
            match input {
                Input::Blocks { from, len, seed } => {
                    let from = from.min(chain.blocks.len());
                    let end = (from + len).min(chain.blocks.len());
                    let mut blocks = chain.blocks[from..end].to_vec();
                    shuffle(&mut blocks, seed | 1);
                    pipeline.blocks(blocks).unwrap();
                }
                Input::Commits { from, len } => {
                    let from = from.min(chain.commits.len());
                    let end = (from + len).min(chain.commits.len());
                    pipeline.commits(&chain.commits[from..end]).unwrap();
                }
                Input::Resync => pipeline.resync().unwrap(),
            }
            let delivered = outline(&pipeline.delivered);
            prop_assert_eq!(&delivered[..], &expected(chain, 0)[..delivered.len()]);
        }
        // The rest of the chain, as a commit stream would send it.
        let tip = pipeline.sequencer.tip_index() as usize;
        pipeline.commits(&chain.commits[tip..]).unwrap();
        prop_assert_eq!(outline(&pipeline.delivered), expected(chain, 0));
        // Blocks seen beyond the commits certify at most sooner.
        let certified = checked(&pipeline);
        prop_assert!(certifiable().iter().all(|s| certified.contains(s)), "{:?}", certified);
    }
}
