//! Bootstrap from a history archive (`--bootstrap-from`): the bundles
//! after the persisted chain, each verified as a validator's commit batch
//! would be, before the node follows its upstreams.
//!
//! The archive is untrusted: a bundle counts only once its batch verifies
//! against the observer's own chain (the certifying blocks' signatures
//! under the committee it trusts, every digest linked), exactly as on the
//! commit stream. A bundle that cannot be fetched, is damaged, or does not
//! verify ends the bootstrap with its object named; nothing of it is
//! written, and the upstreams serve the rest of the chain from there.

use super::receive::{Ahead, Verified, VerifiedBatch};
use super::{AbortOnDrop, Node, SessionEnd};
use crate::delivery::DeliveredSubDag;
use crate::status::ObserverStatus;
use crate::{ObserverError, Result};
use dagstream_archive::{ArchiveError, ArchiveReader, Fetched, Result as ArchiveResult};
use dagstream_proto::v1::CommitStreamResponse;
use dagstream_types::CommitIndex;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

/// How a bootstrap ended.
pub(super) enum Bootstrapped {
    /// The archive's history is taken (or it could not give more): follow
    /// the upstreams.
    Done,
    Shutdown,
}

impl Node {
    /// Takes the history after the persisted chain from the archive at
    /// `url`. An archive of another chain is refused (a fatal error, as an
    /// upstream of another chain is); any other failure is logged, shown
    /// in the status, and leaves the rest to the upstreams.
    pub(super) async fn bootstrap(
        &mut self,
        url: &str,
        consumer: &mpsc::Sender<DeliveredSubDag>,
        status: &watch::Sender<ObserverStatus>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Bootstrapped> {
        let chain = self.epochs.genesis().digest();
        let opening = ArchiveReader::open(url, chain);
        let reader = tokio::select! {
            biased;
            _ = shutdown.changed() => return Ok(Bootstrapped::Shutdown),
            reader = opening => reader,
        };
        let reader = match reader {
            Ok(reader) => reader,
            Err(err @ (ArchiveError::WrongChain { .. } | ArchiveError::UnknownFormat { .. })) => {
                return Err(ObserverError::Archive(err))
            }
            Err(err) => {
                warn!(archive = url, cause = %err, "cannot bootstrap from the archive; following the upstreams");
                self.status.archive_error = Some(err.to_string());
                let _ = status.send(self.status.clone());
                return Ok(Bootstrapped::Done);
            }
        };
        let last = reader.last_commit();
        let from = self.tip_index();
        info!(
            archive = url,
            from,
            to = last,
            "bootstrapping from the archive"
        );
        // Fetched and decoded on a task of their own, so that the next
        // bundles are ready while this one is verified and written (the
        // stream makes progress only while polled). Each bundle is at most
        // `MAX_BUNDLE_BYTES`: `bootstrap_fetches` of them in flight, one
        // queued, one on its way to the queue, one being verified ahead
        // and the one being sequenced and written.
        let (fetched_tx, mut fetched) = mpsc::channel(1);
        let bundles = reader.bundles_after(from, self.config.archive.bootstrap_fetches);
        let _fetcher = AbortOnDrop(tokio::spawn(async move {
            let mut bundles = std::pin::pin!(bundles);
            while let Some(next) = bundles.next().await {
                let failed = next.is_err();
                if fetched_tx.send(next).await.is_err() || failed {
                    break;
                }
            }
        }));
        // The next bundle, taken from the fetcher while the one before was
        // verified, with its verification started.
        let mut next: Option<Pending> = None;
        loop {
            let room = self.delivery.has_room(self.tip_index());
            let undelivered = self.delivery.pending(self.persisted());
            let writing = self.persister.busy();
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(Bootstrapped::Shutdown),
                written = self.persister.finish(), if writing => {
                    self.on_persisted_shown(written?, status);
                }
                permit = consumer.reserve(), if undelivered => {
                    let Ok(permit) = permit else { return Ok(Bootstrapped::Shutdown) };
                    self.deliver(permit)?;
                }
                pending = Pending::take(&mut next, &mut fetched, last), if room => {
                    let Some(Pending { bundle, ahead }) = pending else { break };
                    let (object, batch) = match bundle {
                        Ok(bundle) => bundle,
                        Err(err) => {
                            self.archive_fault(err.to_string(), status);
                            break;
                        }
                    };
                    let before = self.tip_index();
                    let verified = match self.verify_commits(batch, ahead).await? {
                        Verified::Batch(batch) => batch,
                        Verified::Nothing => continue,
                        Verified::End(end) => {
                            self.bundle_refused(&object, end, status);
                            break;
                        }
                    };
                    next = self.verify_ahead(&verified, &mut fetched, last);
                    if let Some(end) = self.sequence_commits(verified).await? {
                        self.bundle_refused(&object, end, status);
                        break;
                    }
                    let taken = self.tip_index().saturating_sub(before);
                    self.metrics.archive.bootstrapped_commits.inc_by(taken);
                    self.status.bootstrapped_commit = self.tip_index();
                    self.status.local_highest_commit = self.persisted();
                    let _ = status.send(self.status.clone());
                }
            }
        }
        info!(
            archive = url,
            commit = self.tip_index(),
            "bootstrapped from the archive; following the upstreams"
        );
        Ok(Bootstrapped::Done)
    }

    /// The next bundle, if the fetcher has it ready, with its verification
    /// started after `verified`'s last commit: it runs while `verified` is
    /// sequenced and waits for the write before it. A bundle that starts an
    /// epoch is verified in its turn, after its hand-off.
    fn verify_ahead(
        &self,
        verified: &VerifiedBatch,
        fetched: &mut mpsc::Receiver<ArchiveResult<Fetched>>,
        last: CommitIndex,
    ) -> Option<Pending> {
        let bundle = fetched.try_recv().ok()?.map(|f| prepared(f, last));
        let ahead = match (&bundle, verified.sub_dags.last()) {
            (Ok((_, batch)), Some(tip))
                if batch.epoch_changes.is_empty()
                    && batch.commits.first().map(|c| c.commit_index)
                        == tip.sub_dag.index().checked_add(1) =>
            {
                Some(Ahead::start(
                    self.config.offload,
                    verified.committee.clone(),
                    self.config.block_limits,
                    Some(tip.sub_dag.commit.clone()),
                    batch.clone(),
                ))
            }
            _ => None,
        };
        Some(Pending { bundle, ahead })
    }

    /// A bundle's batch did not verify, or its session ended otherwise.
    fn bundle_refused(
        &mut self,
        object: &str,
        end: SessionEnd,
        status: &watch::Sender<ObserverStatus>,
    ) {
        if let SessionEnd::Faulty(err) = end {
            self.metrics.faults.with_label_values(&[err.name()]).inc();
            self.archive_fault(format!("{object}: {err}"), status);
        }
    }

    fn archive_fault(&mut self, fault: String, status: &watch::Sender<ObserverStatus>) {
        error!(cause = %fault, "the archive failed; the upstreams serve the rest");
        self.status.last_fault = Some(format!("archive: {fault}"));
        self.status.archive_error = Some(fault);
        let _ = status.send(self.status.clone());
    }
}

/// A bundle taken from the fetcher (its object's name and its batch), and
/// its verification if started early.
struct Pending {
    bundle: ArchiveResult<(String, CommitStreamResponse)>,
    ahead: Option<Ahead>,
}

impl Pending {
    /// The bundle taken early if there is one, else the fetcher's next;
    /// `None` once the fetcher is done.
    async fn take(
        next: &mut Option<Pending>,
        fetched: &mut mpsc::Receiver<ArchiveResult<Fetched>>,
        last: CommitIndex,
    ) -> Option<Pending> {
        if let Some(pending) = next.take() {
            return Some(pending);
        }
        let bundle = fetched.recv().await?.map(|f| prepared(f, last));
        Some(Pending {
            bundle,
            ahead: None,
        })
    }
}

/// A fetched bundle's object name and batch, which says the archive's last
/// commit as the highest (what the observer is behind by).
fn prepared(fetched: Fetched, last: CommitIndex) -> (String, CommitStreamResponse) {
    let mut batch = fetched.bundle.batch.unwrap_or_default();
    batch.highest_commit_index = last;
    (fetched.object, batch)
}
