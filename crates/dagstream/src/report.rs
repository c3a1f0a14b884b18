//! The JSON form of a commit, shared by `observer --output` and
//! `inspect --json`, so that the two can be compared line for line (an
//! output line adds the certified checkpoint); and
//! the checkpoint replay that `inspect` falls back on for a store without
//! checkpoint keys (a validator's).

use anyhow::Result;
use dagstream_observer::delivery::load_randomness;
use dagstream_observer::DeliveredSubDag;
use dagstream_store::{epoch_change_key, Store};
use dagstream_types::CheckpointBuilder;
use dagstream_types::{CommitIndex, Epoch, EpochChange, RandomnessOutput, TrustedCommit};
use serde_json::{json, Value};

/// A commit as JSON. `randomness` appears only for a commit that
/// generated rounds: each round's number, its randomness and the group
/// signature it derives from (hex).
pub fn commit_json(
    commit: &TrustedCommit,
    epoch: Epoch,
    tx_count: usize,
    checkpoint: Option<u64>,
    randomness: &[RandomnessOutput],
) -> Value {
    let leader = commit.leader();
    let mut value = json!({
        "index": commit.index(),
        "epoch": epoch,
        "digest": commit.digest().to_string(),
        "leader": {
            "round": leader.round,
            "author": leader.author,
            "digest": leader.digest.to_string(),
        },
        "timestamp_ms": commit.timestamp_ms(),
        "block_count": commit.commit().blocks.len(),
        "tx_count": tx_count,
        "checkpoint": checkpoint,
    });
    if !randomness.is_empty() {
        value["randomness"] = randomness
            .iter()
            .map(|output| {
                json!({
                    "round": output.round,
                    "value": output.value().to_string(),
                    "signature": hex::encode(output.signature.0),
                })
            })
            .collect();
    }
    value
}

/// An `--output` line: the commit as `inspect --json` shows it, and the
/// highest certified checkpoint when it was handed over.
pub fn delivered_json(delivered: &DeliveredSubDag) -> Value {
    let sub_dag = &delivered.sub_dag;
    let tx_count = sub_dag.blocks.iter().map(|b| b.transactions().len()).sum();
    let mut value = commit_json(
        &sub_dag.commit,
        delivered.epoch(),
        tx_count,
        Some(delivered.checkpoint),
        &delivered.randomness,
    );
    value["certified_checkpoint"] = json!(delivered.certified_checkpoint);
    value
}

/// Commits read per scan while replaying checkpoints: bounds memory per
/// read (commits are small, blocks are not read).
const CHECKPOINT_SCAN: usize = 10_000;

/// The checkpoints formed through commit `through`, from the stored
/// commits: for stores that keep no checkpoints (an observer's store
/// says, see `CheckpointLookup`). Only sequences are read from it, so the
/// epoch is left at 0. At each epoch's last commit the open checkpoint
/// closes and the stored hand-off's final checkpoint follows.
pub fn checkpoints_at(store: &dyn Store, through: CommitIndex) -> Result<CheckpointBuilder> {
    let mut finals = Vec::new();
    while let Some(bytes) = store.read_meta(&epoch_change_key(finals.len() as u64))? {
        finals.push(EpochChange::decode(&bytes)?.certificate.summary);
    }
    let mut finals = finals.into_iter().peekable();
    let mut checkpointer = CheckpointBuilder::new(0);
    let mut next = 1;
    while next <= through {
        let chunk = store.scan_commits(next, CHECKPOINT_SCAN.min((through - next + 1) as usize))?;
        let Some(last) = chunk.last() else { break };
        next = last.index() + 1;
        for commit in &chunk {
            let randomness = load_randomness(store, commit.index())?;
            checkpointer.place(
                commit.index(),
                commit.digest(),
                commit.timestamp_ms(),
                &randomness,
            );
            if let Some(last) = finals.next_if(|f| f.last_commit == commit.index()) {
                checkpointer.end_epoch();
                checkpointer = CheckpointBuilder::after(0, &last);
            }
        }
    }
    Ok(checkpointer)
}
