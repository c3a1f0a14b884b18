//! Writing the simulated chain to a [`Store`] and resuming from it.
//!
//! A round is durable once its blocks, the commits it decided, its
//! progress marker and the checkpoints' state are written: all in one
//! atomic [`WriteBatch`] ([`Simulator::batch_for`]), or each block on its
//! own and then the round's end ([`Simulator::round_end_batch`]). A simulator that crashes
//! loses at most the round it was writing: [`Simulator::recover`] continues
//! from the last round whose end was written, ignores any later blocks, and
//! makes exactly the blocks an uninterrupted run would, the same bytes as
//! those already stored.

use crate::checkpoints::CheckpointState;
use crate::epochs::EpochState;
use crate::randomness::RandomnessState;
use crate::simulator::Recovered;
use crate::{CommitteeKeys, Result, RoundOutput, SimConfig, SimError, Simulator};
use dagstream_dag::{DagConfig, DagConsensus};
use dagstream_store::recovery::load_consensus_state;
use dagstream_store::{
    epoch_change_key, randomness_key, Store, WriteBatch, HIGHEST_CERTIFIED_CHECKPOINT_KEY,
};
use dagstream_types::randomness::encode_outputs;
use dagstream_types::{
    BlockLimits, BlockRef, CommitIndex, CommitRef, Committee, Digest, EpochChange, Round,
    VerifiedBlock,
};
use std::sync::Arc;

/// Meta key of the chain identity: which genesis and config made the chain.
const IDENTITY_KEY: &str = "sim/identity";
/// Meta key of the progress marker: last round written (LE u64), then the
/// first commit index decided in that round (LE u64).
const PROGRESS_KEY: &str = "sim/progress";
/// Meta key of the checkpoints' state after the last round written (BCS of
/// [`CheckpointState`]).
const CHECKPOINTS_KEY: &str = "sim/checkpoints";
/// Meta key of the randomness state after the last round written (BCS of
/// [`RandomnessState`]), for a chain with randomness.
const RANDOMNESS_KEY: &str = "sim/randomness";
/// Meta key of the epoch's state after the last round written (BCS of
/// [`EpochState`]), for a chain whose epochs end.
const EPOCH_KEY: &str = "sim/epoch";

/// BLAKE3 of the committee digest and the config: two simulators with the
/// same identity produce the same chain.
fn chain_identity(committee: &Committee, config: &SimConfig) -> Digest {
    let config = serde_json::to_vec(config).expect("config always serializes");
    let mut hasher = blake3::Hasher::new();
    hasher.update(committee.digest().as_bytes());
    hasher.update(&config);
    Digest(*hasher.finalize().as_bytes())
}

impl Simulator {
    /// The store batch that makes `output` durable. Write batches in round
    /// order.
    pub fn batch_for(&self, output: &RoundOutput) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for block in &output.blocks {
            batch.add_block(block);
        }
        batch.append(self.round_end_batch(output));
        batch
    }

    /// What closes `output` once its blocks are durable: the commits it
    /// decided and the progress marker. A writer that makes each block
    /// durable on its own (see [`Simulator::produce_round_with`]) writes
    /// this after the round's last block. Until it is written, recovery
    /// ignores the round's blocks already in the store and makes them
    /// again, byte for byte.
    pub fn round_end_batch(&self, output: &RoundOutput) -> WriteBatch {
        let mut batch = WriteBatch::new();
        let votes_from = output
            .commits
            .first()
            .map_or(self.last_commit_index() + 1, |c| c.index());
        for commit in &output.commits {
            batch.add_commit(commit.commit.clone());
        }
        let mut progress = Vec::with_capacity(16);
        progress.extend_from_slice(&output.round.to_le_bytes());
        progress.extend_from_slice(&votes_from.to_le_bytes());
        batch.put_meta(PROGRESS_KEY, progress);
        let checkpoints = bcs::to_bytes(&output.checkpoint_state)
            .expect("the checkpoint state always has a BCS encoding");
        batch.put_meta(CHECKPOINTS_KEY, checkpoints);
        if let Some(certified) = output.checkpoint_state.highest_certified {
            batch.put_meta(
                HIGHEST_CERTIFIED_CHECKPOINT_KEY,
                certified.to_le_bytes().to_vec(),
            );
        }
        for (index, outputs) in &output.randomness {
            batch.put_meta(randomness_key(*index), encode_outputs(outputs));
        }
        if let Some(state) = &output.randomness_state {
            let state =
                bcs::to_bytes(state).expect("the randomness state always has a BCS encoding");
            batch.put_meta(RANDOMNESS_KEY, state);
        }
        if self.config().epoch_rounds > 0 {
            let state =
                bcs::to_bytes(&output.epoch_state).expect("the epoch state has a BCS encoding");
            batch.put_meta(EPOCH_KEY, state);
        }
        if let Some(change) = &output.epoch_change {
            batch.put_meta(epoch_change_key(change.epoch()), change.encode());
        }
        if output.round == 1 {
            let identity = chain_identity(self.committee(), self.config());
            batch.put_meta(IDENTITY_KEY, identity.as_bytes().to_vec());
        }
        batch
    }

    /// A simulator that continues the chain in `store`, or starts at genesis
    /// if the store holds none. Refuses a store written with another genesis
    /// or config.
    pub fn recover(
        committee: Arc<Committee>,
        keys: CommitteeKeys,
        config: SimConfig,
        limits: &BlockLimits,
        store: &dyn Store,
    ) -> Result<Simulator> {
        let Some(progress) = store.read_meta(PROGRESS_KEY)? else {
            return Simulator::new(committee, keys, config, limits);
        };
        let expected = chain_identity(&committee, &config);
        let stored = store.read_meta(IDENTITY_KEY)?.unwrap_or_default();
        if stored.as_ref() != expected.as_bytes() {
            return Err(SimError::DifferentChain {
                stored: hex::encode(&stored),
                expected: expected.to_string(),
            });
        }
        let corrupt = |reason: String| SimError::CorruptState { reason };
        let progress: [u8; 16] = progress
            .as_ref()
            .try_into()
            .map_err(|_| corrupt(format!("progress marker of {} bytes", progress.len())))?;
        let last_round = Round::from_le_bytes(progress[..8].try_into().expect("8 bytes"));
        let votes_from = CommitIndex::from_le_bytes(progress[8..].try_into().expect("8 bytes"));
        // The committee of the last round written: the genesis one, handed
        // over by each stored hand-off in turn.
        let mut simulator = Simulator::new(committee, keys, config, limits)?;
        let mut last_final = None;
        while let Some(bytes) = store.read_meta(&epoch_change_key(simulator.committee().epoch()))? {
            let change = EpochChange::decode(&bytes)?;
            simulator.follow(&change)?;
            last_final = Some(change.certificate.summary);
        }
        let committee = simulator.committee().clone();

        let state = load_consensus_state(store, committee.gc_depth_rounds(), last_round)?;
        let last_index = state.last_commit.as_ref().map_or(0, |c| c.index());
        let votes = (votes_from..=last_index)
            .map(|index| {
                store
                    .read_commit(index)?
                    .map(|c| c.reference())
                    .ok_or_else(|| corrupt(format!("commit {index} is missing")))
            })
            .collect::<Result<Vec<CommitRef>>>()?;

        let recent = [last_round, last_round.saturating_sub(1)].map(|round| {
            let mut by_author = vec![None; committee.size()];
            let source: Box<dyn Iterator<Item = BlockRef>> = if round == committee.genesis_round() {
                Box::new(
                    VerifiedBlock::genesis(&committee)
                        .into_iter()
                        .map(|b| b.reference()),
                )
            } else {
                Box::new(
                    state
                        .blocks
                        .iter()
                        .filter(|b| b.round() == round && b.epoch() == committee.epoch())
                        .map(|b| b.reference()),
                )
            };
            for reference in source {
                by_author[reference.author as usize] = Some(reference);
            }
            by_author
        });
        let checkpoints = store
            .read_meta(CHECKPOINTS_KEY)?
            .ok_or_else(|| corrupt("the checkpoint state is missing".into()))?;
        let checkpoints: CheckpointState = bcs::from_bytes(&checkpoints)
            .map_err(|err| corrupt(format!("the checkpoint state: {err}")))?;
        let randomness = store
            .read_meta(RANDOMNESS_KEY)?
            .map(|state| {
                bcs::from_bytes::<RandomnessState>(&state)
                    .map_err(|err| corrupt(format!("the randomness state: {err}")))
            })
            .transpose()?;
        if committee.randomness().is_some() && randomness.is_none() {
            return Err(corrupt("the randomness state is missing".into()));
        }
        let epoch = store
            .read_meta(EPOCH_KEY)?
            .map(|state| {
                bcs::from_bytes::<EpochState>(&state)
                    .map_err(|err| corrupt(format!("the epoch state: {err}")))
            })
            .transpose()?
            .unwrap_or_default();
        let consensus = DagConsensus::recover(committee.clone(), DagConfig::default(), state)?;
        simulator.resume_at(Recovered {
            next_round: last_round + 1,
            consensus,
            recent,
            votes,
            checkpoints,
            randomness,
            epoch,
            last_final,
        });
        Ok(simulator)
    }
}
