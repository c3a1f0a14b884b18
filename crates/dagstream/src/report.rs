//! The JSON form of a commit, shared by `observer --output` and
//! `inspect --json`, so that the two can be compared line for line.

use dagstream_types::{CommittedSubDag, TrustedCommit};
use serde_json::{json, Value};

pub fn commit_json(commit: &TrustedCommit, tx_count: usize, checkpoint: Option<u64>) -> Value {
    let leader = commit.leader();
    json!({
        "index": commit.index(),
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
    })
}

pub fn sub_dag_json(sub_dag: &CommittedSubDag, checkpoint: Option<u64>) -> Value {
    let tx_count = sub_dag.blocks.iter().map(|b| b.transactions().len()).sum();
    commit_json(&sub_dag.commit, tx_count, checkpoint)
}
