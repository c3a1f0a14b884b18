//! The committee's checkpoints: every live authority signs each summary it
//! forms and carries the signature in one of its next blocks, as a real
//! validator carries checkpoint signatures as consensus transactions.
//!
//! An authority signs checkpoint `s` when the commit that closes it is
//! decided, at round `r`, and carries the signature in its block of round
//! `r + 1`, or of `r + 2` with a seeded 20% chance (it was slower to
//! execute): so a checkpoint is certified about one round after it closes,
//! two at worst, as the design measures on a real chain.

use crate::rng::SeededStream;
use crate::CommitteeKeys;
use dagstream_types::{
    AuthorityIndex, CheckpointBuilder, CheckpointSummary, CommitIndex, CommittedSubDag, Committee,
    Epoch, NextEpoch, OpenCheckpoint, RandomnessOutput, Round, StakeAggregator, SystemMessage,
};
use serde::{Deserialize, Serialize};

/// The latest round after the deciding one at which a signature (of a
/// checkpoint, or a randomness partial) is carried.
pub const MAX_SIGNATURE_DELAY_ROUNDS: Round = 2;

/// Chance, in percent, that an authority carries a signature a round late.
const LATE_SIGNATURE_PERCENT: u64 = 20;

/// The seeded stream of checkpoint signatures' delays.
const SIGNATURE_PURPOSE: &str = "checkpoint signature";

/// What recovery needs to continue the checkpoints: persisted with each
/// round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub open: Option<OpenCheckpoint>,
    /// Summaries some authority has not carried its signature for yet,
    /// each with the round whose commits closed it.
    pub unsigned: Vec<(Round, CheckpointSummary)>,
    /// The highest checkpoint whose carried signatures reached a quorum.
    pub highest_certified: Option<u64>,
}

/// Forms the committee's checkpoints and schedules their signatures.
#[derive(Clone, Debug)]
pub(crate) struct Checkpoints {
    builder: CheckpointBuilder,
    unsigned: Vec<(Round, CheckpointSummary)>,
    highest_certified: Option<u64>,
}

impl Checkpoints {
    pub fn resume(epoch: Epoch, state: CheckpointState) -> Self {
        Checkpoints {
            builder: CheckpointBuilder::resume(epoch, state.open),
            unsigned: state.unsigned,
            highest_certified: state.highest_certified,
        }
    }

    /// The checkpoints of `epoch`, whose first follows `last`, the final
    /// checkpoint of the epoch before.
    pub fn after(epoch: Epoch, last: &CheckpointSummary, highest_certified: Option<u64>) -> Self {
        Checkpoints {
            builder: CheckpointBuilder::after(epoch, last),
            unsigned: Vec::new(),
            highest_certified,
        }
    }

    /// Ends the epoch at its last commit, decided at `round`: the open
    /// checkpoint closes at once and the final checkpoint, handing over
    /// `next`, follows. Returns them, in order; each is signed like any
    /// other.
    pub fn end_epoch(&mut self, round: Round, next: &NextEpoch) -> Vec<CheckpointSummary> {
        let mut closed = self.builder.end_epoch();
        let last = *closed
            .last()
            .expect("the epoch's last commit is in the open checkpoint");
        closed.push(CheckpointSummary::end_of_epoch(&last, next.digest()));
        self.unsigned.extend(closed.iter().map(|s| (round, *s)));
        closed
    }

    pub fn state(&self) -> CheckpointState {
        CheckpointState {
            open: self.builder.open().copied(),
            unsigned: self.unsigned.clone(),
            highest_certified: self.highest_certified,
        }
    }

    /// The signatures `author` carries in its block of `round`.
    pub fn messages(
        &self,
        seed: u64,
        round: Round,
        author: AuthorityIndex,
        keys: &CommitteeKeys,
    ) -> Vec<SystemMessage> {
        self.unsigned
            .iter()
            .filter(|(closed, summary)| {
                closed + signature_delay(seed, SIGNATURE_PURPOSE, summary.sequence, author) == round
            })
            .map(|(_, summary)| summary.signature_message(&keys.keys()[author as usize]))
            .collect()
    }

    /// Places the commits decided at `round`, once its blocks are made.
    /// Returns the checkpoints they closed; notes those whose signatures
    /// carried so far reach a quorum of the live authorities' stake, and
    /// forgets those whose signatures every authority carried.
    pub fn on_round(
        &mut self,
        round: Round,
        commits: &[CommittedSubDag],
        randomness: &[(CommitIndex, Vec<RandomnessOutput>)],
        committee: &Committee,
        seed: u64,
        crashed: &[AuthorityIndex],
    ) -> Vec<CheckpointSummary> {
        for (closed, summary) in &self.unsigned {
            if self.highest_certified >= Some(summary.sequence) {
                continue;
            }
            let mut stake = StakeAggregator::new(committee);
            for author in committee.indexes().filter(|a| !crashed.contains(a)) {
                if closed + signature_delay(seed, SIGNATURE_PURPOSE, summary.sequence, author)
                    <= round
                {
                    stake.add(author, committee);
                }
            }
            if stake.reached_quorum(committee) {
                self.highest_certified = Some(summary.sequence);
            }
        }
        self.unsigned
            .retain(|(closed, _)| closed + MAX_SIGNATURE_DELAY_ROUNDS > round);
        let mut closed = Vec::new();
        for commit in commits {
            let generated = randomness
                .iter()
                .find(|(index, _)| *index == commit.index())
                .map_or(&[][..], |(_, outputs)| outputs.as_slice());
            let placed = self.builder.place(
                commit.index(),
                commit.commit.digest(),
                commit.commit.timestamp_ms(),
                generated,
            );
            for summary in placed.closed {
                self.unsigned.push((round, summary));
                closed.push(summary);
            }
        }
        closed
    }
}

/// How many rounds after the deciding one `author` carries its signature
/// of `item` (a checkpoint, or a randomness round) for `purpose`: 1, or 2
/// with [`LATE_SIGNATURE_PERCENT`], a seeded choice.
pub(crate) fn signature_delay(
    seed: u64,
    purpose: &str,
    item: u64,
    author: AuthorityIndex,
) -> Round {
    let mut stream = SeededStream::new(seed, purpose, item, author);
    if stream.percent(LATE_SIGNATURE_PERCENT) {
        2
    } else {
        1
    }
}
