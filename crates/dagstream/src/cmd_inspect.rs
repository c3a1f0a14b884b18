//! `dagstream inspect`: a store's range, an offline check of its whole
//! commit chain, any commit by index, and any checkpoint of an observer's
//! store with its certificate.

use crate::{chain, report};
use anyhow::{bail, Context, Result};
use dagstream_observer::checkpoint::{
    load_certification, load_open, load_summary, CheckpointLookup,
};
use dagstream_observer::delivery::load_randomness;
use dagstream_publisher::epochs::Epochs;
use dagstream_store::{epoch_change_key, Store};
use dagstream_types::checkpoint::{extend_contents, extend_randomness};
use dagstream_types::{
    BlockLimits, CheckpointKind, CommitIndex, Committee, Digest, EpochChange, Genesis,
    TrustedCommit, VerifiedBlock,
};
use serde_json::json;
use std::path::Path;

/// Commits read per scan: bounds memory whatever the chain's length.
const CHUNK: usize = 1_000;

/// What to show of a store.
pub enum Target {
    /// Its range, with the whole chain verified.
    Chain,
    Commit(CommitIndex),
    Checkpoint(u64),
    /// Each epoch, with the whole chain verified across them.
    Epochs,
}

pub fn run(data_dir: &Path, target: Target, json: bool) -> Result<()> {
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
    match target {
        Target::Commit(index) => show(store.as_ref(), index, json),
        Target::Checkpoint(sequence) => {
            show_checkpoint(store.as_ref(), committee.as_ref(), sequence, json)
        }
        Target::Chain => verify(store.as_ref(), committee.as_ref(), json),
        Target::Epochs => {
            let Some(genesis) = committee.as_ref() else {
                bail!(
                    "no genesis.json in {}: the epochs are verified from the genesis committee",
                    data_dir.display()
                );
            };
            let report = check_chain(store.as_ref(), Some(genesis))?;
            let epochs = report.epochs.expect("verified with the genesis committee");
            crate::epochs::show(store.as_ref(), &epochs, json)
        }
    }
}

fn show(store: &dyn Store, index: CommitIndex, json: bool) -> Result<()> {
    let commit = store
        .read_commit(index)?
        .with_context(|| format!("commit {index} is not in this store"))?;
    let mut tx_count = 0;
    let mut epoch = 0;
    for reference in &commit.commit().blocks {
        let bytes = store
            .read_block(reference)?
            .with_context(|| format!("block {reference:?} of commit {index} is missing"))?;
        let block = VerifiedBlock::decode_trusted(bytes)?;
        tx_count += block.transactions().len();
        // The leader comes last: the commit's epoch is its.
        epoch = block.epoch();
    }
    // An observer's store says which checkpoint holds the commit; for a
    // validator's, it follows from the timestamps of commits 1..=index.
    let checkpoint = if load_open(store)?.is_some() {
        Some(CheckpointLookup::default().sequence_of(store, index)?)
    } else {
        match store.commit_range()? {
            Some((1, _)) => report::checkpoints_at(store, index)?
                .open()
                .map(|open| open.sequence),
            _ => None,
        }
    };
    let randomness = load_randomness(store, index)?;
    let value = report::commit_json(&commit, epoch, tx_count, checkpoint, &randomness);
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
    /// The epochs, each hand-off verified (with the genesis committee).
    pub epochs: Option<Epochs>,
}

/// Reads the whole chain a store holds and checks it: every commit follows
/// the one before, and every block is there, hashes to its ref and (with
/// the genesis committee) carries a valid signature of the committee of
/// its commit's epoch, each committee handed over by a verified hand-off.
pub fn check_chain(store: &dyn Store, committee: Option<&Committee>) -> Result<ChainReport> {
    let epochs = committee
        .map(|genesis| crate::epochs::verified_epochs(store, genesis))
        .transpose()?;
    let range = store.commit_range()?;
    let highest_round = store.highest_block_round()?;
    let mut report = ChainReport {
        range,
        highest_round,
        blocks_checked: 0,
        epochs,
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
                let block = match &report.epochs {
                    Some(epochs) => {
                        let epoch = epochs.of_commit(index);
                        let committee = epochs.committee(epoch).expect("an epoch of the table");
                        VerifiedBlock::verify(bytes, committee, &limits).with_context(|| {
                            format!(
                                "block {reference:?} of commit {index} (epoch {epoch}) is invalid"
                            )
                        })?
                    }
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
        ..
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

/// Shows closed checkpoint `sequence` of an observer's store, its commits
/// and its signers, and verifies it: its content digest against the
/// stored commits, its link to the checkpoint before, and its certificate
/// against the committee (when the data dir holds the genesis).
fn show_checkpoint(
    store: &dyn Store,
    committee: Option<&Committee>,
    sequence: u64,
    json: bool,
) -> Result<()> {
    if load_open(store)?.is_none() {
        bail!("this store keeps no checkpoints: only an observer's does");
    }
    let summary = load_summary(store, sequence)?
        .with_context(|| format!("checkpoint {sequence} is not closed in this store"))?;
    // The committee of the checkpoint's epoch, handed over from the
    // genesis one by the stored hand-offs.
    let epochs = committee
        .map(|genesis| crate::epochs::verified_epochs(store, genesis))
        .transpose()?;
    let committee = match &epochs {
        Some(epochs) => Some(
            epochs
                .committee(summary.epoch)
                .with_context(|| format!("no hand-off to epoch {} is stored", summary.epoch))?
                .as_ref(),
        ),
        None => None,
    };
    let mut commits = Vec::new();
    let mut rounds = Vec::new();
    let mut contents = Digest::ZERO;
    for index in summary.first_commit..=summary.last_commit {
        let commit = store
            .read_commit(index)?
            .with_context(|| format!("commit {index} of checkpoint {sequence} is missing"))?;
        match summary.kind {
            CheckpointKind::Regular => {
                contents = extend_contents(&contents, &commit.digest());
                commits.push(json!({"index": index, "digest": commit.digest().to_string()}));
            }
            CheckpointKind::EndOfEpoch => {
                let change = store
                    .read_meta(&epoch_change_key(summary.epoch))?
                    .with_context(|| {
                        format!(
                            "checkpoint {sequence} ends epoch {}, whose hand-off is not stored",
                            summary.epoch
                        )
                    })?;
                contents = EpochChange::decode(&change)?.next.digest();
            }
            CheckpointKind::Randomness => {
                for output in load_randomness(store, index)? {
                    if let Some(verifier) = committee.and_then(|c| c.randomness()) {
                        verifier.verify(&output).with_context(|| {
                            format!("checkpoint {sequence}: commit {index}'s randomness")
                        })?;
                    }
                    contents = extend_randomness(&contents, &output);
                    rounds.push(json!({
                        "commit": index,
                        "round": output.round,
                        "value": output.value().to_string(),
                    }));
                }
            }
        }
    }
    if contents != summary.content_digest {
        bail!("checkpoint {sequence}: its contents do not hash to its content digest");
    }
    if let Some(previous) = sequence.checked_sub(1) {
        if let Some(before) = load_summary(store, previous)? {
            if before.digest() != summary.previous_digest {
                bail!("checkpoint {sequence} does not chain to checkpoint {previous}");
            }
        }
    }
    // Its own certificate, or that of a later checkpoint whose summary
    // chain reaches it (links checked by the lookup).
    let certification = load_certification(store, sequence)?;
    let certificate = certification.as_ref().map(|c| &c.certificate);
    if let (Some(certificate), Some(committee)) = (certificate, committee) {
        let by = certificate.summary.sequence;
        certificate
            .verify(committee)
            .with_context(|| format!("the certificate of checkpoint {by} is invalid"))?;
    }
    let certified_by = certificate.map(|c| c.summary.sequence);
    let signers: Option<Vec<u32>> =
        certificate.map(|c| c.signatures.iter().map(|(author, _)| *author).collect());
    let value = json!({
        "sequence": sequence,
        "kind": match summary.kind {
            CheckpointKind::Regular => "regular",
            CheckpointKind::Randomness => "randomness",
            CheckpointKind::EndOfEpoch => "end_of_epoch",
        },
        "epoch": summary.epoch,
        "digest": summary.digest().to_string(),
        "first_commit": summary.first_commit,
        "last_commit": summary.last_commit,
        "timestamp_ms": summary.timestamp_ms,
        "content_digest": summary.content_digest.to_string(),
        "previous_digest": summary.previous_digest.to_string(),
        "commits": commits,
        "randomness": rounds,
        "certified": certificate.is_some(),
        "certified_by": certified_by,
        "signers": signers,
        "certificate_checked": certificate.is_some() && committee.is_some(),
    });
    if json {
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    match (certified_by, committee) {
        (None, _) => println!("checkpoint {sequence}: contents verified; not certified yet"),
        (Some(by), Some(_)) if by == sequence => {
            println!("checkpoint {sequence}: contents and certificate verified")
        }
        (Some(by), Some(_)) => println!(
            "checkpoint {sequence}: contents verified; certified through the summary chain of checkpoint {by}, whose certificate is verified"
        ),
        (Some(_), None) => println!(
            "checkpoint {sequence}: contents verified; certificate not checked (no genesis.json in the data dir)"
        ),
    }
    Ok(())
}
