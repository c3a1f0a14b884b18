//! Bundles: the archive's history objects. [`BundleBuilder`] reads one
//! from the node's store; [`encode`] and [`decode`] turn it into the
//! object's bytes and back (a protobuf `ArchiveBundle`, zstd-compressed).
//!
//! A bundle holds whole checkpoints of one epoch. It ends where a
//! checkpoint's commits end and the next checkpoint's begin (a randomness
//! or end-of-epoch checkpoint shares its regular checkpoint's commits, so
//! it is never split from it), once it holds about `target_bytes` of
//! blocks, at the epoch's end, or at the highest certified checkpoint.

use crate::error::{ArchiveError, Result};
use crate::pool::BufferPool;
use bytes::Bytes;
use dagstream_proto::v1::{self as proto, ArchiveBundle, CommitStreamResponse};
use dagstream_publisher::{commit_stream, Certifier, ConsensusSource, StoreSource};
use dagstream_store::{checkpoint_certificate_key, checkpoint_summary_key, Store};
use dagstream_types::{CheckpointSummary, CommitIndex, TrustedCommit};
use prost::Message;
use std::io::Read;

/// The largest bundle, decoded: the largest message of the streams
/// (`dagstream_proto::MAX_MESSAGE_BYTES`), since a bundle is what one
/// commit-stream response would carry. A reader refuses anything larger
/// before it allocates it.
pub const MAX_BUNDLE_BYTES: usize = dagstream_proto::MAX_MESSAGE_BYTES;

/// zstd's level: 3, its default, compresses a bundle of 16 MiB in tens of
/// milliseconds, far below the time its upload takes.
const ZSTD_LEVEL: i32 = 3;

/// Where the next bundle starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next {
    pub checkpoint: u64,
    pub commit: CommitIndex,
}

/// Reads bundles from a node's store.
pub struct BundleBuilder<'a> {
    pub source: &'a StoreSource,
    pub certifier: &'a Certifier,
    /// A bundle ends at the first checkpoint boundary past this many bytes
    /// of blocks.
    pub target_bytes: usize,
}

impl BundleBuilder<'_> {
    /// The bundle that starts at `next`, of checkpoints up to
    /// `highest_certified`; `None` if none can end yet (the checkpoint
    /// after the last one is not closed, or the last commit's certifying
    /// blocks are not stored yet).
    pub fn build(&self, next: Next, highest_certified: u64) -> Result<Option<ArchiveBundle>> {
        let store = self.source.store().as_ref();
        let mut summaries: Vec<CheckpointSummary> = Vec::new();
        let mut commits = Vec::new();
        let mut bytes = 0usize;
        // Where the bundle could end: after each complete group of
        // commits, as many summaries and commits as it then holds.
        let mut ends: Vec<(usize, usize)> = Vec::new();
        let mut sequence = next.checkpoint;
        while sequence <= highest_certified {
            let Some(summary) = load_summary(store, sequence)? else {
                break;
            };
            if summaries.first().is_some_and(|f| f.epoch != summary.epoch) {
                break;
            }
            let last = match summaries.last() {
                Some(previous) => previous.last_commit,
                None if summary.first_commit == next.commit => next.commit - 1,
                None => {
                    return Err(missing(format!(
                        "checkpoint {sequence} starts at commit {}, not at commit {}: the archive \
                     does not continue this store's chain",
                        summary.first_commit, next.commit
                    )))
                }
            };
            if summary.last_commit > last {
                // A new group of commits: the bundle can end before it.
                if !summaries.is_empty() {
                    ends.push((summaries.len(), commits.len()));
                    // Past the target, the first end with certifying
                    // blocks ends it.
                    if bytes >= self.target_bytes && self.certifier.certificate(last)?.is_some() {
                        break;
                    }
                }
                let group = (last + 1..=summary.last_commit)
                    .map(|index| self.commit(index))
                    .collect::<Result<Vec<_>>>()?;
                let group_bytes: usize = group.iter().flat_map(|c| &c.blocks).map(Bytes::len).sum();
                if bytes + group_bytes > MAX_BUNDLE_BYTES {
                    if summaries.is_empty() {
                        return Err(ArchiveError::TooLarge {
                            object: format!("the bundle of checkpoint {sequence}"),
                            size: group_bytes,
                            max: MAX_BUNDLE_BYTES,
                        });
                    }
                    break;
                }
                commits.extend(group);
                bytes += group_bytes;
            }
            summaries.push(summary);
            sequence += 1;
        }
        // The last group is complete once the next checkpoint starts a new
        // one.
        if let Some(last) = summaries.last() {
            let after = load_summary(store, last.sequence + 1)?;
            if after.is_some_and(|a| a.last_commit > last.last_commit) {
                ends.push((summaries.len(), commits.len()));
            }
        }
        // The bundle ends at the latest end whose last commit has blocks
        // that certify it (a commit decided with a later one in the same
        // round may have none): a reader checks exactly those.
        let mut found = None;
        for &(count, commit_count) in ends.iter().rev() {
            let last_commit = summaries[count - 1].last_commit;
            if let Some(certificate) = self.certifier.certificate(last_commit)? {
                found = Some((count, commit_count, certificate));
                break;
            }
        }
        let Some((count, commit_count, certificate)) = found else {
            return Ok(None);
        };
        summaries.truncate(count);
        commits.truncate(commit_count);
        let (Some(first), Some(last)) = (summaries.first().copied(), summaries.last().copied())
        else {
            return Ok(None);
        };
        let certifier_blocks = self
            .source
            .blocks(&certificate.blocks)?
            .into_iter()
            .zip(&certificate.blocks)
            .map(|(bytes, reference)| {
                bytes.ok_or_else(|| missing(format!("certifying block {reference:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let epochs = self.source.epochs();
        let epoch_changes = match first.epoch.checked_sub(1).and_then(|e| epochs.hand_off(e)) {
            Some(hand_off) if hand_off.last_commit + 1 == next.commit => {
                vec![hand_off.bytes.clone()]
            }
            _ => Vec::new(),
        };
        let certificates = (first.sequence..=last.sequence)
            .filter_map(|sequence| {
                store
                    .read_meta(&checkpoint_certificate_key(sequence))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ArchiveBundle {
            first_commit: next.commit,
            last_commit: last.last_commit,
            first_checkpoint: first.sequence,
            last_checkpoint: last.sequence,
            epoch: first.epoch,
            batch: Some(CommitStreamResponse {
                commits,
                highest_commit_index: last.last_commit,
                certifier_blocks,
                epoch_changes,
                ..CommitStreamResponse::default()
            }),
            checkpoint_summaries: summaries.iter().map(|s| Bytes::from(s.encode())).collect(),
            certificates,
        }))
    }

    /// Commit `index` with its blocks and randomness, as the commit stream
    /// sends it.
    fn commit(&self, index: CommitIndex) -> Result<proto::CommittedSubDagData> {
        let commit: TrustedCommit = self
            .source
            .commit(index)?
            .ok_or_else(|| missing(format!("commit {index}")))?;
        let refs = &commit.commit().blocks;
        let blocks = self
            .source
            .blocks(refs)?
            .into_iter()
            .zip(refs)
            .map(|(bytes, reference)| {
                bytes.ok_or_else(|| missing(format!("block {reference:?} of commit {index}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let randomness = self.source.randomness(index)?;
        Ok(commit_stream::to_proto(&commit, blocks, randomness))
    }
}

fn load_summary(store: &dyn Store, sequence: u64) -> Result<Option<CheckpointSummary>> {
    store
        .read_meta(&checkpoint_summary_key(sequence))?
        .map(|bytes| CheckpointSummary::decode(&bytes))
        .transpose()
        .map_err(ArchiveError::from)
}

fn missing(what: String) -> ArchiveError {
    ArchiveError::LocalStore(dagstream_store::StoreError::Corrupt {
        what: "archived chain",
        reason: format!("{what} is not in the store"),
    })
}

/// A bundle's object bytes: its protobuf encoding, zstd-compressed.
pub fn encode(bundle: &ArchiveBundle) -> Bytes {
    let encoded = bundle.encode_to_vec();
    Bytes::from(zstd::bulk::compress(&encoded, ZSTD_LEVEL).expect("compressing to memory"))
}

/// The bundle in object `name`'s bytes, which must be the bundle that
/// starts at commit `first`. Damage is named, and nothing past
/// [`MAX_BUNDLE_BYTES`] is decompressed.
pub fn decode(name: &str, first: CommitIndex, bytes: &[u8]) -> Result<ArchiveBundle> {
    decode_pooled(name, first, bytes, &BufferPool::default())
}

/// [`decode`], decompressing into a buffer from `pool`, to which it
/// returns once the bundle and every block of it are dropped.
pub fn decode_pooled(
    name: &str,
    first: CommitIndex,
    bytes: &[u8],
    pool: &BufferPool,
) -> Result<ArchiveBundle> {
    let damaged = |reason: String| ArchiveError::Damaged {
        object: name.into(),
        reason,
    };
    let too_large = |size: usize| ArchiveError::TooLarge {
        object: name.into(),
        size,
        max: MAX_BUNDLE_BYTES,
    };
    let decoded = match zstd::zstd_safe::get_frame_content_size(bytes) {
        Ok(Some(size)) if size > MAX_BUNDLE_BYTES as u64 => {
            return Err(too_large(usize::try_from(size).unwrap_or(usize::MAX)))
        }
        // The writer's frame says its size: decompressed into one buffer
        // of at least that size, neither grown nor zeroed first (which cost
        // three times the decompression itself in a bootstrap's profile).
        Ok(Some(size)) => {
            let mut decoded = pool.take(size as usize);
            zstd::bulk::Decompressor::new()
                .and_then(|mut zstd| zstd.decompress_to_buffer(bytes, &mut decoded))
                .map_err(|err| damaged(format!("zstd: {err}")))?;
            decoded
        }
        // A frame that does not say (another writer): streamed, bounded.
        Ok(None) => {
            let mut decoded = Vec::new();
            zstd::stream::read::Decoder::new(bytes)
                .map_err(|err| damaged(format!("zstd: {err}")))?
                .take(MAX_BUNDLE_BYTES as u64 + 1)
                .read_to_end(&mut decoded)
                .map_err(|err| damaged(format!("zstd: {err}")))?;
            if decoded.len() > MAX_BUNDLE_BYTES {
                return Err(too_large(decoded.len()));
            }
            decoded
        }
        Err(_) => return Err(damaged("zstd: not a zstd frame".into())),
    };
    let bundle = ArchiveBundle::decode(pool.share(decoded))
        .map_err(|err| damaged(format!("protobuf: {err}")))?;
    let batch = bundle.batch.as_ref();
    let commits = batch.map_or(&[][..], |b| &b.commits[..]);
    let (Some(head), Some(tail)) = (commits.first(), commits.last()) else {
        return Err(damaged("no commits".into()));
    };
    let contiguous = commits
        .windows(2)
        .all(|w| w[1].commit_index == w[0].commit_index + 1);
    if head.commit_index != first
        || bundle.first_commit != first
        || tail.commit_index != bundle.last_commit
        || !contiguous
    {
        return Err(damaged(format!(
            "it should hold commits {first} to {}, one after another; it holds {} to {}",
            bundle.last_commit, head.commit_index, tail.commit_index
        )));
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(first: CommitIndex, last: CommitIndex) -> ArchiveBundle {
        let commits = (first..=last)
            .map(|index| proto::CommittedSubDagData {
                commit_index: index,
                blocks: vec![Bytes::from(vec![index as u8; 100])],
                ..Default::default()
            })
            .collect();
        ArchiveBundle {
            first_commit: first,
            last_commit: last,
            batch: Some(CommitStreamResponse {
                commits,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_bundle_round_trips_and_damage_is_named() {
        let original = bundle(5, 9);
        let bytes = encode(&original);
        assert_eq!(decode("b", 5, &bytes).unwrap(), original);
        // Named by the commit it should start at.
        assert!(matches!(
            decode("b", 4, &bytes).unwrap_err(),
            ArchiveError::Damaged { object, reason } if object == "b" && reason.contains("commits 4")
        ));
        assert!(matches!(
            decode("b", 5, b"not zstd at all").unwrap_err(),
            ArchiveError::Damaged { reason, .. } if reason.contains("not a zstd frame")
        ));
        let mut cut = bytes.to_vec();
        cut.truncate(cut.len() - 4);
        assert!(matches!(
            decode("b", 5, &cut).unwrap_err(),
            ArchiveError::Damaged { .. }
        ));
    }

    #[test]
    fn nothing_past_the_limit_is_decompressed() {
        let huge = vec![0u8; MAX_BUNDLE_BYTES + 1];
        // A frame that says its size is refused on its header; one that
        // does not, once the limit is passed.
        let sized = zstd::bulk::compress(&huge, 1).unwrap();
        let streamed = zstd::stream::encode_all(&huge[..], 1).unwrap();
        for bytes in [sized, streamed] {
            assert!(matches!(
                decode("b", 1, &bytes).unwrap_err(),
                ArchiveError::TooLarge { size, max, .. }
                    if size > max && max == MAX_BUNDLE_BYTES
            ));
        }
    }
}
