//! The simulated committee: one round of signed blocks at a time.

use crate::checkpoints::{CheckpointState, Checkpoints};
use crate::epochs::{self, Ending, EpochState};
use crate::randomness::{Randomness, RandomnessState};
use crate::rng::SeededStream;
use crate::{CommitteeKeys, Result, SimConfig, SimError};
use dagstream_dag::{DagConfig, DagConsensus, Decision};
use dagstream_types::{
    AuthorityIndex, Block, BlockLimits, BlockRef, CertifiedCheckpoint, CheckpointSummary,
    CommitIndex, CommitRef, CommittedSubDag, Committee, EpochChange, RandomnessOutput, Round,
    Stake, SystemMessage, Transaction, TrustedCommit, VerifiedBlock,
};
use std::sync::Arc;

/// Everything one round produced.
#[derive(Debug)]
pub struct RoundOutput {
    pub round: Round,
    /// The round's blocks, in author order.
    pub blocks: Vec<VerifiedBlock>,
    /// Leaders decided once this round was added, in round order.
    pub decisions: Vec<Decision>,
    /// Commits decided once this round was added, in index order.
    pub commits: Vec<CommittedSubDag>,
    /// Checkpoints those commits closed, in order.
    pub checkpoints: Vec<CheckpointSummary>,
    /// The checkpoints' state after this round, which is persisted with it.
    pub checkpoint_state: CheckpointState,
    /// The randomness rounds those commits generated, by commit (only
    /// commits that generated some), in index order.
    pub randomness: Vec<(CommitIndex, Vec<RandomnessOutput>)>,
    /// The randomness state after this round, persisted with it; `None`
    /// for a chain without randomness.
    pub randomness_state: Option<RandomnessState>,
    /// The epoch's state after this round, persisted with it.
    pub epoch_state: EpochState,
    /// The certified hand-off to the next committee, on the epoch's last
    /// round; the next round is the next committee's first.
    pub epoch_change: Option<EpochChange>,
}

/// What a committee starts its epoch with, once its keys are checked
/// against it: its randomness (`None` for a chain without), and the refs of
/// its genesis blocks, which its first round references.
fn epoch_start(
    committee: &Committee,
    keys: &CommitteeKeys,
) -> Result<(Option<Randomness>, Vec<Option<BlockRef>>)> {
    keys.check(committee)?;
    let randomness = Randomness::new(committee, keys);
    if randomness.as_ref().is_some_and(|r| !r.matches(committee)) {
        return Err(SimError::RandomnessMismatch);
    }
    let genesis = VerifiedBlock::genesis(committee)
        .iter()
        .map(|b| Some(b.reference()))
        .collect();
    Ok((randomness, genesis))
}

/// What recovery read back from a store, for [`Simulator::resume_at`].
pub(crate) struct Recovered {
    pub next_round: Round,
    pub consensus: DagConsensus,
    /// Each authority's block of the last round written and the one before.
    pub recent: [Vec<Option<BlockRef>>; 2],
    pub votes: Vec<CommitRef>,
    pub checkpoints: CheckpointState,
    pub randomness: Option<RandomnessState>,
    pub epoch: EpochState,
    /// The final checkpoint of the last epoch handed over, if any.
    pub last_final: Option<CheckpointSummary>,
}

/// A deterministic committee of authorities that all share one view.
///
/// Round `r` of every live authority is built from round `r - 1`, signed, and
/// fed to the same [`DagConsensus`] an observer runs; its commits are voted
/// for by every live authority's block of round `r + 1`, and the
/// checkpoints they close are signed by every live authority in one of
/// its next blocks ([`checkpoints`](crate::checkpoints)). Time is an input:
/// [`Simulator::produce_due`] produces the rounds scheduled up to a given
/// instant, so the simulator itself never reads a clock.
pub struct Simulator {
    committee: Arc<Committee>,
    keys: CommitteeKeys,
    config: SimConfig,
    consensus: DagConsensus,
    next_round: Round,
    /// Each authority's block of the previous round and the one before:
    /// `recent[0]` is round `next_round - 1`.
    recent: [Vec<Option<BlockRef>>; 2],
    /// Commits decided after the previous round: every block of the next
    /// round votes for them.
    votes: Vec<CommitRef>,
    checkpoints: Checkpoints,
    randomness: Option<Randomness>,
    epoch: EpochState,
    /// The epoch's last commit, once decided: the consensus core makes no
    /// commit of this epoch after it, and the next epoch's first commit
    /// chains to it.
    last_commit: Option<TrustedCommit>,
    /// The next committee's keys, once its hand-off is under way.
    next_keys: Option<CommitteeKeys>,
}

impl Simulator {
    /// A committee at genesis. Fails if the keys or the config do not fit
    /// the committee.
    pub fn new(
        committee: Arc<Committee>,
        keys: CommitteeKeys,
        config: SimConfig,
        limits: &BlockLimits,
    ) -> Result<Self> {
        config.validate(&committee, limits)?;
        let (randomness, genesis) = epoch_start(&committee, &keys)?;
        Ok(Simulator {
            consensus: DagConsensus::new(committee.clone(), DagConfig::default()),
            checkpoints: Checkpoints::resume(committee.epoch(), CheckpointState::default()),
            randomness,
            recent: [genesis, vec![None; committee.size()]],
            committee,
            keys,
            config,
            next_round: 1,
            votes: vec![],
            epoch: EpochState::default(),
            last_commit: None,
            next_keys: None,
        })
    }

    /// The committee after a hand-off, with its keys, at its genesis round:
    /// its first commit follows `last_commit`, and its first checkpoint
    /// `last_checkpoint`, the ending epoch's final one.
    pub(crate) fn start_epoch(
        &mut self,
        committee: Arc<Committee>,
        keys: CommitteeKeys,
        last_commit: Option<TrustedCommit>,
        last_checkpoint: &CheckpointSummary,
        highest_certified: Option<u64>,
    ) -> Result<()> {
        let (randomness, genesis) = epoch_start(&committee, &keys)?;
        self.consensus =
            DagConsensus::new_epoch(committee.clone(), DagConfig::default(), last_commit);
        self.checkpoints =
            Checkpoints::after(committee.epoch(), last_checkpoint, highest_certified);
        self.randomness = randomness;
        self.recent = [genesis, vec![None; committee.size()]];
        self.next_round = committee.genesis_round() + 1;
        self.votes = vec![];
        self.epoch = EpochState::default();
        self.last_commit = None;
        self.next_keys = None;
        self.committee = committee;
        self.keys = keys;
        Ok(())
    }

    pub fn committee(&self) -> &Arc<Committee> {
        &self.committee
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Index of the last commit produced; 0 before the first.
    pub fn last_commit_index(&self) -> CommitIndex {
        self.last_commit
            .as_ref()
            .or(self.consensus.last_commit())
            .map_or(0, |c| c.index())
    }

    /// Continues from recovered state; see [`Simulator::recover`].
    pub(crate) fn resume_at(&mut self, recovered: Recovered) {
        let Recovered {
            next_round,
            consensus,
            recent,
            votes,
            checkpoints,
            randomness,
            epoch,
            last_final,
        } = recovered;
        self.next_round = next_round;
        self.consensus = consensus;
        self.recent = recent;
        self.votes = votes;
        self.checkpoints = match &last_final {
            // An epoch that has no commit yet: its first checkpoint follows
            // the final one of the epoch before.
            Some(last)
                if checkpoints.open.is_none()
                    && epoch.ending.is_none()
                    && last.epoch + 1 == self.committee.epoch() =>
            {
                Checkpoints::after(self.committee.epoch(), last, checkpoints.highest_certified)
            }
            _ => Checkpoints::resume(self.committee.epoch(), checkpoints),
        };
        if let (Some(randomness), Some(state)) = (self.randomness.as_mut(), randomness) {
            randomness.resume(&self.committee, state);
        }
        if let Some(ending) = &epoch.ending {
            self.last_commit = self.consensus.last_commit().cloned();
            self.next_keys = Some(self.derive_next(ending.next.genesis_round).1);
        }
        self.epoch = epoch;
    }

    /// Takes the committee that `change` hands over to, with its keys
    /// derived again, as recovery folds the stored hand-offs forward. The
    /// hand-off must be certified by this committee and name the committee
    /// this simulator derives.
    pub(crate) fn follow(&mut self, change: &EpochChange) -> Result<()> {
        change.certificate.verify(&self.committee)?;
        let (next, keys) = self.derive_next(change.next.genesis_round);
        if next != change.next {
            return Err(SimError::CorruptState {
                reason: format!(
                    "the stored hand-off of epoch {} names another committee than this chain's",
                    change.epoch()
                ),
            });
        }
        let committee = Arc::new(next.committee()?);
        self.start_epoch(committee, keys, None, &change.certificate.summary, None)
    }

    /// The next committee and its keys, for an epoch that ends after
    /// `last_round`.
    fn derive_next(&self, last_round: Round) -> (dagstream_types::NextEpoch, CommitteeKeys) {
        let laggards: Vec<AuthorityIndex> = self
            .config
            .crashed
            .iter()
            .chain(&self.config.slow)
            .copied()
            .collect();
        epochs::next_epoch(
            &self.committee,
            &self.keys,
            self.config.seed,
            &laggards,
            last_round,
        )
    }

    pub fn next_round(&self) -> Round {
        self.next_round
    }

    /// When the next round is due, in Unix milliseconds.
    pub fn next_round_time_ms(&self) -> u64 {
        self.committee.round_time_ms(self.next_round)
    }

    /// Produces every round scheduled at or before `now_ms`, at most
    /// `max_rounds` of them, so that a caller catching up on a long history
    /// can persist and yield between chunks.
    pub fn produce_due(&mut self, now_ms: u64, max_rounds: usize) -> Result<Vec<RoundOutput>> {
        let mut out = Vec::new();
        while out.len() < max_rounds && self.next_round_time_ms() <= now_ms {
            out.push(self.produce_round()?);
        }
        Ok(out)
    }

    /// Produces the next round, whatever the time.
    pub fn produce_round(&mut self) -> Result<RoundOutput> {
        self.produce_round_with(|_| {})
    }

    /// Produces the next round, whatever the time, handing each block to
    /// `on_block` as soon as it is signed, in author order: a node can make
    /// it durable and publish it while the rest of the round is signed, as
    /// a real validator accepts each block when it arrives. The commit rule
    /// runs once the round is complete.
    pub fn produce_round_with(
        &mut self,
        mut on_block: impl FnMut(&VerifiedBlock),
    ) -> Result<RoundOutput> {
        let round = self.next_round;
        let mut blocks = Vec::with_capacity(self.committee.size());
        for author in self.committee.indexes() {
            if self.config.crashed.contains(&author) {
                continue;
            }
            let block = self.make_block(round, author);
            on_block(&block);
            blocks.push(block);
        }
        // After the epoch's last commit its consensus is over: the blocks
        // only carry the signatures of its last checkpoints.
        let (decisions, mut commits) = if self.epoch.ending.is_none() {
            let output = self.consensus.add_blocks(blocks.iter().cloned())?;
            debug_assert_eq!(output.accepted.len(), blocks.len());
            (output.decisions, output.commits)
        } else {
            (Vec::new(), Vec::new())
        };
        let ends = self.config.epoch_rounds > 0 && self.cut_at_last_commit(&mut commits);

        let mut this_round = vec![None; self.committee.size()];
        for block in &blocks {
            this_round[block.author() as usize] = Some(block.reference());
        }
        let previous = std::mem::replace(&mut self.recent[0], this_round);
        self.recent[1] = previous;
        self.votes = commits.iter().map(|c| c.reference()).collect();
        self.next_round += 1;
        let randomness = self
            .randomness
            .as_mut()
            .map(|r| r.on_round(round, &commits, &self.committee))
            .unwrap_or_default();
        let mut checkpoints = self.checkpoints.on_round(
            round,
            &commits,
            &randomness,
            &self.committee,
            self.config.seed,
            &self.config.crashed,
        );
        if ends {
            self.last_commit = commits.last().map(|c| c.commit.clone());
            let (next, next_keys) = self.derive_next(epochs::last_round(round));
            let closed = self.checkpoints.end_epoch(round, &next);
            let summary = *closed.last().expect("the final checkpoint");
            checkpoints.extend(closed);
            self.epoch.ending = Some(Ending {
                last_commit: self.last_commit_index(),
                summary,
                next,
            });
            self.next_keys = Some(next_keys);
        }
        let mut output = RoundOutput {
            round,
            blocks,
            decisions,
            commits,
            checkpoints,
            checkpoint_state: self.checkpoints.state(),
            randomness,
            randomness_state: self.randomness.as_ref().map(|r| r.state()),
            epoch_state: self.epoch.clone(),
            epoch_change: None,
        };
        if self
            .epoch
            .ending
            .as_ref()
            .is_some_and(|e| e.next.genesis_round == round)
        {
            output.epoch_change = Some(self.switch_epoch()?);
            output.checkpoint_state = self.checkpoints.state();
            output.randomness_state = self.randomness.as_ref().map(|r| r.state());
            output.epoch_state = self.epoch.clone();
        }
        Ok(output)
    }

    /// Drops the commits after the epoch's last, if `commits` hold it:
    /// whether they do.
    fn cut_at_last_commit(&mut self, commits: &mut Vec<CommittedSubDag>) -> bool {
        let last = commits
            .iter()
            .position(|c| self.epoch.tally.on_commit(&c.blocks, &self.committee));
        if let Some(last) = last {
            commits.truncate(last + 1);
        }
        last.is_some()
    }

    /// Certifies the ending epoch's final checkpoint with the signatures
    /// every live authority carried, and starts the next epoch.
    fn switch_epoch(&mut self) -> Result<EpochChange> {
        let ending = self.epoch.ending.clone().expect("an epoch that ends");
        let keys = self.keys.keys();
        let signatures = self
            .committee
            .indexes()
            .filter(|a| !self.config.crashed.contains(a))
            .map(|a| (a, ending.summary.sign(&keys[a as usize])))
            .collect();
        let change = EpochChange {
            certificate: CertifiedCheckpoint {
                summary: ending.summary,
                signatures,
            },
            next: ending.next,
        };
        change.certificate.verify(&self.committee)?;
        let committee = Arc::new(change.next.committee()?);
        let next_keys = self.next_keys.take().expect("derived with the ending");
        let last_commit = self.last_commit.take();
        let highest_certified = self.checkpoints.state().highest_certified;
        self.start_epoch(
            committee,
            next_keys,
            last_commit,
            &change.certificate.summary,
            highest_certified,
        )?;
        Ok(change)
    }

    fn make_block(&self, round: Round, author: AuthorityIndex) -> VerifiedBlock {
        let committee = &self.committee;
        let seed = self.config.seed;
        let slow = &self.config.slow;
        let previous = &self.recent[0];
        let own_previous = previous[author as usize].expect("a live authority produced last round");

        // The block must reference a quorum of the previous round: its own
        // block, then on-time authorities in a seeded order until the quorum
        // is reached, then each remaining one with a seeded chance.
        let mut on_time: Vec<AuthorityIndex> = committee
            .indexes()
            .filter(|&a| a != author && previous[a as usize].is_some() && !slow.contains(&a))
            .collect();
        let mut shape = SeededStream::new(seed, "parents", round, author);
        shape.shuffle(&mut on_time);
        let mut stake: Stake = committee.stake(author);
        let mut ancestors = vec![own_previous];
        for parent in on_time {
            if committee.reached_quorum(stake) && !shape.percent(self.config.extra_parent_percent) {
                continue;
            }
            stake += committee.stake(parent);
            ancestors.extend(previous[parent as usize]);
        }
        // Slow authorities' blocks reach everyone a round late. Before the
        // epoch's second round there is nothing older than genesis, which
        // is never late.
        for &parent in slow.iter().filter(|&&p| p != author) {
            let late = if round >= committee.genesis_round() + 2 {
                self.recent[1][parent as usize]
            } else {
                previous[parent as usize]
            };
            ancestors.extend(late);
        }
        ancestors.sort();

        let mut jitter = SeededStream::new(seed, "timestamp", round, author);
        let timestamp_ms =
            committee.round_time_ms(round) + jitter.below(self.config.max_timestamp_jitter_ms + 1);

        VerifiedBlock::sign(
            Block {
                epoch: committee.epoch(),
                round,
                author,
                timestamp_ms,
                ancestors,
                transactions: self.make_transactions(round, author),
                commit_votes: self.votes.clone(),
                system_messages: self.system_messages(round, author),
            },
            &self.keys.keys()[author as usize],
        )
    }

    /// Checkpoint signatures, then randomness partials, then the end of
    /// the epoch once it has lasted its rounds.
    fn system_messages(&self, round: Round, author: AuthorityIndex) -> Vec<SystemMessage> {
        let seed = self.config.seed;
        let mut messages = self.checkpoints.messages(seed, round, author, &self.keys);
        if let Some(randomness) = &self.randomness {
            let forged = self.config.forged_partials.contains(&author);
            messages.extend(randomness.messages(seed, round, author, forged, &self.committee));
        }
        let epoch_rounds = self.config.epoch_rounds;
        if epoch_rounds > 0 && round >= self.committee.genesis_round() + epoch_rounds {
            messages.push(SystemMessage::EndOfPublish);
        }
        messages
    }

    /// The seeded payload of one block: on average `tps * interval / live`
    /// transactions, the fraction resolved by a seeded draw.
    fn make_transactions(&self, round: Round, author: AuthorityIndex) -> Vec<Transaction> {
        let milli = self.config.milli_transactions_per_block(&self.committee);
        let mut stream = SeededStream::new(self.config.seed, "transactions", round, author);
        let count = milli / 1000 + u64::from(stream.below(1000) < milli % 1000);
        (0..count)
            .map(|_| {
                let mut bytes = vec![0u8; self.config.tx_size_bytes];
                stream.fill(&mut bytes);
                Transaction(bytes.into())
            })
            .collect()
    }
}
