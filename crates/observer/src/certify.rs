//! The certifier: checkpoint signatures collected from verified blocks,
//! whichever stream brought them, until signatures of 2f+1 stake match a
//! summary the observer formed itself.
//!
//! Free of I/O but for [`Certifier::recover`]: the node feeds it the
//! blocks of the block stream ([`Certifier::observe`]) and what its
//! sequencer sequenced, the checkpoints closed and the blocks of commits
//! received as such ([`Certifier::on_sequenced`]), and writes what
//! [`Certifier::take_certified`] returns with its next batch.
//!
//! # Trust
//! A signature counts only if it is over the digest of the observer's own
//! summary and verifies under its block author's key in the genesis
//! committee: an upstream can withhold signatures, never forge one, and a
//! wrong signature in a valid block is ignored, not blamed on the upstream
//! (the block's author made it). An author counts once per checkpoint,
//! however many of its blocks carry a signature.
//!
//! # Cost
//! A signature is verified only once its checkpoint has signatures of a
//! quorum's stake queued, and only as many as make that quorum: the rest
//! wait as spares, verified only if one of the first turns out forged.
//! Of the checkpoints ready, only the newest one's signatures are
//! verified, in one batch: its certificate certifies the older ones
//! through the summaries' `previous_digest` chain, which the observer
//! formed itself from its own commits (2f+1 stake signing a summary vouch
//! for every summary it chains to). Only checkpoints certified on their
//! own get a stored certificate. At the tip, that is each checkpoint as
//! soon as its quorum is in; catching up, one in every
//! [`CATCH_UP_CERTIFY_EVERY`].
//!
//! # Bounds
//! Signatures for checkpoints the observer has not closed yet are kept
//! for at most [`MAX_EARLY_CHECKPOINTS`] ahead of its newest closed one,
//! one per author; closed checkpoints wait for their quorum among at most
//! [`MAX_UNCERTIFIED`], the oldest given up first, each with at most one
//! signature per author.

mod recovery;

use crate::checkpoint::{certificate_key, HIGHEST_CERTIFIED_KEY};
use crate::sequencer::{ClosedCheckpoint, Sequenced};
use dagstream_store::WriteBatch;
use dagstream_types::{
    AuthorityIndex, CertifiedCheckpoint, CheckpointSummary, Committee, Digest, Round, Signature,
    Stake, StakeAggregator, SystemMessage, VerifiedBlock,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Most checkpoints past its newest closed one that the certifier keeps
/// signatures for. A block stream is at most a few checkpoints ahead of
/// the commits it decides; 64 covers seconds of lag, at one signature per
/// author each.
pub const MAX_EARLY_CHECKPOINTS: u64 = 64;

/// Most closed checkpoints waiting for their quorum. An honest committee
/// certifies one within a few rounds; 1,024 is minutes of a committee
/// that does not, at about 100 bytes of summary each plus the signatures
/// seen.
pub const MAX_UNCERTIFIED: usize = 1_024;

/// While catching up, signatures are verified once this many checkpoints
/// have a quorum's worth queued: the newest one's quorum then certifies
/// them all, for one checkpoint's signatures. About a hundred commits:
/// well inside [`MAX_UNCERTIFIED`] and the recovery window. At the tip
/// every checkpoint is verified as soon as it can be.
pub const CATCH_UP_CERTIFY_EVERY: usize = 32;

/// How many commits behind the upstream's highest commit sequenced
/// commits must be to count as catching up: about what
/// [`CATCH_UP_CERTIFY_EVERY`] checkpoints hold. Nearer the tip (where a
/// commit made while a batch was on its way is a usual lag) every
/// checkpoint is verified as soon as it can be.
pub const CATCH_UP_LAG_COMMITS: u64 = 100;

/// A checkpoint signature as found in a block.
#[derive(Clone, Copy, Debug)]
struct Seen {
    author: AuthorityIndex,
    round: Round,
    timestamp_ms: u64,
    summary_digest: Digest,
    signature: Signature,
}

/// A closed checkpoint collecting signatures.
#[derive(Debug)]
struct Uncertified {
    closed: ClosedCheckpoint,
    digest: Digest,
    /// Valid signatures over `digest`, by author.
    signers: BTreeMap<AuthorityIndex, Seen>,
    stake: StakeAggregator,
    /// Every author with a signature over `digest` here: valid, queued for
    /// verification, or spare.
    authors: BTreeSet<AuthorityIndex>,
    /// The stake of the signers and of the signatures queued.
    queued_stake: Stake,
    /// Signatures over `digest` that arrived once the queued ones would
    /// make a quorum: verified only if a queued one turns out forged. One
    /// per author, so at most the committee.
    spare: Vec<Seen>,
}

/// A signature over a summary of the observer's own, to verify with the
/// others of the same call in one batch.
#[derive(Debug)]
struct Candidate {
    /// Where its outcome goes in the call's outcomes (`None`: a spare from
    /// an earlier call, whose outcome was reported then).
    slot: Option<usize>,
    sequence: u64,
    seen: Seen,
}

/// A certified checkpoint, with how long it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certified {
    pub summary: CheckpointSummary,
    /// Its own certificate: verified signatures of 2f+1 stake. `None`: it
    /// is certified through the summary chain of a later checkpoint
    /// certified in the same step (each summary holds the digest of the
    /// one before), whose quorum vouches for every summary it chains to.
    pub certificate: Option<CertifiedCheckpoint>,
    /// Rounds from the closing commit's decision (two rounds after its
    /// leader, when decided directly) to the block that completed the
    /// quorum; `None` when no block here completed it (an epoch's final
    /// checkpoint, certified by the hand-off, and those it chains to).
    pub rounds: Option<u64>,
    /// Milliseconds of block time from the closing commit to the block
    /// that completed the quorum; `None` as for `rounds`.
    pub ms: Option<u64>,
}

/// What became of a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It counts toward its checkpoint's quorum.
    Counted,
    /// Kept until the observer closes its checkpoint.
    Early,
    /// Its checkpoint is certified, given up, or too far ahead; or its
    /// author was counted already.
    Ignored,
    /// Over a summary other than the observer's own.
    OtherSummary,
    /// Over the observer's summary, but it does not verify.
    Forged,
}

/// Collects checkpoint signatures and certifies checkpoints.
#[derive(Debug)]
pub struct Certifier {
    committee: Arc<Committee>,
    /// Closed here and not certified yet, by sequence.
    uncertified: BTreeMap<u64, Uncertified>,
    /// Signatures of checkpoints not closed here yet: one per author.
    early: BTreeMap<u64, BTreeMap<AuthorityIndex, Seen>>,
    /// The newest checkpoint closed here (or recovered as closed).
    highest_closed: Option<u64>,
    highest_certified: Option<u64>,
    certified: Vec<Certified>,
    /// Checkpoints given up unrecorded, since start.
    abandoned: u64,
    /// Signatures waiting for their checkpoint's quorum to be verified.
    queue: Vec<Candidate>,
    /// Whether the last commits sequenced were behind the upstream's tip:
    /// verification then waits for [`CATCH_UP_CERTIFY_EVERY`] checkpoints.
    catching_up: bool,
}

impl Certifier {
    /// A certifier after `highest_closed` and `highest_certified` (from
    /// the store; `None` for none yet), with `uncertified` the closed
    /// checkpoints still waiting for their quorum.
    pub fn new(
        committee: Arc<Committee>,
        highest_closed: Option<u64>,
        highest_certified: Option<u64>,
        uncertified: Vec<ClosedCheckpoint>,
    ) -> Self {
        let mut certifier = Certifier {
            committee,
            uncertified: BTreeMap::new(),
            early: BTreeMap::new(),
            highest_closed,
            highest_certified,
            certified: Vec::new(),
            abandoned: 0,
            queue: Vec::new(),
            catching_up: false,
        };
        for closed in uncertified {
            certifier.track(closed);
        }
        certifier
    }

    pub fn highest_certified(&self) -> Option<u64> {
        self.highest_certified
    }

    /// Closed checkpoints waiting for their quorum.
    pub fn uncertified(&self) -> usize {
        self.uncertified.len()
    }

    /// Signatures waiting for their checkpoint's quorum.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Checkpoints given up without a quorum since start.
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    /// Collects the checkpoint signatures of a verified block. Returns
    /// what became of each, in order.
    pub fn observe(&mut self, block: &VerifiedBlock) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        self.collect(block, &mut outcomes);
        self.verify_queued(&mut outcomes);
        outcomes
    }

    /// A checkpoint the sequencer closed: it checks the signatures seen
    /// for it so far.
    pub fn on_closed(&mut self, closed: ClosedCheckpoint) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        self.close(closed, &mut outcomes);
        self.verify_queued(&mut outcomes);
        outcomes
    }

    fn collect(&mut self, block: &VerifiedBlock, outcomes: &mut Vec<Outcome>) {
        // Another epoch's signatures are another committee's: those of an
        // ended epoch are settled by its hand-off.
        if block.epoch() != self.committee.epoch() {
            return;
        }
        for message in block.system_messages() {
            let SystemMessage::CheckpointSignature {
                sequence,
                summary_digest,
                signature,
            } = message
            else {
                continue;
            };
            let seen = Seen {
                author: block.author(),
                round: block.round(),
                timestamp_ms: block.timestamp_ms(),
                summary_digest: *summary_digest,
                signature: *signature,
            };
            self.add(*sequence, seen, outcomes);
        }
    }

    fn close(&mut self, closed: ClosedCheckpoint, outcomes: &mut Vec<Outcome>) {
        let sequence = closed.summary.sequence;
        self.highest_closed = Some(sequence);
        self.track(closed);
        let early = self.early.remove(&sequence).unwrap_or_default();
        // The window moved: forget what now lies past it.
        let limit = sequence + MAX_EARLY_CHECKPOINTS;
        self.early.retain(|s, _| *s <= limit);
        for seen in early.into_values() {
            self.add(sequence, seen, outcomes);
        }
    }

    /// What the sequencer sequenced: the checkpoints it closed and, with
    /// `with_blocks` (commits received as such, whose blocks were not
    /// observed yet), the signatures in the commits' blocks, in commit
    /// order. Each checkpoint is closed before the blocks of the commits
    /// after it are read, so that a long catch-up batch never holds
    /// signatures past the early window. `catching_up`: the commits are
    /// behind the upstream's tip, and verification can wait for more.
    pub fn on_sequenced(
        &mut self,
        sequenced: &Sequenced,
        with_blocks: bool,
        catching_up: bool,
    ) -> Vec<Outcome> {
        self.catching_up = catching_up;
        let mut outcomes = Vec::new();
        let mut closed = sequenced.closed.iter().peekable();
        for delivered in &sequenced.sub_dags {
            while let Some(checkpoint) =
                closed.next_if(|c| c.summary.last_commit < delivered.index())
            {
                self.close(*checkpoint, &mut outcomes);
            }
            if with_blocks {
                for block in &delivered.sub_dag.blocks {
                    self.collect(block, &mut outcomes);
                }
            }
        }
        for checkpoint in closed {
            self.close(*checkpoint, &mut outcomes);
        }
        self.verify_queued(&mut outcomes);
        outcomes
    }

    /// The checkpoints certified since the last call, with the store keys
    /// that record them once.
    pub fn take_certified(&mut self, batch: &mut WriteBatch) -> Vec<Certified> {
        let certified = std::mem::take(&mut self.certified);
        for done in &certified {
            if let Some(certificate) = &done.certificate {
                batch.put_meta(certificate_key(done.summary.sequence), certificate.encode());
            }
        }
        if !certified.is_empty() {
            if let Some(highest) = self.highest_certified {
                batch.put_meta(HIGHEST_CERTIFIED_KEY, highest.to_le_bytes().to_vec());
            }
        }
        certified
    }

    /// Hands over to the next epoch's committee once `certificate`, the
    /// ending epoch's final checkpoint certified by a quorum of it, is
    /// verified. The checkpoints of the ending epoch still waiting are in
    /// its summary chain: certified with it, through the chain. What was
    /// collected for the ending epoch is dropped.
    pub fn start_epoch(&mut self, committee: Arc<Committee>, certificate: CertifiedCheckpoint) {
        let summary = certificate.summary;
        for (_, chained) in std::mem::take(&mut self.uncertified) {
            if chained.closed.summary.sequence < summary.sequence {
                self.certified.push(Certified {
                    summary: chained.closed.summary,
                    certificate: None,
                    rounds: None,
                    ms: None,
                });
            }
        }
        self.early.clear();
        self.queue.clear();
        self.highest_closed = Some(summary.sequence);
        self.highest_certified = self.highest_certified.max(Some(summary.sequence));
        self.certified.push(Certified {
            summary,
            certificate: Some(certificate),
            rounds: None,
            ms: None,
        });
        self.committee = committee;
    }

    /// Whether certified checkpoints wait to be recorded.
    pub fn has_certified(&self) -> bool {
        !self.certified.is_empty()
    }

    fn track(&mut self, closed: ClosedCheckpoint) {
        if self.uncertified.len() == MAX_UNCERTIFIED {
            if let Some((given_up, _)) = self.uncertified.pop_first() {
                self.queue.retain(|c| c.sequence != given_up);
            }
            self.abandoned += 1;
        }
        self.uncertified.insert(
            closed.summary.sequence,
            Uncertified {
                digest: closed.summary.digest(),
                closed,
                signers: BTreeMap::new(),
                stake: StakeAggregator::new(&self.committee),
                authors: BTreeSet::new(),
                queued_stake: 0,
                spare: Vec::new(),
            },
        );
    }

    /// Sorts a signature: its outcome now, or a place in the queue (its
    /// outcome then set by [`Certifier::verify_queued`]).
    fn add(&mut self, sequence: u64, seen: Seen, outcomes: &mut Vec<Outcome>) {
        let Some(pending) = self.uncertified.get_mut(&sequence) else {
            outcomes.push(self.add_early(sequence, seen));
            return;
        };
        if seen.summary_digest != pending.digest {
            outcomes.push(Outcome::OtherSummary);
            return;
        }
        if !pending.authors.insert(seen.author) {
            outcomes.push(Outcome::Ignored);
            return;
        }
        if self.committee.reached_quorum(pending.queued_stake) {
            pending.spare.push(seen);
            outcomes.push(Outcome::Ignored);
            return;
        }
        pending.queued_stake += self.committee.stake(seen.author);
        // Settled once verified.
        outcomes.push(Outcome::Counted);
        self.queue.push(Candidate {
            slot: Some(outcomes.len() - 1),
            sequence,
            seen,
        });
    }

    /// Verifies the queued signatures of the newest checkpoint whose
    /// queue would make a quorum, in one batch, counts the valid ones and
    /// certifies it if they reach the quorum. A forged one is replaced by
    /// spares, verified in turn.
    ///
    /// Only that newest one is verified: once certified, it certifies the
    /// older ones through its summary chain, and their signatures are
    /// never checked; if it falls short, the next newest is verified. The
    /// signatures of checkpoints short of a quorum wait. Catching up, all
    /// of this waits until [`CATCH_UP_CERTIFY_EVERY`] checkpoints are
    /// ready.
    fn verify_queued(&mut self, outcomes: &mut Vec<Outcome>) {
        if self.catching_up && self.ready().nth(CATCH_UP_CERTIFY_EVERY - 1).is_none() {
            self.forget_slots();
            return;
        }
        loop {
            let Some(newest) = self.ready().next() else {
                break;
            };
            let (queue, waiting): (Vec<Candidate>, Vec<Candidate>) =
                std::mem::take(&mut self.queue)
                    .into_iter()
                    .partition(|c| c.sequence == newest);
            self.queue = waiting;
            let signatures: Vec<(Digest, AuthorityIndex, Signature)> = queue
                .iter()
                .map(|c| (c.seen.summary_digest, c.seen.author, c.seen.signature))
                .collect();
            let valid = CheckpointSummary::verify_signatures(&signatures, &self.committee);
            let pending = self
                .uncertified
                .get_mut(&newest)
                .expect("ready checkpoints are uncertified");
            for (candidate, valid) in queue.into_iter().zip(valid) {
                let author = candidate.seen.author;
                if valid {
                    pending.signers.insert(author, candidate.seen);
                    pending.stake.add(author, &self.committee);
                    continue;
                }
                match candidate.slot {
                    Some(slot) => outcomes[slot] = Outcome::Forged,
                    None => outcomes.push(Outcome::Forged),
                }
                // The author may still send a valid one.
                pending.authors.remove(&author);
                pending.queued_stake -= self.committee.stake(author);
                while !self.committee.reached_quorum(pending.queued_stake) {
                    let Some(seen) = pending.spare.pop() else {
                        break;
                    };
                    pending.queued_stake += self.committee.stake(seen.author);
                    self.queue.push(Candidate {
                        slot: None,
                        sequence: newest,
                        seen,
                    });
                }
            }
            if pending.stake.reached_quorum(&self.committee) {
                let done = self.uncertified.remove(&newest).expect("looked up above");
                self.certify(done);
                // What is certified needs no more signatures.
                let uncertified = &self.uncertified;
                self.queue.retain(|c| uncertified.contains_key(&c.sequence));
            }
        }
        self.forget_slots();
    }

    /// The checkpoints whose signatures queued would make a quorum, newest
    /// first.
    fn ready(&self) -> impl Iterator<Item = u64> + '_ {
        self.uncertified
            .iter()
            .rev()
            .filter(|(_, p)| self.committee.reached_quorum(p.queued_stake))
            .map(|(sequence, _)| *sequence)
    }

    /// The signatures still queued after a call report their outcome, if
    /// forged, in the call that verifies them.
    fn forget_slots(&mut self) {
        for candidate in &mut self.queue {
            candidate.slot = None;
        }
    }

    fn add_early(&mut self, sequence: u64, seen: Seen) -> Outcome {
        let next = self.highest_closed.map_or(0, |s| s + 1);
        if sequence < next || sequence >= next + MAX_EARLY_CHECKPOINTS {
            return Outcome::Ignored;
        }
        let signers = self.early.entry(sequence).or_default();
        if signers.contains_key(&seen.author) {
            return Outcome::Ignored;
        }
        signers.insert(seen.author, seen);
        Outcome::Early
    }

    /// Records a checkpoint that reached its quorum. It was certified in
    /// the DAG by the earliest blocks whose signatures make a quorum, in
    /// whatever order they arrived here.
    fn certify(&mut self, done: Uncertified) {
        let mut by_round: Vec<&Seen> = done.signers.values().collect();
        by_round.sort_by_key(|s| (s.round, s.timestamp_ms));
        let mut stake = StakeAggregator::new(&self.committee);
        let last = by_round
            .into_iter()
            .find(|s| {
                stake.add(s.author, &self.committee);
                stake.reached_quorum(&self.committee)
            })
            .copied()
            .expect("the signers make a quorum");
        let summary = done.closed.summary;
        // The older checkpoints still waiting are in its summary chain,
        // formed here from the same commits: certified with it, first.
        let older: Vec<u64> = self
            .uncertified
            .range(..summary.sequence)
            .map(|(s, _)| *s)
            .collect();
        for sequence in older {
            let chained = self.uncertified.remove(&sequence).expect("listed above");
            self.certified.push(Certified {
                summary: chained.closed.summary,
                certificate: None,
                rounds: Some(last.round.saturating_sub(chained.closed.leader_round + 2)),
                ms: Some(
                    last.timestamp_ms
                        .saturating_sub(chained.closed.timestamp_ms),
                ),
            });
        }
        self.highest_certified = self.highest_certified.max(Some(summary.sequence));
        self.certified.push(Certified {
            summary,
            certificate: Some(CertifiedCheckpoint {
                summary,
                signatures: done
                    .signers
                    .values()
                    .map(|s| (s.author, s.signature))
                    .collect(),
            }),
            rounds: Some(last.round.saturating_sub(done.closed.leader_round + 2)),
            ms: Some(last.timestamp_ms.saturating_sub(done.closed.timestamp_ms)),
        });
    }
}
