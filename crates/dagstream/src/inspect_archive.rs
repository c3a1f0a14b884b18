//! `dagstream inspect --archive URL --genesis G`: a history archive verified
//! offline from the genesis committee alone, as a bootstrapping observer
//! verifies it, and more: the manifest; every bundle's batch (commits
//! rebuilt on the chain so far, certifying blocks, randomness), each
//! hand-off against the committee it ends; the checkpoint summaries
//! (sequence, `previous_digest` chain, content digests from the commits)
//! and every certificate the archive holds; and the watermark against
//! what the bundles hold.

use anyhow::{bail, ensure, Context, Result};
use dagstream_archive::ArchiveReader;
use dagstream_observer::sequencer::ReceivedSubDag;
use dagstream_observer::verify::verify_commit_batch;
use dagstream_types::checkpoint::{extend_contents, extend_randomness};
use dagstream_types::{
    BlockLimits, CertifiedCheckpoint, CheckpointKind, CheckpointSummary, Committee, Digest,
    EpochChange, Genesis, TrustedCommit,
};
use futures::StreamExt;
use serde_json::json;
use std::path::Path;

/// Bundles fetched at once: a bootstrap's default.
const FETCHES: usize = 4;

/// What the check saw.
#[derive(Default)]
struct Tally {
    bundles: u64,
    commits: u64,
    checkpoints: u64,
    certificates: u64,
    hand_offs: u64,
    /// Checkpoints after the last certificate the archive holds: vouched
    /// for by their bundles' certifying blocks only.
    after_last_certificate: u64,
}

pub async fn run(url: &str, genesis: &Path, json: bool) -> Result<()> {
    let genesis = Genesis::load(genesis)?;
    let mut committee = Committee::new(genesis)?;
    let chain = committee.digest();
    let reader = ArchiveReader::open(url, chain).await?;
    let limits = BlockLimits::default();
    let mut tally = Tally::default();
    let mut tip: Option<TrustedCommit> = None;
    // The last two summaries: a hand-off's final checkpoint follows the
    // one before it.
    let mut summaries: Vec<CheckpointSummary> = Vec::new();
    let mut bundles = Box::pin(reader.bundles_after(0, FETCHES));
    while let Some(fetched) = bundles.next().await {
        let fetched = fetched?;
        let object = fetched.object;
        let bundle = fetched.bundle;
        let batch = bundle.batch.unwrap_or_default();
        for bytes in &batch.epoch_changes {
            let change = EpochChange::decode(bytes).with_context(|| object.clone())?;
            let final_checkpoint = summaries
                .last()
                .context("a hand-off before any checkpoint")?;
            ensure!(
                change.certificate.summary == *final_checkpoint,
                "{object}: the hand-off is over another final checkpoint than the archive's"
            );
            let before = summaries
                .iter()
                .rev()
                .nth(1)
                .context("a final checkpoint with none before it")?;
            committee = change.verify(&committee, before).with_context(|| {
                format!("{object}: the hand-off of epoch {}", committee.epoch())
            })?;
            tally.hand_offs += 1;
        }
        ensure!(
            bundle.epoch == committee.epoch(),
            "{object} is of epoch {}, the chain is in epoch {}",
            bundle.epoch,
            committee.epoch()
        );
        let received = verify_commit_batch(&committee, &limits, tip.as_ref(), &batch)
            .with_context(|| object.clone())?;
        tally.commits += received.len() as u64;
        tip = received.last().map(|r| r.sub_dag.commit.clone());
        let mut vouched = Vec::new();
        for bytes in &bundle.checkpoint_summaries {
            let summary = CheckpointSummary::decode(bytes).with_context(|| object.clone())?;
            check_summary(&summary, summaries.last(), &received)
                .with_context(|| format!("{object}: checkpoint {}", summary.sequence))?;
            summaries.push(summary);
            if summaries.len() > 2 {
                summaries.remove(0);
            }
            vouched.push(summary);
            tally.checkpoints += 1;
            tally.after_last_certificate += 1;
        }
        ensure!(
            vouched.first().map(|s| s.sequence) == Some(bundle.first_checkpoint)
                && vouched.last().map(|s| s.sequence) == Some(bundle.last_checkpoint),
            "{object} names checkpoints {} to {}, and holds others",
            bundle.first_checkpoint,
            bundle.last_checkpoint
        );
        for bytes in &bundle.certificates {
            let certificate = CertifiedCheckpoint::decode(bytes).with_context(|| object.clone())?;
            let sequence = certificate.summary.sequence;
            let Some(position) = vouched.iter().position(|s| s.sequence == sequence) else {
                bail!("{object} holds the certificate of checkpoint {sequence}, not its summary");
            };
            ensure!(
                certificate.summary == vouched[position],
                "{object}: the certificate of checkpoint {sequence} is over another summary"
            );
            certificate
                .verify(&committee)
                .with_context(|| format!("{object}: the certificate of checkpoint {sequence}"))?;
            tally.certificates += 1;
            tally.after_last_certificate = (vouched.len() - position - 1) as u64;
        }
        tally.bundles += 1;
    }
    let watermark = reader.watermark();
    let (last_commit, last_checkpoint) = (
        tip.as_ref().map_or(0, |c| c.index()),
        summaries.last().map(|s| s.sequence),
    );
    if let Some(w) = watermark {
        ensure!(
            (w.commit, Some(w.checkpoint), w.bundles)
                == (last_commit, last_checkpoint, tally.bundles),
            "the watermark says commit {}, checkpoint {}, {} bundles; the bundles hold commit \
             {last_commit}, checkpoint {last_checkpoint:?}, {} bundles",
            w.commit,
            w.checkpoint,
            w.bundles,
            tally.bundles
        );
    }
    if json {
        println!(
            "{}",
            json!({
                "archive": reader.url(),
                "chain": chain.to_string(),
                "epoch": committee.epoch(),
                "bundles": tally.bundles,
                "commits": tally.commits,
                "last_commit": last_commit,
                "checkpoints": tally.checkpoints,
                "last_checkpoint": last_checkpoint,
                "certificates": tally.certificates,
                "hand_offs": tally.hand_offs,
                "checkpoints_after_last_certificate": tally.after_last_certificate,
                "verified": true,
            })
        );
    } else {
        println!("archive {} of chain {chain}", reader.url());
        println!(
            "{} bundles: commits 1 to {last_commit}, checkpoints 0 to {}, epochs 0 to {} ({} hand-offs)",
            tally.bundles,
            last_checkpoint.map_or("none".into(), |c| c.to_string()),
            committee.epoch(),
            tally.hand_offs
        );
        println!(
            "verified: every bundle's commits and certifying blocks, {} checkpoint summaries and \
             {} certificates ({} checkpoints after the last), the watermark",
            tally.checkpoints, tally.certificates, tally.after_last_certificate
        );
    }
    Ok(())
}

/// A summary must follow `previous` and hold what the bundle's verified
/// commits make of it.
fn check_summary(
    summary: &CheckpointSummary,
    previous: Option<&CheckpointSummary>,
    received: &[ReceivedSubDag],
) -> Result<()> {
    let (sequence, previous_digest) = match previous {
        Some(p) => (p.sequence + 1, p.digest()),
        None => (0, Digest::ZERO),
    };
    ensure!(
        summary.sequence == sequence,
        "expected checkpoint {sequence}"
    );
    ensure!(
        summary.previous_digest == previous_digest,
        "it does not chain to the checkpoint before"
    );
    let commits: Vec<&ReceivedSubDag> = received
        .iter()
        .filter(|r| (summary.first_commit..=summary.last_commit).contains(&r.sub_dag.index()))
        .collect();
    let contents = match summary.kind {
        CheckpointKind::Regular => commits.iter().fold(Digest::ZERO, |acc, r| {
            extend_contents(&acc, &r.sub_dag.commit.digest())
        }),
        CheckpointKind::Randomness => commits
            .iter()
            .flat_map(|r| r.randomness.iter().flatten())
            .fold(Digest::ZERO, |acc, o| extend_randomness(&acc, o)),
        // Its contents are the next committee: checked with the hand-off
        // that the next bundle carries.
        CheckpointKind::EndOfEpoch => summary.content_digest,
    };
    ensure!(
        contents == summary.content_digest,
        "its content digest is not that of its commits"
    );
    Ok(())
}
