//! Randomness from blocks alone: partials collected from the verified
//! blocks of either stream, rounds placed at commits by the chain's
//! [`RandomnessTally`], and each round's signature interpolated from
//! partials, or, for a commit received on the commit stream, the one the
//! upstream sent (checked against the group key when its batch was
//! verified).
//!
//! Trust: the tally counts stake only, over committed blocks, so the
//! observer places every round where every node does; a round's signature
//! is unique, so an interpolated one and a verified received one are the
//! same bytes. An upstream can neither pick the value nor move it to
//! another commit: a received commit must carry exactly the rounds its
//! blocks complete ([`ObserverError::RandomnessMismatch`]).
//!
//! Free of I/O but [`RandomnessStage::recover`]; owned by the sequencer,
//! whose batches persist the tally with the commits.

use crate::delivery::load_sub_dag;
use crate::{ObserverError, Result};
use dagstream_store::Store;
use dagstream_types::randomness::{HashedRound, RANDOMNESS_ROUND_LIFETIME};
use dagstream_types::{
    AuthorityIndex, BlsSignature, CommitIndex, CommittedSubDag, Committee, RandomnessOutput,
    RandomnessRound, RandomnessTally, SystemMessage, VerifiedBlock,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::warn;

/// Meta key of the tally after the last persisted commit (its BCS).
pub const RANDOMNESS_TALLY_KEY: &str = "observer/randomness_tally";

/// Partials for rounds this far past the tip are not kept: a block stream
/// far ahead of the chain (catching up) would otherwise fill the pool with
/// rounds the commit stream will bring again. Rounds start one per
/// commit, so this is the next 256 commits.
const MAX_ROUNDS_AHEAD: u64 = 256;

/// After a restart, the partials in the blocks of this many last commits
/// are collected again: a round is normally generated within a few
/// commits of its start.
const RECOVERY_COMMITS: u64 = 32;

/// Tally, pool of partials, and the forgeries found.
pub struct RandomnessStage {
    committee: Arc<Committee>,
    tally: RandomnessTally,
    /// Partials seen in verified blocks, by round, at most one per author.
    pool: BTreeMap<RandomnessRound, Vec<(AuthorityIndex, Vec<BlsSignature>)>>,
    /// The last commit placed.
    tip: CommitIndex,
    /// Partials found forged since last taken, for metrics.
    forgeries: u64,
}

impl RandomnessStage {
    /// Continues the tally persisted in `store` at commit `tip`, and
    /// collects the partials of its last commits again.
    pub fn recover(committee: Arc<Committee>, store: &dyn Store, tip: CommitIndex) -> Result<Self> {
        let tally = match store.read_meta(RANDOMNESS_TALLY_KEY)? {
            Some(bytes) => RandomnessTally::decode(&bytes).map_err(|err| {
                ObserverError::Store(dagstream_store::StoreError::Corrupt {
                    what: "randomness tally",
                    reason: err.to_string(),
                })
            })?,
            None => RandomnessTally::default(),
        };
        let mut stage = RandomnessStage {
            committee,
            tally,
            pool: BTreeMap::new(),
            tip,
            forgeries: 0,
        };
        if stage.committee.randomness().is_some() {
            // A pruned store holds its newest commits only.
            let lowest = store.commit_range()?.map_or(1, |(lowest, _)| lowest);
            let from = tip.saturating_sub(RECOVERY_COMMITS - 1).max(lowest);
            for index in from..=tip {
                for block in &load_sub_dag(store, index)?.blocks {
                    stage.observe(block);
                }
            }
        }
        Ok(stage)
    }

    pub fn tally(&self) -> &RandomnessTally {
        &self.tally
    }

    /// Partials found forged since the last call.
    pub fn take_forgeries(&mut self) -> u64 {
        std::mem::take(&mut self.forgeries)
    }

    /// The stage of a new epoch's committee, whose rounds start after
    /// `tip`, the last commit of the epoch before: an empty tally and pool.
    pub fn start_epoch(committee: Arc<Committee>, tip: CommitIndex) -> Self {
        RandomnessStage {
            committee,
            tally: RandomnessTally::default(),
            pool: BTreeMap::new(),
            tip,
            forgeries: 0,
        }
    }

    /// Keeps the partials of a verified block, from either stream. Those
    /// of another epoch's committee are not this committee's shares.
    pub fn observe(&mut self, block: &VerifiedBlock) {
        if self.committee.randomness().is_none() || block.epoch() != self.committee.epoch() {
            return;
        }
        let oldest = (self.tip + 1).saturating_sub(RANDOMNESS_ROUND_LIFETIME);
        for message in block.system_messages() {
            let SystemMessage::RandomnessPartial { round, shares } = message else {
                continue;
            };
            // A generated round needs no more partials (a third of them
            // come after the quorum).
            if !(oldest..=self.tip + MAX_ROUNDS_AHEAD).contains(round)
                || self.tally.is_generated(*round)
                || shares.len() as u64 != self.committee.stake(block.author())
            {
                continue;
            }
            let partials = self.pool.entry(*round).or_default();
            if partials.iter().all(|(author, _)| *author != block.author()) {
                partials.push((block.author(), shares.clone()));
            }
        }
    }

    /// The rounds commit `sub_dag`, the one after the last placed, generates
    /// with their signatures: `provided` (verified against the group key,
    /// from the commit stream) if given, else interpolated from partials.
    /// `Ok(None)`: the partials at hand do not give every round's signature
    /// yet (some were forged, or came before a restart); nothing changed,
    /// and the commit can be given again, from the commit stream.
    pub fn generate(
        &mut self,
        sub_dag: &CommittedSubDag,
        provided: Option<&[RandomnessOutput]>,
    ) -> Result<Option<Vec<RandomnessOutput>>> {
        let index = sub_dag.index();
        let committee = self.committee.clone();
        let Some(verifier) = committee.randomness() else {
            return match provided {
                Some(outputs) if !outputs.is_empty() => Err(ObserverError::RandomnessMismatch {
                    index,
                    expected: vec![],
                    got: outputs.iter().map(|o| o.round).collect(),
                }),
                _ => Ok(Some(Vec::new())),
            };
        };
        for block in &sub_dag.blocks {
            self.observe(block);
        }
        let mut tally = self.tally.clone();
        let rounds = tally.on_commit(index, &sub_dag.blocks, &self.committee);
        let outputs = match provided {
            Some(outputs) => {
                let got: Vec<RandomnessRound> = outputs.iter().map(|o| o.round).collect();
                if got != rounds {
                    return Err(ObserverError::RandomnessMismatch {
                        index,
                        expected: rounds,
                        got,
                    });
                }
                outputs.to_vec()
            }
            None => {
                let mut outputs = Vec::with_capacity(rounds.len());
                for round in &rounds {
                    let partials = self.pool.get(round).map(Vec::as_slice).unwrap_or_default();
                    let given: Vec<(AuthorityIndex, &[BlsSignature])> =
                        partials.iter().map(|(a, s)| (*a, s.as_slice())).collect();
                    let hashed = HashedRound::new(verifier.epoch(), *round);
                    let aggregation = verifier.aggregate(&hashed, &given);
                    if !aggregation.forgers.is_empty() {
                        warn!(round, forgers = ?aggregation.forgers, "forged randomness partials");
                        self.forgeries += aggregation.forgers.len() as u64;
                        if let Some(partials) = self.pool.get_mut(round) {
                            partials.retain(|(a, _)| !aggregation.forgers.contains(a));
                        }
                    }
                    match aggregation.output {
                        Some(output) => outputs.push(output),
                        None => return Ok(None),
                    }
                }
                outputs
            }
        };
        self.tally = tally;
        self.tip = index;
        let oldest = (index + 1).saturating_sub(RANDOMNESS_ROUND_LIFETIME);
        self.pool = self.pool.split_off(&oldest);
        for round in &rounds {
            self.pool.remove(round);
        }
        Ok(Some(outputs))
    }
}
