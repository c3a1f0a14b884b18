//! The commit rule: decides, for each round's leader, commit or skip.
//!
//! Mysticeti-style with one leader per round and a wave of three rounds:
//! the leader at `r`, its votes at `r + 1`, its certificates at `r + 2`.
//!
//! - A block at `r + 1` **votes** for the leader if the leader is among its
//!   ancestors (its causal history at round `r`).
//! - A block at `r + 2` is a **certificate** if its ancestors include votes of
//!   quorum stake.
//! - **Direct rule.** Commit the leader when certificates of quorum stake
//!   exist; skip it when blocks of quorum stake at `r + 1` do not vote for it.
//! - **Indirect rule.** A leader the direct rule cannot decide takes its
//!   decision from the first leader at round `r + 3` or later that is not
//!   skipped (its *anchor*): if the anchor is committed, the leader is
//!   committed when a certificate for it is in the anchor's causal history
//!   and skipped otherwise; if the anchor is undecided, so is the leader.
//!
//! Decisions only ever go from undecided to decided, and every honest node
//! decides the same way whatever order its blocks arrived in. Leaders are
//! handed out in round order, stopping at the first undecided one.

use crate::{DagState, LeaderSchedule};
use dagstream_types::StakeAggregator;
use dagstream_types::{AuthorityIndex, BlockRef, Committee, RefSet, Round, VerifiedBlock};

/// How a leader was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionRule {
    Direct,
    Indirect,
}

/// A leader slot's final outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Commit {
        leader: VerifiedBlock,
        rule: DecisionRule,
    },
    Skip {
        round: Round,
        author: AuthorityIndex,
        rule: DecisionRule,
    },
}

impl Decision {
    pub fn round(&self) -> Round {
        match self {
            Decision::Commit { leader, .. } => leader.round(),
            Decision::Skip { round, .. } => *round,
        }
    }

    pub fn rule(&self) -> DecisionRule {
        match self {
            Decision::Commit { rule, .. } | Decision::Skip { rule, .. } => *rule,
        }
    }
}

enum Status {
    Commit(VerifiedBlock),
    Skip,
    Undecided,
}

/// Decides leaders in round order. Its only state is the last decided round.
pub struct Committer {
    schedule: LeaderSchedule,
    last_decided_round: Round,
}

impl Committer {
    /// A committer whose next leader to decide is at `last_decided_round + 1`.
    pub fn new(committee: &Committee, last_decided_round: Round) -> Self {
        Committer {
            schedule: LeaderSchedule::new(committee),
            last_decided_round,
        }
    }

    pub fn schedule(&self) -> &LeaderSchedule {
        &self.schedule
    }

    pub fn last_decided_round(&self) -> Round {
        self.last_decided_round
    }

    /// Decides every leader it can, in round order, stopping before the first
    /// undecided one.
    pub fn try_decide(&mut self, dag: &DagState) -> Vec<Decision> {
        // A skip needs round r + 1, so leaders up to one round below the
        // highest accepted round may be decidable.
        let highest_leader_round = dag.highest_accepted_round().saturating_sub(1);
        // Decide from the top down, so that every leader's possible anchors
        // are already decided when it needs them.
        let mut statuses: Vec<(Round, Status, DecisionRule)> = Vec::new();
        for round in (self.last_decided_round + 1..=highest_leader_round).rev() {
            let mut status = self.direct_decide(dag, round);
            let mut rule = DecisionRule::Direct;
            if matches!(status, Status::Undecided) {
                status = self.indirect_decide(dag, round, statuses.iter().rev());
                rule = DecisionRule::Indirect;
            }
            statuses.push((round, status, rule));
        }
        let mut decided = Vec::new();
        for (round, status, rule) in statuses.into_iter().rev() {
            let decision = match status {
                Status::Undecided => break,
                Status::Commit(leader) => Decision::Commit { leader, rule },
                Status::Skip => Decision::Skip {
                    round,
                    author: self.schedule.leader(round),
                    rule,
                },
            };
            self.last_decided_round = round;
            decided.push(decision);
        }
        decided
    }

    fn direct_decide(&self, dag: &DagState, round: Round) -> Status {
        let committee = dag.committee();
        let leader = self.schedule.leader(round);
        let mut blame = StakeAggregator::new(committee);
        for voter in dag.blocks_at_round(round + 1) {
            let references_slot = voter
                .ancestors()
                .iter()
                .any(|a| a.round == round && a.author == leader);
            if !references_slot {
                blame.add(voter.author(), committee);
            }
        }
        if blame.reached_quorum(committee) {
            return Status::Skip;
        }
        for leader_block in dag.blocks_at_slot(round, leader) {
            let votes = votes_for(dag, leader_block.reference());
            let mut certificates = StakeAggregator::new(committee);
            for candidate in dag.blocks_at_round(round + 2) {
                if is_certificate(committee, candidate, &votes) {
                    certificates.add(candidate.author(), committee);
                }
            }
            if certificates.reached_quorum(committee) {
                return Status::Commit(leader_block.clone());
            }
        }
        Status::Undecided
    }

    /// `above` yields the statuses of higher leaders, lowest round first.
    fn indirect_decide<'a>(
        &self,
        dag: &DagState,
        round: Round,
        above: impl Iterator<Item = &'a (Round, Status, DecisionRule)>,
    ) -> Status {
        for (anchor_round, status, _) in above {
            if *anchor_round < round + 3 {
                continue;
            }
            match status {
                Status::Skip => continue,
                Status::Undecided => return Status::Undecided,
                Status::Commit(anchor) => {
                    let leader = self.schedule.leader(round);
                    for leader_block in dag.blocks_at_slot(round, leader) {
                        if has_certified_link(dag, anchor, leader_block.reference()) {
                            return Status::Commit(leader_block.clone());
                        }
                    }
                    return Status::Skip;
                }
            }
        }
        Status::Undecided
    }
}

/// The blocks at `leader.round + 1` that have `leader` among their ancestors.
fn votes_for(dag: &DagState, leader: BlockRef) -> RefSet {
    dag.blocks_at_round(leader.round + 1)
        .filter(|b| b.ancestors().contains(&leader))
        .map(|b| b.reference())
        .collect()
}

fn is_certificate(committee: &Committee, candidate: &VerifiedBlock, votes: &RefSet) -> bool {
    let mut stake = StakeAggregator::new(committee);
    for ancestor in candidate.ancestors() {
        if votes.contains(ancestor) {
            stake.add(ancestor.author, committee);
        }
    }
    stake.reached_quorum(committee)
}

/// Whether the causal history of `anchor` holds a certificate for `leader`.
fn has_certified_link(dag: &DagState, anchor: &VerifiedBlock, leader: BlockRef) -> bool {
    let committee = dag.committee();
    let certificate_round = leader.round + 2;
    let votes = votes_for(dag, leader);
    let mut visited = RefSet::default();
    let mut stack = vec![anchor.clone()];
    while let Some(block) = stack.pop() {
        if block.round() == certificate_round {
            if is_certificate(committee, &block, &votes) {
                return true;
            }
            continue;
        }
        for ancestor in block.ancestors() {
            if ancestor.round >= certificate_round && visited.insert(*ancestor) {
                // Accepted blocks have their whole history above the GC round,
                // and certificate rounds are always above it.
                if let Some(next) = dag.get(ancestor) {
                    stack.push(next.clone());
                }
            }
        }
    }
    false
}
