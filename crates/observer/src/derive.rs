//! Commits derived from verified blocks, with the same consensus core the
//! validators run ([`DagConsensus`]), free of network I/O.
//!
//! The core continues from the persisted chain. When the commit stream has
//! moved the chain past it (catching up), [`Deriver::resync`] rebuilds it
//! from the store before blocks start again, so that the two paths agree on
//! where the chain is.

use crate::Result;
use dagstream_dag::{DagConfig, DagConsensus, DagError};
use dagstream_store::recovery::load_consensus_state;
use dagstream_store::Store;
use dagstream_types::{
    CommitIndex, CommittedSubDag, Committee, RefSet, Round, TrustedCommit, VerifiedBlock,
};
use std::sync::Arc;
use tracing::warn;

/// The consensus core of the block path.
pub struct Deriver {
    committee: Arc<Committee>,
    consensus: DagConsensus,
}

impl Deriver {
    /// A core that continues after the store's last commit.
    pub fn recover(committee: Arc<Committee>, store: &dyn Store) -> Result<Self> {
        let consensus = recover(&committee, store)?;
        Ok(Deriver {
            committee,
            consensus,
        })
    }

    /// Starts the core of the next epoch's `committee`: empty but for its
    /// genesis blocks, its first commit to follow `last`, the ended
    /// epoch's last commit.
    pub fn start_epoch(&mut self, committee: Arc<Committee>, last: TrustedCommit) {
        self.consensus =
            DagConsensus::new_epoch(committee.clone(), DagConfig::default(), Some(last));
        self.committee = committee;
    }

    /// The last commit the core derived or recovered from.
    pub fn last_commit_index(&self) -> CommitIndex {
        self.consensus.last_commit().map_or(0, |c| c.index())
    }

    /// Makes the core continue after `tip`, the highest persisted commit,
    /// rebuilding it from the store if the chain moved past it.
    pub fn resync(&mut self, tip: CommitIndex, store: &dyn Store) -> Result<()> {
        if self.last_commit_index() != tip {
            self.consensus = recover(&self.committee, store)?;
        }
        Ok(())
    }

    /// The highest round the core holds of each authority: where a block
    /// stream resumes.
    pub fn highest_rounds(&self) -> Vec<Round> {
        let mut highest = vec![0; self.committee.size()];
        for block in self.consensus.dag().blocks() {
            let slot = &mut highest[block.author() as usize];
            *slot = (*slot).max(block.round());
        }
        highest
    }

    /// Adds verified blocks, in any order, and returns the commits they
    /// decide, in order.
    pub fn add_blocks(&mut self, blocks: Vec<VerifiedBlock>) -> Result<Vec<CommittedSubDag>> {
        match self.consensus.add_blocks(blocks) {
            Ok(output) => Ok(output.commits),
            Err(err @ DagError::TooManyPendingBlocks { .. }) => {
                // Blocks from after a gap in this observer's history: the
                // commit stream will fill it, and the core resyncs then.
                warn!(cause = %err, "dropping blocks whose history is missing");
                Ok(vec![])
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// The consensus core continuing after the store's last commit, from the
/// committed blocks of the store. An observer's store holds no other
/// blocks but those that vote for an epoch's last commit (see the node's
/// epoch changes), which are not the DAG's: their ancestors were never
/// stored.
fn recover(committee: &Arc<Committee>, store: &dyn Store) -> Result<DagConsensus> {
    let mut state = load_consensus_state(store, committee.gc_depth_rounds(), Round::MAX)?;
    let committed: RefSet = state.committed.iter().copied().collect();
    state.blocks.retain(|b| committed.contains(&b.reference()));
    Ok(DagConsensus::recover(
        committee.clone(),
        DagConfig::default(),
        state,
    )?)
}
