//! [`start`] an observer, and its [`ObserverHandle`].

use crate::config::ObserverConfig;
use crate::delivery::DeliveredSubDag;
use crate::metrics::ObserverMetrics;
use crate::node::Node;
use crate::status::ObserverStatus;
use crate::upstream::Transport;
use crate::{ObserverError, Result};
use dagstream_archive::{writer_id, ArchiveConfig, ArchiveProgress, Archiver};
use dagstream_publisher::StoreSource;
use dagstream_store::Store;
use dagstream_types::{CommitIndex, Committee, VerifiedBlock};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::error;

/// A running observer.
pub struct ObserverHandle {
    status: watch::Receiver<ObserverStatus>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
    /// The archive writer, with `--archive`.
    archiver: Option<JoinHandle<()>>,
    source: Arc<StoreSource>,
    verified: broadcast::Sender<VerifiedBlock>,
}

/// Verified blocks buffered for [`ObserverHandle::subscribe_verified`]:
/// ten rounds of a 100-authority committee. A receiver further behind
/// lags and loses the oldest, so a slow one never holds the observer up
/// nor costs more than this.
const VERIFIED_FEED_LEN: usize = 1_024;

impl ObserverHandle {
    pub fn status(&self) -> ObserverStatus {
        self.status.borrow().clone()
    }

    pub fn watch_status(&self) -> watch::Receiver<ObserverStatus> {
        self.status.clone()
    }

    /// What the observer persisted, as a publisher source: serve it with
    /// [`dagstream_publisher::Publisher`] to relay to other observers.
    pub fn source(&self) -> Arc<StoreSource> {
        self.source.clone()
    }

    /// Every block verified from the block stream from now on, as soon as
    /// its signature and structure are checked: before it is committed or
    /// persisted, for consumers that want to see blocks early (a mempool
    /// view, a latency probe). Commits come only through the consumer
    /// channel. A receiver more than 1,024 blocks behind gets `Lagged` and
    /// loses the oldest.
    pub fn subscribe_verified(&self) -> broadcast::Receiver<VerifiedBlock> {
        self.verified.subscribe()
    }

    /// Stops the observer and waits for it. Everything delivered to the
    /// consumer is persisted.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let result = self
            .task
            .await
            .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()));
        // The archive writer finishes the uploads under way (for a bounded
        // time), so that nothing lands in the archive after the stop.
        if let Some(archiver) = self.archiver {
            archiver
                .await
                .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()));
        }
        result
    }

    /// Waits for the observer to end on its own (a fatal error).
    pub async fn join(self) -> Result<()> {
        self.task
            .await
            .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))
    }
}

/// Starts an observer over `store`, following `upstreams` (gRPC endpoints,
/// `http://host:port`).
///
/// The consumer contract: the returned receiver yields every commit after
/// `resume_after`, in order, each once, and only after it is persisted,
/// each with the number of the checkpoint that holds it. A
/// consumer that persists the index of each commit it has processed and
/// passes it as `resume_after` after a restart sees every commit exactly
/// once across restarts. The receiver has backpressure: a consumer that
/// does not read slows the observer down; nothing is dropped.
pub fn start(
    committee: Arc<Committee>,
    store: Arc<dyn Store>,
    upstreams: Vec<String>,
    config: ObserverConfig,
    resume_after: CommitIndex,
) -> Result<(ObserverHandle, mpsc::Receiver<DeliveredSubDag>)> {
    let metrics = ObserverMetrics::unregistered().map_err(|err| ObserverError::InvalidConfig {
        field: "metrics",
        reason: err.to_string(),
    })?;
    start_with_metrics(committee, store, upstreams, config, resume_after, metrics)
}

/// [`start`], exporting [`ObserverMetrics`] (made with
/// [`ObserverMetrics::new`] on the node's registry).
pub fn start_with_metrics(
    committee: Arc<Committee>,
    store: Arc<dyn Store>,
    upstreams: Vec<String>,
    config: ObserverConfig,
    resume_after: CommitIndex,
    metrics: ObserverMetrics,
) -> Result<(ObserverHandle, mpsc::Receiver<DeliveredSubDag>)> {
    start_with_transport(
        committee,
        store,
        upstreams,
        config,
        resume_after,
        metrics,
        Transport::Tcp,
    )
}

/// [`start_with_metrics`], reaching the upstreams over `transport`: a
/// simulated network, an in-memory pipe, or the embedder's own sockets.
pub fn start_with_transport(
    committee: Arc<Committee>,
    store: Arc<dyn Store>,
    upstreams: Vec<String>,
    config: ObserverConfig,
    resume_after: CommitIndex,
    metrics: ObserverMetrics,
    transport: Transport,
) -> Result<(ObserverHandle, mpsc::Receiver<DeliveredSubDag>)> {
    config.validate()?;
    if upstreams.is_empty() {
        return Err(ObserverError::InvalidConfig {
            field: "upstreams",
            reason: "no upstream given".into(),
        });
    }
    let source = Arc::new(StoreSource::new(store.clone(), committee.clone())?);
    let config_archive = config.archive.clone();
    let archive_metrics = metrics.archive.clone();
    let (verified, _) = broadcast::channel(VERIFIED_FEED_LEN);
    let mut node = Node::new(
        store,
        source.clone(),
        config,
        resume_after,
        metrics,
        verified.clone(),
    )?;
    node.use_transport(transport);
    let (status_tx, status) = watch::channel(ObserverStatus::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut archiver_task = None;
    if let Some(url) = &config_archive.url {
        let config = ArchiveConfig {
            url: url.clone(),
            max_uploads: config_archive.max_uploads,
            bundle_bytes: config_archive.bundle_bytes,
        };
        let writer = writer_id(source.store().as_ref())?;
        let archiver = Archiver::new(config, source.clone(), writer, archive_metrics)?;
        let (progress_tx, progress) = watch::channel(ArchiveProgress::default());
        node.watch_archive(progress);
        let shutdown = shutdown_rx.clone();
        archiver_task = Some(tokio::spawn(async move {
            // The observer goes on without its archive: the status and
            // the log say why it stopped.
            if let Err(err) = archiver.run(progress_tx, shutdown).await {
                error!(cause = %err, "the archive writer stopped");
            }
        }));
    }
    // The observer buffers up to `output_queue_len` itself; the channel
    // only hands commits over.
    let (consumer, commits) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let result = node.run(upstreams, consumer, status_tx, shutdown_rx).await;
        if let Err(err) = &result {
            error!(cause = %err, "observer stopped");
        }
        result
    });
    Ok((
        ObserverHandle {
            status,
            shutdown,
            task,
            archiver: archiver_task,
            source,
            verified,
        },
        commits,
    ))
}
