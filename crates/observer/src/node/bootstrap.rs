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

use super::{AbortOnDrop, Node, SessionEnd};
use crate::delivery::DeliveredSubDag;
use crate::status::ObserverStatus;
use crate::{ObserverError, Result};
use dagstream_archive::{ArchiveError, ArchiveReader};
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
        // queued, one on its way to the queue, and the one being verified.
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
                next = fetched.recv(), if room => {
                    let Some(fetched) = next else { break };
                    let fetched = match fetched {
                        Ok(fetched) => fetched,
                        Err(err) => {
                            self.archive_fault(err.to_string(), status);
                            break;
                        }
                    };
                    let mut batch = fetched.bundle.batch.unwrap_or_default();
                    batch.highest_commit_index = last;
                    let before = self.tip_index();
                    match self.on_commits(batch).await? {
                        None => {}
                        Some(SessionEnd::Faulty(err)) => {
                            self.metrics.faults.with_label_values(&[err.name()]).inc();
                            self.archive_fault(format!("{}: {err}", fetched.object), status);
                            break;
                        }
                        Some(_) => break,
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

    fn archive_fault(&mut self, fault: String, status: &watch::Sender<ObserverStatus>) {
        error!(cause = %fault, "the archive failed; the upstreams serve the rest");
        self.status.last_fault = Some(format!("archive: {fault}"));
        self.status.archive_error = Some(fault);
        let _ = status.send(self.status.clone());
    }
}
