//! One commit stream: Start/Stop commands in, batches of certified commits
//! out, each batch with the blocks that certify its last commit.
//!
//! A batch holds commits of one epoch, certified by that epoch's
//! committee: it ends at the epoch's last commit at the latest, and a
//! batch that starts an epoch carries the hand-off of the epoch before.

use crate::batching::{batch_size, ByteBudget};
use crate::context::Context;
use crate::end_reason::EndReason;
use crate::error::{PublisherError, Result};
use crate::metrics::{self, PublisherMetrics};
use crate::session::{Batch, Command, Heads, StreamKind};
use bytes::Bytes;
use dagstream_proto::v1::{
    self as proto, commit_stream_request, CommitStreamRequest, CommitStreamResponse,
    CommittedSubDagData, StartCommitStream,
};
use dagstream_types::{BlockRef, CommitIndex, TrustedCommit};
use prometheus::IntCounterVec;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;

pub(crate) struct Cursor {
    /// The next commit to send.
    next: CommitIndex,
    preferred: u32,
    certified: watch::Receiver<CommitIndex>,
    /// The batch being built on the blocking pool. Kept across a cancelled
    /// [`next_batch`](Cursor::next_batch), so that no build is lost or done
    /// twice.
    building: Option<JoinHandle<Result<Built>>>,
}

/// What one build made: a batch, if a certificate could end it, and the
/// next commit to send after it.
struct Built {
    batch: Option<Batch<CommitStreamResponse>>,
    next: CommitIndex,
}

impl Cursor {
    fn start(shared: &Context, start: StartCommitStream) -> Result<Cursor, (Status, EndReason)> {
        let last = start.last_commit_index;
        let lowest = shared
            .source
            .lowest_commit_index()
            .map_err(|err| (Status::internal(err.to_string()), EndReason::Internal))?;
        if last.saturating_add(1) < lowest {
            let pruned = PublisherError::Pruned {
                index: last + 1,
                lowest,
                archive: shared.config.history_archive.clone(),
            };
            return Err((pruned.into(), EndReason::OutOfRange));
        }
        let highest = shared.source.highest_commit_index();
        let max_future = shared.config.max_future_commits;
        if last > highest.saturating_add(max_future) {
            return Err((
                Status::invalid_argument(format!(
                    "last_commit_index {last} is more than {max_future} commits past the highest \
                     commit {highest}"
                )),
                EndReason::InvalidArgument,
            ));
        }
        Ok(Cursor {
            next: last + 1,
            preferred: start.preferred_batch_size,
            certified: shared.certifier.watch(),
            building: None,
        })
    }

    /// Waits until the next commit is certified, then builds a batch.
    ///
    /// Building reads and decodes from the store, so it runs on the blocking
    /// pool: the runtime's workers stay free for the feed, the certifier and
    /// the sockets. The session queues up to `stream_queue_len` batches
    /// before the subscriber takes them, so the next batches are built while
    /// the wire carries the previous ones. Cancel-safe: a build in progress
    /// is kept in the cursor and awaited by the next call.
    async fn next_batch(&mut self, shared: &Arc<Context>) -> Result<Batch<CommitStreamResponse>> {
        loop {
            if let Some(building) = self.building.as_mut() {
                let built = building.await.expect("building a batch does not panic");
                self.building = None;
                let built = built?;
                self.next = built.next;
                if let Some(batch) = built.batch {
                    return Ok(batch);
                }
            } else {
                let certified = *self.certified.borrow_and_update();
                if self.next <= certified {
                    let (shared, next, preferred) = (shared.clone(), self.next, self.preferred);
                    let offload = shared.config.offload;
                    self.building =
                        Some(offload.spawn(move || build(&shared, next, preferred, certified)));
                    continue;
                }
            }
            if self.certified.changed().await.is_err() {
                // The certifier is gone: nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Builds the batch that starts at commit `next`, ends at or before commit
/// `certified`, and fits the byte budget.
fn build(
    shared: &Context,
    next: CommitIndex,
    preferred: u32,
    certified: CommitIndex,
) -> Result<Built> {
    let source = &shared.source;
    let lag = source.highest_commit_index().saturating_sub(next - 1);
    let size = batch_size(lag, preferred) as u64;
    let epochs = source.epochs();
    let epoch = epochs.of_commit(next);
    let mut end = certified.min(next + size - 1);
    if let Some(hand_off) = epochs.hand_off(epoch) {
        end = end.min(hand_off.last_commit);
    }
    // The batch that starts an epoch hands the subscriber over to it.
    let hand_offs = match epoch.checked_sub(1).and_then(|e| epochs.hand_off(e)) {
        Some(previous) if previous.last_commit + 1 == next => vec![previous.bytes.clone()],
        _ => Vec::new(),
    };
    let mut budget = ByteBudget::new(shared.config.max_batch_bytes);
    let mut commits: Vec<CommittedSubDagData> = Vec::new();
    for index in next..=end {
        let commit = source
            .commit(index)?
            .ok_or_else(|| pruned_or(shared, index, PublisherError::MissingCommit { index }))?;
        let blocks = read_blocks(shared, index, &commit.commit().blocks)?;
        let randomness = source.randomness(index)?;
        let bytes = blocks.iter().map(|b| b.len()).sum::<usize>()
            + randomness.as_ref().map_or(0, |r| r.len());
        if !budget.take(bytes) {
            break;
        }
        commits.push(to_proto(&commit, blocks, randomness));
    }
    // The batch ends at a commit whose certificate can be shown.
    while let Some(last) = commits.last().map(|c| c.commit_index) {
        if let Some(certificate) = shared.certifier.certificate(last)? {
            let next = last + 1;
            let certifiers = read_blocks(shared, last, &certificate.blocks)?;
            let bytes = budget.used()
                + certifiers
                    .iter()
                    .chain(&hand_offs)
                    .map(|b| b.len())
                    .sum::<usize>();
            return Ok(Built {
                batch: Some(Batch {
                    items: commits.len(),
                    bytes,
                    lag,
                    live_since: shared.certifier.certified_at(next - 1),
                    // The session sets the heads.
                    response: CommitStreamResponse {
                        commits,
                        certifier_blocks: certifiers,
                        epoch_changes: hand_offs,
                        ..CommitStreamResponse::default()
                    },
                }),
                next,
            });
        }
        commits.pop();
    }
    tracing::warn!(next, end, "certified commits without a certificate yet");
    Ok(Built { batch: None, next })
}

/// The stored bytes of blocks that commit `index` names (in its sub-DAG or
/// its certificate): from the source's tail cache when recent.
fn read_blocks(shared: &Context, index: CommitIndex, refs: &[BlockRef]) -> Result<Vec<Bytes>> {
    refs.iter()
        .zip(shared.source.blocks(refs)?)
        .map(|(reference, bytes)| {
            bytes.ok_or_else(|| {
                let missing = PublisherError::MissingBlock {
                    index,
                    block: format!("{reference:?}"),
                };
                pruned_or(shared, index, missing)
            })
        })
        .collect()
}

/// What data of commit `index` missing from the source means: that the
/// commit was pruned while a subscriber was on its way to it (a
/// subscriber slower than the retention window), or else `missing`, a
/// store that lost what it should hold.
fn pruned_or(shared: &Context, index: CommitIndex, missing: PublisherError) -> PublisherError {
    match shared.source.lowest_commit_index() {
        Ok(lowest) if index < lowest => PublisherError::Pruned {
            index,
            lowest,
            archive: shared.config.history_archive.clone(),
        },
        _ => missing,
    }
}

/// Commit `commit` as the commit stream sends it, with the bytes of its
/// blocks and its randomness (the archive's bundles hold the same).
pub fn to_proto(
    commit: &TrustedCommit,
    blocks: Vec<Bytes>,
    randomness: Option<Bytes>,
) -> CommittedSubDagData {
    let leader = commit.leader();
    CommittedSubDagData {
        commit_index: commit.index(),
        leader: Some(proto::BlockRef {
            authority_index: leader.author,
            round: leader.round,
            digest: Bytes::copy_from_slice(leader.digest.as_bytes()),
        }),
        blocks,
        timestamp_ms: commit.timestamp_ms(),
        randomness,
    }
}

/// The commit stream, for [`session::run`](crate::session::run).
pub(crate) struct CommitStream;

impl StreamKind for CommitStream {
    const SERVICE: &'static str = metrics::COMMITS;
    type Request = CommitStreamRequest;
    type Response = CommitStreamResponse;
    type Start = StartCommitStream;
    type Cursor = Cursor;

    fn command(request: CommitStreamRequest) -> Option<Command<StartCommitStream>> {
        match request.command? {
            commit_stream_request::Command::Start(start) => Some(Command::Start(start)),
            commit_stream_request::Command::Stop(_) => Some(Command::Stop),
        }
    }

    fn start(shared: &Context, start: StartCommitStream) -> Result<Cursor, (Status, EndReason)> {
        Cursor::start(shared, start)
    }

    async fn next_batch(
        cursor: &mut Cursor,
        shared: &Arc<Context>,
    ) -> Result<Batch<CommitStreamResponse>> {
        cursor.next_batch(shared).await
    }

    fn set_highest(response: &mut CommitStreamResponse, heads: Heads) {
        response.highest_commit_index = heads.highest_commit_index;
        response.highest_certified_checkpoint = heads.highest_certified_checkpoint;
    }

    fn heartbeat(heads: Heads) -> CommitStreamResponse {
        let mut response = CommitStreamResponse::default();
        Self::set_highest(&mut response, heads);
        response
    }

    fn items_sent(metrics: &PublisherMetrics) -> &IntCounterVec {
        &metrics.commits_sent
    }
}
