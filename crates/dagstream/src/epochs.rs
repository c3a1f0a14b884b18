//! The epochs a data dir holds, each hand-off verified with the committee
//! before it, from the genesis committee on: what `inspect` and `store
//! repair` check a chain across epochs with, and what `inspect --epochs`
//! lists.

use anyhow::{bail, Context, Result};
use dagstream_observer::checkpoint::load_summary;
use dagstream_publisher::epochs::Epochs;
use dagstream_store::{epoch_change_key, Store};
use dagstream_types::{Committee, EpochChange};
use serde_json::json;
use std::sync::Arc;

/// The epochs in `store`, from `genesis`: each stored hand-off verified
/// with the committee it hands over from. In an observer's store, whose
/// checkpoints are stored, the final checkpoint must also follow the
/// epoch's last checkpoint; a validator's store keeps no checkpoints, so
/// there the certificate, the next epoch's number and its committee are
/// checked.
pub fn verified_epochs(store: &dyn Store, genesis: &Committee) -> Result<Epochs> {
    let mut epochs = Epochs::new(Arc::new(genesis.clone()));
    loop {
        let current = epochs.current().clone();
        let epoch = current.epoch();
        let Some(bytes) = store.read_meta(&epoch_change_key(epoch))? else {
            return Ok(epochs);
        };
        let change = EpochChange::decode(&bytes)
            .with_context(|| format!("the hand-off of epoch {epoch} does not decode"))?;
        let summary = change.certificate.summary;
        let last = summary
            .sequence
            .checked_sub(1)
            .map(|sequence| load_summary(store, sequence))
            .transpose()?
            .flatten();
        let checked: Result<()> = match last {
            Some(last) => change.verify(&current, &last).map(drop).map_err(Into::into),
            None => without_checkpoints(&change, &current),
        };
        checked.with_context(|| format!("the hand-off of epoch {epoch} is invalid"))?;
        epochs.push(bytes)?;
    }
}

/// What a store without checkpoints lets one check of a hand-off: its
/// certificate, the next epoch's number, and the committee.
fn without_checkpoints(change: &EpochChange, current: &Committee) -> Result<()> {
    change.certificate.verify(current)?;
    let next = change.next.committee.epoch;
    if next != current.epoch() + 1 {
        bail!("it names a committee of epoch {next}");
    }
    change.next.committee()?;
    Ok(())
}

/// Prints each epoch: its commits, its committee and the checkpoint that
/// handed it over.
pub fn show(store: &dyn Store, epochs: &Epochs, json: bool) -> Result<()> {
    let genesis = epochs.genesis().epoch();
    let current = epochs.current().epoch();
    let highest = store.last_commit_index()?;
    let mut rows = Vec::new();
    let mut first_commit = 1;
    for epoch in genesis..=current {
        let committee = epochs.committee(epoch).expect("an epoch of the table");
        let ended = epochs.hand_off(epoch);
        let last_commit = ended.map(|h| h.last_commit);
        let handed_over_by = match epoch.checked_sub(1).and_then(|e| epochs.hand_off(e)) {
            Some(hand_off) => Some(EpochChange::decode(&hand_off.bytes)?.certificate.summary),
            None => None,
        };
        rows.push(json!({
            "epoch": epoch,
            "first_commit": first_commit,
            "last_commit": last_commit,
            "genesis_round": committee.genesis_round(),
            "total_stake": committee.total_stake(),
            "committee": committee.authorities().map(|a| json!({
                "index": a.index,
                "stake": a.stake,
                "public_key": a.public_key,
            })).collect::<Vec<_>>(),
            "handed_over_by": handed_over_by.map(|s| json!({
                "checkpoint": s.sequence,
                "digest": s.digest().to_string(),
                "last_commit": s.last_commit,
            })),
        }));
        if let Some(last) = last_commit {
            first_commit = last + 1;
        }
    }
    if json {
        println!("{}", json!({ "epochs": rows, "highest_commit": highest }));
        return Ok(());
    }
    for row in &rows {
        let last = match row["last_commit"].as_u64() {
            Some(last) => last.to_string(),
            None => format!("{highest} (current)"),
        };
        let by = match row["handed_over_by"]["checkpoint"].as_u64() {
            Some(sequence) => format!("checkpoint {sequence}"),
            None => "genesis".to_string(),
        };
        println!(
            "epoch {}: commits {}..={last}, {} authorities of stake {}, from round {}, handed over by {by}",
            row["epoch"],
            row["first_commit"],
            row["committee"].as_array().map_or(0, |c| c.len()),
            row["total_stake"],
            row["genesis_round"],
        );
        for authority in row["committee"].as_array().into_iter().flatten() {
            println!(
                "  {:>4}  stake {:>3}  {}",
                authority["index"],
                authority["stake"],
                authority["public_key"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
