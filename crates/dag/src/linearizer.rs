//! Turns committed leaders into the commit chain.

use crate::{DagError, DagState, Result};
use dagstream_types::{
    Commit, CommitIndex, CommittedSubDag, Digest, RefSet, Round, TrustedCommit, VerifiedBlock,
};

/// Builds one [`CommittedSubDag`] per committed leader and chains the commits.
///
/// The sub-DAG of a leader is every block reachable from it through
/// ancestors above the GC round that no earlier commit holds, sorted by
/// `(round, author, digest)`: the leader, alone at the highest round, comes
/// last. The GC round for commit `k` is `leader_round(k - 1) - gc_depth`
/// (saturating), and never below the committee's genesis round: a function
/// of the chain alone, so every node linearizes identically. In a later
/// epoch the first commit chains to the last commit of the epoch before,
/// whose blocks all lie at or below the genesis round.
pub struct Linearizer {
    last_commit: Option<TrustedCommit>,
    gc_depth: Round,
    genesis_round: Round,
}

impl Linearizer {
    /// A linearizer that continues after `last_commit` (`None`: from
    /// genesis), for a committee whose genesis blocks are at
    /// `genesis_round`.
    pub fn new(last_commit: Option<TrustedCommit>, gc_depth: Round, genesis_round: Round) -> Self {
        Linearizer {
            last_commit,
            gc_depth,
            genesis_round,
        }
    }

    pub fn last_commit(&self) -> Option<&TrustedCommit> {
        self.last_commit.as_ref()
    }

    pub fn last_commit_index(&self) -> CommitIndex {
        self.last_commit.as_ref().map_or(0, |c| c.index())
    }

    /// The GC round implied by the last commit, at least the genesis
    /// round.
    pub fn gc_round(&self) -> Round {
        self.last_commit
            .as_ref()
            .map_or(0, |c| c.leader().round.saturating_sub(self.gc_depth))
            .max(self.genesis_round)
    }

    /// Commits `leader`: collects its sub-DAG, marks it committed in `dag`,
    /// chains the commit, and raises the DAG's GC round.
    pub fn commit(&mut self, dag: &mut DagState, leader: VerifiedBlock) -> Result<CommittedSubDag> {
        let gc_round = self.gc_round();
        let mut blocks = vec![leader.clone()];
        let mut visited = RefSet::default();
        visited.insert(leader.reference());
        let mut next = 0;
        while next < blocks.len() {
            let ancestors = blocks[next].ancestors().to_vec();
            next += 1;
            for ancestor in ancestors {
                if ancestor.round <= gc_round
                    || dag.is_committed(&ancestor)
                    || !visited.insert(ancestor)
                {
                    continue;
                }
                let block = dag
                    .get(&ancestor)
                    .ok_or(DagError::MissingBlock { block: ancestor })?;
                blocks.push(block.clone());
            }
        }
        blocks.sort_by_key(|b| b.reference());
        for block in &blocks {
            dag.set_committed(&block.reference());
        }

        let (index, previous_digest, previous_timestamp) = match &self.last_commit {
            Some(c) => (c.index() + 1, c.digest(), c.timestamp_ms()),
            None => (1, Digest::ZERO, 0),
        };
        let commit = TrustedCommit::new(Commit {
            index,
            previous_digest,
            timestamp_ms: leader.timestamp_ms().max(previous_timestamp),
            leader: leader.reference(),
            blocks: blocks.iter().map(|b| b.reference()).collect(),
        });
        self.last_commit = Some(commit.clone());
        Ok(CommittedSubDag { commit, blocks })
    }
}
