//! Stake arithmetic over distinct authorities.

use dagstream_types::{AuthorityIndex, Committee, Stake};

/// Sums the stake of distinct authorities: an authority counted twice (for
/// example through two equivocating blocks) adds its stake once.
pub(crate) struct StakeAggregator {
    counted: Vec<bool>,
    stake: Stake,
}

impl StakeAggregator {
    pub(crate) fn new(committee: &Committee) -> Self {
        StakeAggregator {
            counted: vec![false; committee.size()],
            stake: 0,
        }
    }

    /// Adds `author`'s stake if it was not counted yet.
    pub(crate) fn add(&mut self, author: AuthorityIndex, committee: &Committee) {
        if let Some(counted) = self.counted.get_mut(author as usize) {
            if !std::mem::replace(counted, true) {
                self.stake += committee.stake(author);
            }
        }
    }

    pub(crate) fn reached_quorum(&self, committee: &Committee) -> bool {
        committee.reached_quorum(self.stake)
    }
}
