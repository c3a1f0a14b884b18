//! The rule that places each randomness round at a commit: pure stake
//! counting over committed blocks, the same on every node (see
//! [`randomness`](crate::randomness)).

use crate::error::{bcs_decode, bcs_encode};
use crate::randomness::{RandomnessRound, RANDOMNESS_ROUND_LIFETIME};
use crate::{AuthorityIndex, CommitIndex, Committee, Result, SystemMessage, VerifiedBlock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Which rounds' partials have been committed, by whom, and which rounds
/// are generated: what a node persists with its commits to continue the
/// rule after a restart.
///
/// Partials for round `r` count in commit `c` when `r < c` (round `r`
/// starts once commit `r` is decided, so no honest block of an earlier
/// commit can carry it), `r` is within [`RANDOMNESS_ROUND_LIFETIME`] of
/// `c`, `r` is not generated yet, the author's partial for `r` has not
/// counted before, and it holds one signature per unit of the author's
/// stake. Whether the signatures are right does not enter the rule: the
/// round's value is unique, and is checked where it is computed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomnessTally {
    /// Rounds not generated yet, with the authors whose partials counted.
    pending: BTreeMap<RandomnessRound, Vec<AuthorityIndex>>,
    /// Rounds generated and still within their lifetime.
    generated: BTreeSet<RandomnessRound>,
}

impl RandomnessTally {
    pub fn encode(&self) -> Vec<u8> {
        bcs_encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        bcs_decode("randomness tally", bytes)
    }

    /// Counts the partials in the blocks of commit `index`, given in commit
    /// order. Returns the rounds this commit generates, in increasing
    /// order. Commits must be given in order, each once.
    pub fn on_commit(
        &mut self,
        index: CommitIndex,
        blocks: &[VerifiedBlock],
        committee: &Committee,
    ) -> Vec<RandomnessRound> {
        let oldest = index.saturating_sub(RANDOMNESS_ROUND_LIFETIME).max(1);
        let mut generated = Vec::new();
        for block in blocks {
            let author = block.author();
            for message in block.system_messages() {
                let SystemMessage::RandomnessPartial { round, shares } = message else {
                    continue;
                };
                let round = *round;
                if !(oldest..index).contains(&round)
                    || self.generated.contains(&round)
                    || shares.len() as u64 != committee.stake(author)
                {
                    continue;
                }
                let authors = self.pending.entry(round).or_default();
                if authors.contains(&author) {
                    continue;
                }
                authors.push(author);
                let stake = authors.iter().map(|a| committee.stake(*a)).sum();
                if committee.reached_quorum(stake) {
                    self.pending.remove(&round);
                    self.generated.insert(round);
                    generated.push(round);
                }
            }
        }
        // What the next commit can no longer count is forgotten.
        let next_oldest = (index + 1).saturating_sub(RANDOMNESS_ROUND_LIFETIME);
        self.pending = self.pending.split_off(&next_oldest);
        self.generated = self.generated.split_off(&next_oldest);
        generated.sort_unstable();
        generated
    }

    /// Whether `round` is generated (and still within its lifetime):
    /// later partials for it count for nothing.
    pub fn is_generated(&self, round: RandomnessRound) -> bool {
        self.generated.contains(&round)
    }

    /// Rounds started and neither generated nor given up.
    pub fn pending(&self) -> impl Iterator<Item = RandomnessRound> + '_ {
        self.pending.keys().copied()
    }
}
