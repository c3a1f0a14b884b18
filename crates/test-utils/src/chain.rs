//! [`TestChain`]: the simulated committee writing its chain through a
//! [`StoreSource`], round by round, as the test asks.

use crate::committee::TestCommittee;
use dagstream_publisher::StoreSource;
use dagstream_sim::SimConfig;
use dagstream_store::{MemStore, Store};
use dagstream_types::{
    BlockLimits, CommitIndex, CommitRef, Committee, TrustedCommit, VerifiedBlock,
};
use dagstream_validator::Producer;
use std::sync::Arc;

/// A chain that grows when the test calls [`TestChain::produce`]: each
/// round is made by the simulator and written with
/// [`StoreSource::write`], exactly as the validator does, and remembered.
pub struct TestChain {
    committee: TestCommittee,
    config: SimConfig,
    producer: Producer,
    keep_blocks: bool,
    blocks: Vec<VerifiedBlock>,
    commits: Vec<TrustedCommit>,
    certified: CommitIndex,
}

impl TestChain {
    /// Continues the chain of `committee` and `config` in `store`, or
    /// starts it at genesis.
    pub fn new(committee: &TestCommittee, config: SimConfig, store: Arc<dyn Store>) -> Self {
        let producer = Producer::new(
            committee.committee.clone(),
            committee.keys.clone(),
            config.clone(),
            &BlockLimits::default(),
            store,
        )
        .expect("the chain continues in this store");
        TestChain {
            committee: committee.clone(),
            config,
            producer,
            keep_blocks: true,
            blocks: Vec::new(),
            commits: Vec::new(),
            certified: 0,
        }
    }

    /// A new chain of `committee` with the default load, in memory.
    pub fn in_memory(committee: &TestCommittee) -> Self {
        Self::new(committee, SimConfig::default(), Arc::new(MemStore::new()))
    }

    /// Whether [`TestChain::blocks`] keeps the blocks produced from now on:
    /// yes by default. Off for long or heavy histories, whose kept blocks
    /// would double the memory the store already takes.
    pub fn keep_blocks(mut self, keep: bool) -> Self {
        self.keep_blocks = keep;
        self
    }

    /// Produces `rounds` rounds, each written to the store and published in
    /// one [`StoreSource::write`].
    pub fn produce(&mut self, rounds: usize) {
        for _ in 0..rounds {
            // Round r + 1 carries the votes for every commit decided
            // through round r.
            let voted = self.producer.last_commit_index();
            let output = self.producer.produce_round().expect("round produced");
            self.certified = voted;
            self.commits
                .extend(output.commits.into_iter().map(|c| c.commit));
            if self.keep_blocks {
                self.blocks.extend(output.blocks);
            }
        }
    }

    /// Every block produced here (while kept), in production order.
    pub fn blocks(&self) -> &[VerifiedBlock] {
        &self.blocks
    }

    /// Every commit decided here, in order.
    pub fn commits(&self) -> &[TrustedCommit] {
        &self.commits
    }

    pub fn commit_refs(&self) -> Vec<CommitRef> {
        self.commits.iter().map(|c| c.reference()).collect()
    }

    /// The highest commit that blocks produced so far vote for: a publisher
    /// that saw them all has certified it.
    pub fn certified(&self) -> CommitIndex {
        self.certified
    }

    /// The highest commit decided; 0 before the first.
    pub fn last_commit_index(&self) -> CommitIndex {
        self.producer.last_commit_index()
    }

    pub fn committee(&self) -> &Arc<Committee> {
        &self.committee.committee
    }

    pub fn source(&self) -> &Arc<StoreSource> {
        self.producer.source()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.producer.source().store()
    }

    /// Continues as a restarted node would: a new source over the store,
    /// its cache warmed from it, and the simulator recovered from it.
    pub fn restart(&mut self) {
        let source = StoreSource::new(self.store().clone(), self.committee().clone())
            .expect("the store reads back");
        self.restart_on(Arc::new(source));
    }

    /// [`TestChain::restart`] with `source`, a source over the same store
    /// (for one with its own cache sizes).
    pub fn restart_on(&mut self, source: Arc<StoreSource>) {
        self.producer = Producer::with_source(
            self.committee.committee.clone(),
            self.committee.keys.clone(),
            self.config.clone(),
            &BlockLimits::default(),
            source,
        )
        .expect("the chain continues in this store");
    }

    /// The producer, to run the chain on a clock.
    pub fn into_producer(self) -> Producer {
        self.producer
    }
}
