//! Recovery of the certifier from a store: its highest certified
//! checkpoint, and the signatures in persisted blocks for the closed
//! checkpoints after it.

use super::Certifier;
use crate::checkpoint::{load_highest_certified, load_open, load_summary};
use crate::sequencer::ClosedCheckpoint;
use crate::{ObserverError, Result};
use dagstream_store::{Store, StoreError};
use dagstream_types::{Committee, VerifiedBlock};
use std::sync::Arc;

/// How many closed checkpoints before the open one recovery looks at for
/// a missing certificate: more than a healthy committee ever leaves
/// uncertified, at one store read each.
const RECOVERY_WINDOW: u64 = 64;

/// Most persisted commits recovery reads back for signatures: the commits
/// of [`RECOVERY_WINDOW`] checkpoints of a dozen commits each.
const MAX_RECOVERY_COMMITS: usize = 1_024;

impl Certifier {
    /// The certifier of the chain in `store`: its highest certified
    /// checkpoint, and the signatures in its persisted blocks for the
    /// closed checkpoints after it (of the last [`RECOVERY_WINDOW`]). Signatures in blocks not persisted come again with
    /// the blocks.
    pub fn recover(committee: Arc<Committee>, store: &dyn Store) -> Result<Certifier> {
        let highest_certified = load_highest_certified(store)?;
        let highest_closed = load_open(store)?.and_then(|open| open.sequence.checked_sub(1));
        let mut uncertified = Vec::new();
        if let Some(highest_closed) = highest_closed {
            // Everything up to the highest certified is certified, by its
            // own certificate or through the chain of a later one.
            let from = highest_closed
                .saturating_sub(RECOVERY_WINDOW - 1)
                .max(highest_certified.map_or(0, |h| h + 1));
            for sequence in from..=highest_closed {
                let missing = |what: String| {
                    ObserverError::Store(StoreError::Corrupt {
                        what: "checkpoint",
                        reason: format!("{what} of closed checkpoint {sequence} is missing"),
                    })
                };
                let summary =
                    load_summary(store, sequence)?.ok_or_else(|| missing("the summary".into()))?;
                let closing = summary.last_commit + 1;
                let commit = store
                    .read_commit(closing)?
                    .ok_or_else(|| missing(format!("closing commit {closing}")))?;
                uncertified.push(ClosedCheckpoint {
                    summary,
                    leader_round: commit.leader().round,
                    timestamp_ms: commit.timestamp_ms(),
                });
            }
        }
        let rescan_from = uncertified.first().map(|c| c.summary.last_commit + 1);
        let mut certifier =
            Certifier::new(committee, highest_closed, highest_certified, uncertified);
        if let Some(from) = rescan_from {
            for commit in store.scan_commits(from, MAX_RECOVERY_COMMITS)? {
                let blocks = store.read_blocks(&commit.commit().blocks)?;
                for bytes in blocks.into_iter().flatten() {
                    let block = VerifiedBlock::decode_trusted(bytes).map_err(|err| {
                        ObserverError::Store(StoreError::Corrupt {
                            what: "block",
                            reason: err.to_string(),
                        })
                    })?;
                    certifier.observe(&block);
                }
            }
        }
        // What recovery certifies is recorded with the next write.
        Ok(certifier)
    }
}
