//! The facade: blocks in, decisions and commits out.

use crate::{Committer, DagError, DagState, Decision, Linearizer, Result};
use dagstream_types::{CommittedSubDag, Committee, ConsensusState, TrustedCommit, VerifiedBlock};
use std::sync::Arc;

/// Configuration of the local consensus core. The commit rule's own
/// parameters (GC depth, leader schedule) come from the committee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DagConfig {
    /// Most blocks held while waiting for their ancestors. 20,000 is 200
    /// rounds of a 100-authority committee: ample for reordering on a healthy
    /// link, while one peer that never sends ancestors cannot exhaust memory.
    pub max_pending_blocks: usize,
}

impl Default for DagConfig {
    fn default() -> Self {
        DagConfig {
            max_pending_blocks: 20_000,
        }
    }
}

/// What adding blocks produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Blocks newly accepted into the DAG, in causal order.
    pub accepted: Vec<VerifiedBlock>,
    /// Leader decisions, in round order.
    pub decisions: Vec<Decision>,
    /// New commits, in index order.
    pub commits: Vec<CommittedSubDag>,
}

/// The consensus core of one node: [`DagState`], [`Committer`] and
/// [`Linearizer`] wired together. Free of I/O and of clocks.
pub struct DagConsensus {
    dag: DagState,
    committer: Committer,
    linearizer: Linearizer,
}

impl DagConsensus {
    /// A core at genesis.
    pub fn new(committee: Arc<Committee>, config: DagConfig) -> Self {
        Self::new_epoch(committee, config, None)
    }

    /// A core at the start of `committee`'s epoch, whose first commit
    /// follows `previous`, the last commit of the epoch before (`None` for
    /// the chain's first committee).
    pub fn new_epoch(
        committee: Arc<Committee>,
        config: DagConfig,
        previous: Option<TrustedCommit>,
    ) -> Self {
        let committer = Committer::new(&committee, committee.genesis_round());
        let linearizer = Linearizer::new(
            previous,
            committee.gc_depth_rounds(),
            committee.genesis_round(),
        );
        DagConsensus {
            dag: DagState::new(committee, config.max_pending_blocks),
            committer,
            linearizer,
        }
    }

    /// A core that continues after `state.last_commit`, rebuilt from
    /// storage (`dagstream_store::recovery::load_consensus_state`).
    ///
    /// `state.blocks` must hold every accepted block above the GC round that
    /// the last commit implies (older ones are ignored), and
    /// `state.committed` the refs among them that earlier commits hold.
    /// Leaders after the last committed one are decided again from these
    /// blocks, with the same outcome as before, since decisions depend on
    /// the blocks alone.
    pub fn recover(
        committee: Arc<Committee>,
        config: DagConfig,
        state: ConsensusState,
    ) -> Result<Self> {
        let ConsensusState {
            last_commit,
            mut blocks,
            committed,
        } = state;
        // The last commit may be the previous epoch's last, whose leader is
        // below this committee's genesis round.
        let last_leader_round = last_commit
            .as_ref()
            .map_or(0, |c| c.leader().round)
            .max(committee.genesis_round());
        let linearizer = Linearizer::new(
            last_commit,
            committee.gc_depth_rounds(),
            committee.genesis_round(),
        );
        let mut dag = DagState::new(committee.clone(), config.max_pending_blocks);
        dag.set_gc_round(linearizer.gc_round());
        // Causal order: ancestors are always from lower rounds.
        blocks.sort_by_key(|b| b.reference());
        for block in blocks {
            dag.add_block(block)?;
        }
        if dag.pending_len() > 0 {
            return Err(DagError::IncompleteRecovery {
                missing_ancestors_of: dag.pending_len(),
            });
        }
        for reference in committed {
            dag.set_committed(&reference);
        }
        Ok(DagConsensus {
            dag,
            committer: Committer::new(&committee, last_leader_round),
            linearizer,
        })
    }

    /// Adds verified blocks, in any order, then decides and commits what it
    /// can.
    pub fn add_blocks(
        &mut self,
        blocks: impl IntoIterator<Item = VerifiedBlock>,
    ) -> Result<Output> {
        let mut output = Output::default();
        for block in blocks {
            output.accepted.extend(self.dag.add_block(block)?);
        }
        loop {
            let decisions = self.committer.try_decide(&self.dag);
            if decisions.is_empty() {
                return Ok(output);
            }
            for decision in &decisions {
                if let Decision::Commit { leader, .. } = decision {
                    let committed = self.linearizer.commit(&mut self.dag, leader.clone())?;
                    output.commits.push(committed);
                }
            }
            output.decisions.extend(decisions);
            // Raising the GC round may release pending blocks whose missing
            // ancestors became garbage; they may decide more leaders.
            let released = self.dag.set_gc_round(self.linearizer.gc_round());
            if released.is_empty() {
                return Ok(output);
            }
            output.accepted.extend(released);
        }
    }

    pub fn dag(&self) -> &DagState {
        &self.dag
    }

    pub fn committee(&self) -> &Arc<Committee> {
        self.dag.committee()
    }

    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    pub fn last_commit(&self) -> Option<&TrustedCommit> {
        self.linearizer.last_commit()
    }
}
