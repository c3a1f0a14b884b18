//! `dagstream inspect`: a store's range, an offline check of its whole
//! commit chain, and any commit by index.

use crate::{chain, report};
use anyhow::{bail, Context, Result};
use dagstream_observer::checkpoint::{CheckpointLookup, Checkpointer};
use dagstream_store::Store;
use dagstream_types::{BlockLimits, CommitIndex, Committee, Genesis, TrustedCommit, VerifiedBlock};
use std::path::Path;

/// Commits read per scan: bounds memory whatever the chain's length.
const CHUNK: usize = 1_000;

pub fn run(
    data_dir: &Path,
    commit: Option<CommitIndex>,
    json: bool,
    checkpoint_interval_ms: u64,
) -> Result<()> {
    if chain::store_path(data_dir).is_none() {
        bail!(
            "no store in {}: is it a dagstream data dir?",
            data_dir.display()
        );
    }
    let store = chain::open_store(data_dir)?;
    // Signatures are checked too when the data dir holds its genesis.
    let committee = Genesis::load(data_dir)
        .ok()
        .map(Committee::new)
        .transpose()?;
    match commit {
        Some(index) => show(store.as_ref(), index, json, checkpoint_interval_ms),
        None => verify(store.as_ref(), committee.as_ref(), json),
    }
}

fn show(store: &dyn Store, index: CommitIndex, json: bool, interval_ms: u64) -> Result<()> {
    let commit = store
        .read_commit(index)?
        .with_context(|| format!("commit {index} is not in this store"))?;
    let mut tx_count = 0;
    for reference in &commit.commit().blocks {
        let bytes = store
            .read_block(reference)?
            .with_context(|| format!("block {reference:?} of commit {index} is missing"))?;
        tx_count += VerifiedBlock::decode_trusted(bytes)?.transactions().len();
    }
    // An observer's store says which checkpoint holds the commit; for a
    // validator's, it follows from the timestamps of commits 1..=index.
    let checkpoint = if Checkpointer::load_open(store)?.is_some() {
        Some(CheckpointLookup::default().sequence_of(store, index)?)
    } else {
        match store.commit_range()? {
            Some((1, _)) => report::checkpointer_at(store, interval_ms, index)?
                .open()
                .map(|open| open.sequence),
            _ => None,
        }
    };
    let value = report::commit_json(&commit, tx_count, checkpoint);
    if json {
        println!("{}", serde_json::to_string(&value)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&value)?);
        println!("previous digest: {}", commit.commit().previous_digest);
    }
    Ok(())
}

/// What [`check_chain`] verified.
pub struct ChainReport {
    /// The commits held, `None` for a store without any.
    pub range: Option<(CommitIndex, CommitIndex)>,
    pub highest_round: Option<u64>,
    pub blocks_checked: u64,
}

/// Reads the whole chain a store holds and checks it: every commit follows
/// the one before, and every block is there, hashes to its ref and (with
/// the committee) carries a valid signature.
pub fn check_chain(store: &dyn Store, committee: Option<&Committee>) -> Result<ChainReport> {
    let range = store.commit_range()?;
    let highest_round = store.highest_block_round()?;
    let mut report = ChainReport {
        range,
        highest_round,
        blocks_checked: 0,
    };
    let Some((lowest, highest)) = range else {
        return Ok(report);
    };
    let limits = BlockLimits::default();
    // The commit before `lowest` may be pruned: the first one read is
    // trusted as the start, and every one after it must follow it.
    let mut previous: Option<TrustedCommit> = None;
    let mut next = lowest;
    while next <= highest {
        let chunk = store.scan_commits(next, CHUNK)?;
        if chunk.is_empty() {
            bail!("commit {next} is missing");
        }
        for commit in chunk {
            let index = commit.index();
            if index != next {
                bail!("commit {next} is missing (found {index} next)");
            }
            let c = commit.commit();
            if previous.is_some() || index == 1 {
                c.check_follows(previous.as_ref())
                    .with_context(|| format!("the chain breaks at commit {index}"))?;
            }
            for reference in &c.blocks {
                let bytes = store
                    .read_block(reference)?
                    .with_context(|| format!("block {reference:?} of commit {index} is missing"))?;
                let block = match committee {
                    Some(committee) => VerifiedBlock::verify(bytes, committee, &limits)
                        .with_context(|| {
                            format!("block {reference:?} of commit {index} is invalid")
                        })?,
                    None => VerifiedBlock::decode_trusted(bytes)?,
                };
                if block.reference() != *reference {
                    bail!("block {reference:?} of commit {index} does not hash to its ref");
                }
                report.blocks_checked += 1;
            }
            next = index + 1;
            previous = Some(commit);
        }
    }
    Ok(report)
}

fn verify(store: &dyn Store, committee: Option<&Committee>, json: bool) -> Result<()> {
    let ChainReport {
        range,
        highest_round,
        blocks_checked,
    } = check_chain(store, committee)?;
    let Some((lowest, highest)) = range else {
        println!("empty store: no commits; highest block round {highest_round:?}");
        return Ok(());
    };
    let signatures = if committee.is_some() {
        "checked"
    } else {
        "not checked (no genesis.json in the data dir)"
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "lowest_commit": lowest,
                "highest_commit": highest,
                "highest_block_round": highest_round,
                "blocks_checked": blocks_checked,
                "signatures_checked": committee.is_some(),
                "verified": true,
            })
        );
    } else {
        println!(
            "commits {lowest}..={highest}, blocks up to round {}",
            highest_round.unwrap_or(0)
        );
        println!(
            "chain verified: {} commits, {blocks_checked} blocks; digests chained; signatures {signatures}",
            highest - lowest + 1
        );
    }
    Ok(())
}
