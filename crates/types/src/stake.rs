//! Stake arithmetic over distinct authorities: the one tally behind every
//! quorum check (the committer's, the publisher's certifier and the
//! observer's certificate check).

use crate::{AuthorityIndex, Committee, Stake};

/// Sums the stake of distinct authorities: an authority counted twice (for
/// example through two equivocating blocks) adds its stake once.
#[derive(Clone, Debug)]
pub struct StakeAggregator {
    counted: Vec<bool>,
    stake: Stake,
}

impl StakeAggregator {
    pub fn new(committee: &Committee) -> Self {
        StakeAggregator {
            counted: vec![false; committee.size()],
            stake: 0,
        }
    }

    /// Adds `author`'s stake if it was not counted yet. Returns whether it
    /// was new; an index outside the committee counts nothing.
    pub fn add(&mut self, author: AuthorityIndex, committee: &Committee) -> bool {
        let Some(counted) = self.counted.get_mut(author as usize) else {
            return false;
        };
        let new = !std::mem::replace(counted, true);
        if new {
            self.stake += committee.stake(author);
        }
        new
    }

    /// The stake counted so far.
    pub fn stake(&self) -> Stake {
        self.stake
    }

    pub fn reached_quorum(&self, committee: &Committee) -> bool {
        committee.reached_quorum(self.stake)
    }
}
