//! Checkpoints as the observer stores them.
//!
//! The grouping itself is the chain's ([`CheckpointBuilder`]): the
//! sequencer places each commit it persists. It writes, in the same atomic
//! batch as the commits:
//! - under [`OPEN_CHECKPOINT_KEY`], the open checkpoint
//!   ([`OpenCheckpoint::encode`], 136 bytes); once an epoch's last commit
//!   closed it, it stays there with its summary stored too, until the next
//!   epoch's first commit opens the next;
//! - under [`summary_key`], each closed checkpoint's summary.
//!
//! The certifier adds, once per checkpoint, with the next write:
//! - under [`certificate_key`], the [`CertifiedCheckpoint`];
//! - under [`HIGHEST_CERTIFIED_KEY`], the highest certified sequence (LE
//!   u64).
//!
//! [`CheckpointLookup`] answers which checkpoint holds a persisted commit
//! from these keys alone, without replaying the chain.
//!
//! [`CheckpointBuilder`]: dagstream_types::CheckpointBuilder

use crate::{ObserverError, Result};
use dagstream_store::{Store, StoreError};
use dagstream_types::{
    CertifiedCheckpoint, CheckpointKind, CheckpointSummary, CommitIndex, OpenCheckpoint,
};

/// Meta key of the open checkpoint.
pub const OPEN_CHECKPOINT_KEY: &str = "observer/checkpoint";

/// Meta key of the highest certified checkpoint's sequence, which the
/// relay's publisher reports too.
pub use dagstream_store::HIGHEST_CERTIFIED_CHECKPOINT_KEY as HIGHEST_CERTIFIED_KEY;

/// Meta keys of closed checkpoint `sequence`'s summary and of its
/// certificate (the store's, since the archive writer reads them too).
pub use dagstream_store::{
    checkpoint_certificate_key as certificate_key, checkpoint_summary_key as summary_key,
};

fn corrupt(reason: String) -> ObserverError {
    ObserverError::Store(StoreError::Corrupt {
        what: "checkpoint",
        reason,
    })
}

/// The open checkpoint as stored (`None`: no commit yet).
pub fn load_open(store: &dyn Store) -> Result<Option<OpenCheckpoint>> {
    let Some(bytes) = store.read_meta(OPEN_CHECKPOINT_KEY)? else {
        return Ok(None);
    };
    OpenCheckpoint::decode(&bytes)
        .map(Some)
        .map_err(|err| corrupt(format!("the open checkpoint: {err}")))
}

/// Closed checkpoint `sequence`'s summary as stored.
pub fn load_summary(store: &dyn Store, sequence: u64) -> Result<Option<CheckpointSummary>> {
    let Some(bytes) = store.read_meta(&summary_key(sequence))? else {
        return Ok(None);
    };
    let summary = CheckpointSummary::decode(&bytes)
        .map_err(|err| corrupt(format!("checkpoint {sequence}: {err}")))?;
    if summary.sequence != sequence {
        return Err(corrupt(format!(
            "checkpoint {sequence} is stored as {}",
            summary.sequence
        )));
    }
    Ok(Some(summary))
}

/// Checkpoint `sequence`'s certificate as stored.
pub fn load_certificate(store: &dyn Store, sequence: u64) -> Result<Option<CertifiedCheckpoint>> {
    let Some(bytes) = store.read_meta(&certificate_key(sequence))? else {
        return Ok(None);
    };
    CertifiedCheckpoint::decode(&bytes)
        .map(Some)
        .map_err(|err| corrupt(format!("the certificate of checkpoint {sequence}: {err}")))
}

/// Most summaries [`load_certification`] walks to find the certificate a
/// checkpoint is certified through: more than a catch-up step certifies
/// at once (a commit batch is at most a few hundred commits, a checkpoint
/// about three).
pub const MAX_CHAIN_WALK: u64 = 4_096;

/// How a stored checkpoint is certified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certification {
    /// The certificate that vouches for it: its own, or that of the first
    /// later checkpoint that has one.
    pub certificate: CertifiedCheckpoint,
    /// The stored summaries from the checkpoint up to the certified one,
    /// each the `previous_digest` of the next: only the checkpoint's own
    /// summary if it has its own certificate.
    pub chain: Vec<CheckpointSummary>,
}

/// How closed checkpoint `sequence` is certified: by its own certificate,
/// or through the summary chain of the next checkpoint that has one, the
/// links checked here. `None`: not certified (yet). A broken link is a
/// corrupt store. The certificate itself is the caller's to verify
/// against the committee.
pub fn load_certification(store: &dyn Store, sequence: u64) -> Result<Option<Certification>> {
    let Some(highest) = load_highest_certified(store)?.filter(|h| *h >= sequence) else {
        return Ok(None);
    };
    let mut chain = Vec::new();
    for next in sequence..=highest.min(sequence + MAX_CHAIN_WALK) {
        let summary = load_summary(store, next)?
            .ok_or_else(|| corrupt(format!("certified checkpoint {next} has no summary")))?;
        if let Some(previous) = chain.last().map(CheckpointSummary::digest) {
            if summary.previous_digest != previous {
                return Err(corrupt(format!(
                    "checkpoint {next} does not chain to checkpoint {}",
                    next - 1
                )));
            }
        }
        chain.push(summary);
        if let Some(certificate) = load_certificate(store, next)? {
            if certificate.summary != summary {
                return Err(corrupt(format!(
                    "the certificate of checkpoint {next} is over another summary"
                )));
            }
            return Ok(Some(Certification { certificate, chain }));
        }
    }
    Err(corrupt(format!(
        "checkpoint {sequence} is below the highest certified, {highest}, but no certificate \
         within {MAX_CHAIN_WALK} checkpoints vouches for it"
    )))
}

/// The highest certified checkpoint's sequence as stored.
pub fn load_highest_certified(store: &dyn Store) -> Result<Option<u64>> {
    let Some(bytes) = store.read_meta(HIGHEST_CERTIFIED_KEY)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
        corrupt(format!(
            "the highest certified checkpoint is {} bytes",
            bytes.len()
        ))
    })?;
    Ok(Some(u64::from_le_bytes(bytes)))
}

fn contains(summary: &CheckpointSummary, index: CommitIndex) -> bool {
    (summary.first_commit..=summary.last_commit).contains(&index)
}

/// Which checkpoint holds a persisted commit, from the stored checkpoint
/// keys. Remembers the last closed checkpoint it found, so that reading
/// commits in order costs one store read per checkpoint.
#[derive(Clone, Debug, Default)]
pub struct CheckpointLookup {
    last: Option<CheckpointSummary>,
}

impl CheckpointLookup {
    /// The sequence number of the checkpoint that holds persisted commit
    /// `index`.
    pub fn sequence_of(&mut self, store: &dyn Store, index: CommitIndex) -> Result<u64> {
        if let Some(last) = self.last.filter(|c| contains(c, index)) {
            return Ok(last.sequence);
        }
        let open = load_open(store)?
            .ok_or_else(|| corrupt(format!("commit {index} is persisted in no checkpoint")))?;
        if index >= open.first_commit {
            return Ok(open.sequence);
        }
        // In order, the next checkpoint is the one after the last found, or
        // after its randomness checkpoint, or after those and the epoch's
        // final checkpoint.
        if let Some(next) = self.last.filter(|c| c.last_commit + 1 == index) {
            for sequence in next.sequence + 1..=next.sequence + 3 {
                if let Some(found) = load_summary(store, sequence)? {
                    if contains(&found, index) {
                        self.last = Some(found);
                        return Ok(found.sequence);
                    }
                }
            }
        }
        // Otherwise a binary search over the closed checkpoints, whose
        // ranges are ascending (consecutive, or repeated by a randomness
        // checkpoint).
        let (mut low, mut high) = (0, open.sequence);
        while low < high {
            let middle = low + (high - low) / 2;
            let checkpoint = load_summary(store, middle)?
                .ok_or_else(|| corrupt(format!("closed checkpoint {middle} is missing")))?;
            if index < checkpoint.first_commit {
                high = middle;
            } else if index > checkpoint.last_commit {
                low = middle + 1;
            } else {
                // A randomness checkpoint has its regular one's commits and
                // follows it; an epoch's final checkpoint has its last
                // commit and follows its regular (and randomness) one.
                let mut regular = checkpoint;
                for back in 1..=2 {
                    if regular.kind == CheckpointKind::Regular {
                        break;
                    }
                    regular = middle
                        .checked_sub(back)
                        .map(|sequence| load_summary(store, sequence))
                        .transpose()?
                        .flatten()
                        .ok_or_else(|| {
                            corrupt(format!("checkpoint {middle} follows no regular one"))
                        })?;
                }
                if regular.kind != CheckpointKind::Regular || !contains(&regular, index) {
                    return Err(corrupt(format!(
                        "checkpoint {middle} follows no regular one with commit {index}"
                    )));
                }
                self.last = Some(regular);
                return Ok(regular.sequence);
            }
        }
        Err(corrupt(format!(
            "commit {index} is in no stored checkpoint"
        )))
    }
}
