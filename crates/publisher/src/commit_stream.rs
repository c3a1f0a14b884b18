//! One commit stream: Start/Stop commands in, batches of certified commits
//! out, each batch with the blocks that certify its last commit.

use crate::batching::{batch_size, ByteBudget};
use crate::server::Shared;
use crate::session::{EndReason, Outbox};
use crate::{metrics, PublisherError, Result};
use bytes::Bytes;
use dagstream_proto::v1::{
    self as proto, commit_stream_request, CommitStreamRequest, CommitStreamResponse,
    CommittedSubDagData, StartCommitStream,
};
use dagstream_types::{CommitIndex, TrustedCommit};
use std::sync::Arc;
use tokio::sync::watch;
use tonic::{Status, Streaming};

struct Cursor {
    /// The next commit to send.
    next: CommitIndex,
    preferred: u32,
    certified: watch::Receiver<CommitIndex>,
}

/// A batch ready to send.
struct Batch {
    commits: Vec<CommittedSubDagData>,
    certifiers: Vec<Bytes>,
    bytes: usize,
    lag: u64,
}

impl Cursor {
    fn start(shared: &Shared, start: StartCommitStream) -> Result<Cursor, (Status, EndReason)> {
        let last = start.last_commit_index;
        let lowest = shared
            .source
            .lowest_commit_index()
            .map_err(|err| (Status::internal(err.to_string()), EndReason::Internal))?;
        if last.saturating_add(1) < lowest {
            return Err((
                Status::out_of_range(format!(
                    "commit {} is no longer retained; the lowest available commit is {lowest}",
                    last + 1
                )),
                EndReason::OutOfRange,
            ));
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
        })
    }

    /// Waits until the next commit is certified, then builds a batch.
    /// Cancel-safe: it awaits only while holding nothing.
    async fn next_batch(&mut self, shared: &Shared) -> Result<Batch> {
        loop {
            let certified = *self.certified.borrow_and_update();
            if self.next <= certified {
                if let Some(batch) = self.build(shared, certified)? {
                    return Ok(batch);
                }
            }
            if self.certified.changed().await.is_err() {
                // The certifier is gone: nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }

    fn build(&mut self, shared: &Shared, certified: CommitIndex) -> Result<Option<Batch>> {
        let source = &shared.source;
        let lag = source.highest_commit_index().saturating_sub(self.next - 1);
        let size = batch_size(lag, self.preferred) as u64;
        let end = certified.min(self.next + size - 1);
        let mut budget = ByteBudget::new(shared.config.max_batch_bytes);
        let mut commits: Vec<(TrustedCommit, Vec<Bytes>)> = Vec::new();
        for index in self.next..=end {
            let commit = source
                .commit(index)?
                .ok_or(PublisherError::MissingCommit { index })?;
            let blocks = commit
                .commit()
                .blocks
                .iter()
                .map(|reference| {
                    source
                        .block(reference)?
                        .ok_or(PublisherError::MissingBlock {
                            index,
                            block: format!("{reference:?}"),
                        })
                })
                .collect::<Result<Vec<Bytes>>>()?;
            if !budget.take(blocks.iter().map(|b| b.len()).sum()) {
                break;
            }
            commits.push((commit, blocks));
        }
        // The batch ends at a commit whose certificate can be shown.
        while let Some((last, _)) = commits.last() {
            if let Some(certificate) = shared.certifier.certificate(last.index())? {
                self.next = last.index() + 1;
                let certifiers = certificate.blocks.clone();
                let bytes = budget.used() + certifiers.iter().map(|b| b.len()).sum::<usize>();
                let commits = commits
                    .into_iter()
                    .map(|(commit, blocks)| to_proto(&commit, blocks))
                    .collect();
                return Ok(Some(Batch {
                    commits,
                    certifiers,
                    bytes,
                    lag,
                }));
            }
            commits.pop();
        }
        tracing::warn!(
            next = self.next,
            end,
            "certified commits without a certificate yet"
        );
        Ok(None)
    }
}

fn to_proto(commit: &TrustedCommit, blocks: Vec<Bytes>) -> CommittedSubDagData {
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
    }
}

/// Serves one commit stream until the subscriber leaves or an error ends it.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut requests: Streaming<CommitStreamRequest>,
    mut outbox: Outbox<CommitStreamResponse>,
    subscriber: String,
) -> EndReason {
    let lag_gauge = shared
        .metrics
        .subscriber_lag
        .with_label_values(&[metrics::COMMITS, &subscriber]);
    let mut limiter = shared.command_limiter();
    let mut cursor: Option<Cursor> = None;
    let mut shutdown = shared.shutdown.clone();
    let heartbeat = shared.config.heartbeat_interval();
    let reason = loop {
        let heartbeat_at = outbox.last_sent() + heartbeat;
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                outbox.fail(Status::unavailable("publisher is shutting down"));
                break EndReason::Shutdown;
            }
            message = requests.message() => {
                let request = match message {
                    Ok(Some(request)) => request,
                    Ok(None) | Err(_) => break EndReason::ClientClosed,
                };
                if !limiter.allow(std::time::Instant::now()) {
                    outbox.fail(Status::resource_exhausted(format!(
                        "more than {} commands per second",
                        shared.config.max_commands_per_second
                    )));
                    break EndReason::RateLimited;
                }
                let command = match &request.command {
                    Some(commit_stream_request::Command::Start(_)) => "start",
                    Some(commit_stream_request::Command::Stop(_)) => "stop",
                    None => "none",
                };
                shared.metrics.commands.with_label_values(&[metrics::COMMITS, command]).inc();
                match request.command {
                    Some(commit_stream_request::Command::Start(start)) => {
                        match Cursor::start(&shared, start) {
                            Ok(started) => cursor = Some(started),
                            Err((status, reason)) => {
                                outbox.fail(status);
                                break reason;
                            }
                        }
                    }
                    Some(commit_stream_request::Command::Stop(_)) => cursor = None,
                    None => {
                        outbox.fail(Status::invalid_argument("request has no command"));
                        break EndReason::InvalidArgument;
                    }
                }
            }
            batch = async { cursor.as_mut().expect("branch enabled only when started").next_batch(&shared).await }, if cursor.is_some() => {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(err) => {
                        tracing::error!(cause = %err, subscriber, "commit stream failed");
                        outbox.fail(Status::internal(err.to_string()));
                        break EndReason::Internal;
                    }
                };
                let count = batch.commits.len();
                lag_gauge.set(batch.lag.saturating_sub(count as u64) as i64);
                let response = CommitStreamResponse {
                    commits: batch.commits,
                    highest_commit_index: shared.source.highest_commit_index(),
                    certifier_blocks: batch.certifiers,
                };
                if let Err(reason) = outbox.send(response).await {
                    break reason;
                }
                shared.metrics.commits_sent.with_label_values(&[metrics::COMMITS]).inc_by(count as u64);
                shared.metrics.bytes_sent.with_label_values(&[metrics::COMMITS]).inc_by(batch.bytes as u64);
                shared.metrics.batch_size.with_label_values(&[metrics::COMMITS]).observe(count as f64);
            }
            _ = tokio::time::sleep_until(heartbeat_at) => {
                let response = CommitStreamResponse {
                    commits: vec![],
                    highest_commit_index: shared.source.highest_commit_index(),
                    certifier_blocks: vec![],
                };
                if let Err(reason) = outbox.send(response).await {
                    break reason;
                }
            }
            _ = outbox.closed() => break EndReason::ClientClosed,
        }
    };
    outbox.finish();
    let _ = shared
        .metrics
        .subscriber_lag
        .remove_label_values(&[metrics::COMMITS, &subscriber]);
    reason
}
