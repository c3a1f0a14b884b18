//! [`Archiver`]: uploads what an observer has certified, in bundles, and
//! advances the archive's watermark strictly in order.
//!
//! # Order of writes
//! 1. `manifest.json`, created once (or checked: same chain, same format);
//! 2. `writer.json`, the lease, created once with this observer's writer id
//!    (kept in its store); a lease of another id stops the writer;
//! 3. bundles, up to [`ArchiveConfig::max_uploads`] at once, each retried
//!    until it is stored;
//! 4. a watermark after each bundle, in bundle order, only once every
//!    bundle before it is stored: so a failed upload can never leave a hole
//!    under the watermark.
//!
//! A bundle above the watermark may be written twice (a crash between its
//! upload and its watermark): readers never read past the watermark, and
//! the writer rewrites it from the same store. After a crash the writer
//! resumes at the watermark; an unreachable store at start delays it, and
//! never sends it back to the beginning.
//!
//! # Never in the node's way
//! The writer reads the node's store and nothing else of the node: when
//! the object store is down or slow, the archive lags (metrics and the
//! progress it reports say by how much) and catches up later.

use crate::bundle::{self, BundleBuilder, Next};
use crate::error::{ArchiveError, Result};
use crate::layout::{
    bundle_name, watermark_name, Manifest, Watermark, WriterLease, MANIFEST, WRITER,
};
use crate::metrics::ArchiveMetrics;
use crate::objects::Objects;
use crate::records::{json, read_json, read_manifest, read_watermark};
use bytes::Bytes;
use dagstream_publisher::{Certifier, ConsensusSource, PublisherConfig, StoreSource};
use dagstream_store::Store;
use futures::stream::{FuturesOrdered, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Meta key, in the observer's store, of its archive writer id.
pub const WRITER_ID_KEY: &str = "archive/writer";

/// How often the writer looks for newly certified checkpoints when it has
/// nothing to upload. At the tip a bundle is what was certified since the
/// last one: about five checkpoints, so the archive lags by a second or
/// two and holds one object a second.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Backoff after a failed request: from 100 ms, doubling, to 10 s.
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a stopping writer waits for the uploads under way. A local
/// write, once started, cannot be called back, and one that lands after
/// the writer has stopped would surprise the next reader; a stop must not
/// hang on an unreachable store either.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where and how to archive.
#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    /// `file:///path` or `s3://bucket/prefix`.
    pub url: String,
    /// Bundles uploaded at once. Each is held in memory until stored, so
    /// this bounds the writer's memory at about `max_uploads ×
    /// bundle_bytes`.
    pub max_uploads: usize,
    /// A bundle ends at the first checkpoint boundary past this many bytes
    /// of blocks.
    pub bundle_bytes: usize,
}

impl ArchiveConfig {
    pub const DEFAULT_MAX_UPLOADS: usize = 4;
    /// 16 MiB: large enough that a request's overhead is small against its
    /// transfer, small enough that four in flight stay under 100 MB.
    pub const DEFAULT_BUNDLE_BYTES: usize = 16 << 20;

    pub fn new(url: impl Into<String>) -> Self {
        ArchiveConfig {
            url: url.into(),
            max_uploads: Self::DEFAULT_MAX_UPLOADS,
            bundle_bytes: Self::DEFAULT_BUNDLE_BYTES,
        }
    }
}

/// What the writer has archived, for the node's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveProgress {
    /// The watermark: every checkpoint up to it is archived.
    pub archived_checkpoint: Option<u64>,
    pub archived_commit: u64,
    /// The last failure, until the next success.
    pub last_error: Option<String>,
}

/// This observer's archive writer id, made and stored at first use.
pub fn writer_id(store: &dyn Store) -> Result<String> {
    Ok(dagstream_store::kept_id(store, WRITER_ID_KEY)?)
}

/// Uploads an observer's certified history.
pub struct Archiver {
    objects: Objects,
    source: Arc<StoreSource>,
    certifier: Arc<Certifier>,
    config: ArchiveConfig,
    writer: String,
    metrics: ArchiveMetrics,
}

/// A bundle built, compressed, ready to upload.
struct Built {
    first_commit: u64,
    last_commit: u64,
    last_checkpoint: u64,
    epoch: u64,
    bytes: Bytes,
}

impl Archiver {
    /// An archiver of `source` (the observer's store) to `config.url`, as
    /// writer `writer` ([`writer_id`]).
    pub fn new(
        config: ArchiveConfig,
        source: Arc<StoreSource>,
        writer: String,
        metrics: ArchiveMetrics,
    ) -> Result<Self> {
        let objects = Objects::open(&config.url)?;
        let certifier = Arc::new(Certifier::new(
            source.clone() as Arc<dyn ConsensusSource>,
            &PublisherConfig::default(),
        ));
        Ok(Archiver {
            objects,
            source,
            certifier,
            config,
            writer,
            metrics,
        })
    }

    /// Archives until `shutdown`, reporting to `progress`. Returns an error
    /// only for what retrying cannot mend: another chain's archive,
    /// another writer, an archive ahead of this store.
    pub async fn run(
        self,
        progress: watch::Sender<ArchiveProgress>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let progress = Arc::new(progress);
        let result = self.archive(&progress, shutdown).await;
        if let Err(err) = &result {
            progress.send_modify(|p| p.last_error = Some(format!("stopped: {err}")));
        }
        result
    }

    async fn archive(
        &self,
        progress: &Arc<watch::Sender<ArchiveProgress>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let mut backoff = BACKOFF_INITIAL;
        let watermark = loop {
            match self.open().await {
                Ok(watermark) => break watermark,
                Err(err) if err.is_transient() => {
                    self.failed(progress, &err, "cannot open the archive; retrying");
                    if sleep_or_shutdown(&mut backoff, &mut shutdown).await {
                        return Ok(());
                    }
                }
                Err(err) => return Err(err),
            }
        };
        self.report(progress, watermark.as_ref());
        info!(
            archive = self.objects.url(),
            checkpoint = watermark.as_ref().map(|w| w.checkpoint),
            "archiving"
        );
        let mut last = watermark;
        let mut next = match &last {
            Some(w) => Next {
                checkpoint: w.checkpoint + 1,
                commit: w.commit + 1,
            },
            None => Next {
                checkpoint: 0,
                commit: 1,
            },
        };
        let mut bundles = last.as_ref().map_or(0, |w| w.bundles);
        let mut uploads = FuturesOrdered::new();
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while uploads.len() < self.config.max_uploads.max(1) {
                let Some(built) = self.build(next).await? else {
                    break;
                };
                bundles += 1;
                let watermark = Watermark {
                    checkpoint: built.last_checkpoint,
                    commit: built.last_commit,
                    epoch: built.epoch,
                    bundles,
                    writer: self.writer.clone(),
                };
                next = Next {
                    checkpoint: built.last_checkpoint + 1,
                    commit: built.last_commit + 1,
                };
                let name = bundle_name(built.first_commit);
                uploads.push_back(self.upload(
                    name,
                    built.bytes,
                    watermark,
                    progress.clone(),
                    shutdown.clone(),
                ));
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    // The uploads under way finish, and the watermark
                    // advances over them, within the grace period.
                    let finish = async {
                        while let Some(Some(watermark)) = uploads.next().await {
                            if !self.advance(&watermark, last.as_ref(), progress, &mut shutdown).await? {
                                break;
                            }
                            self.report(progress, Some(&watermark));
                            last = Some(watermark);
                        }
                        Ok(())
                    };
                    return tokio::time::timeout(SHUTDOWN_GRACE, finish).await.unwrap_or(Ok(()));
                }
                done = uploads.next(), if !uploads.is_empty() => {
                    let Some(Some(watermark)) = done else {
                        // Shutdown while uploading.
                        return Ok(());
                    };
                    if !self.advance(&watermark, last.as_ref(), progress, &mut shutdown).await? {
                        return Ok(());
                    }
                    self.report(progress, Some(&watermark));
                    last = Some(watermark);
                }
                _ = poll.tick() => {}
            }
        }
    }

    /// Checks or writes the manifest, takes or recognizes the lease, and
    /// reads the watermark.
    async fn open(&self) -> Result<Option<Watermark>> {
        let archive = self.objects.url();
        let chain = self.source.epochs().genesis().digest();
        let manifest = Manifest::new(chain);
        if !self.objects.create(MANIFEST, json(&manifest)).await? {
            read_manifest(&self.objects).await?.check(archive, chain)?;
        }
        let lease = WriterLease {
            writer: self.writer.clone(),
        };
        if !self.objects.create(WRITER, json(&lease)).await? {
            let holder: WriterLease = read_json(&self.objects, WRITER).await?;
            if holder.writer != self.writer {
                return Err(ArchiveError::OtherWriter {
                    archive: archive.into(),
                    holder: holder.writer,
                    ours: self.writer.clone(),
                });
            }
        }
        let watermark = read_watermark(&self.objects).await?;
        let local = self.source.highest_commit_index();
        if let Some(w) = watermark.as_ref().filter(|w| w.commit > local) {
            return Err(ArchiveError::AheadOfStore {
                archive: archive.into(),
                archived: w.commit,
                local,
            });
        }
        Ok(watermark)
    }

    /// The next bundle from `next`, read and compressed on the blocking
    /// pool; `None` if none can end yet.
    async fn build(&self, next: Next) -> Result<Option<Built>> {
        let Some(highest) = self.source.highest_certified_checkpoint() else {
            return Ok(None);
        };
        if highest < next.checkpoint {
            return Ok(None);
        }
        let (source, certifier) = (self.source.clone(), self.certifier.clone());
        let target_bytes = self.config.bundle_bytes;
        tokio::task::spawn_blocking(move || {
            let builder = BundleBuilder {
                source: &source,
                certifier: &certifier,
                target_bytes,
            };
            let Some(bundle) = builder.build(next, highest)? else {
                return Ok(None);
            };
            Ok(Some(Built {
                first_commit: bundle.first_commit,
                last_commit: bundle.last_commit,
                last_checkpoint: bundle.last_checkpoint,
                epoch: bundle.epoch,
                bytes: bundle::encode(&bundle),
            }))
        })
        .await
        .expect("building a bundle does not panic")
    }

    /// Uploads bundle `name` until it is stored (`Some(watermark)`) or
    /// shutdown (`None`).
    fn upload(
        &self,
        name: String,
        bytes: Bytes,
        watermark: Watermark,
        progress: Arc<watch::Sender<ArchiveProgress>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = Option<Watermark>> + 'static {
        let objects = self.objects.clone();
        let metrics = self.metrics.clone();
        async move {
            let mut backoff = BACKOFF_INITIAL;
            loop {
                match objects.put(&name, bytes.clone()).await {
                    Ok(()) => {
                        metrics.bundles_uploaded.inc();
                        metrics.bytes_uploaded.inc_by(bytes.len() as u64);
                        return Some(watermark);
                    }
                    Err(err) => {
                        metrics.upload_failures.inc();
                        warn!(cause = %err, "archive upload failed; retrying");
                        progress.send_modify(|p| p.last_error = Some(err.to_string()));
                        if sleep_or_shutdown(&mut backoff, &mut shutdown).await {
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Writes watermark `watermark` (after `previous`), retrying until it
    /// is stored; `false` on shutdown. A watermark of that name that is
    /// not this very one was written by another writer: the archive is not
    /// ours to continue.
    async fn advance(
        &self,
        watermark: &Watermark,
        previous: Option<&Watermark>,
        progress: &watch::Sender<ArchiveProgress>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool> {
        let name = watermark_name(watermark.checkpoint);
        let mut backoff = BACKOFF_INITIAL;
        loop {
            match self.objects.create(&name, json(watermark)).await {
                Ok(true) => break,
                // Ours: an earlier attempt was stored, its answer lost.
                Ok(false) if read_json::<Watermark>(&self.objects, &name).await? == *watermark => {
                    break
                }
                Ok(false) => {
                    let holder: WriterLease = read_json(&self.objects, WRITER).await?;
                    return Err(ArchiveError::OtherWriter {
                        archive: self.objects.url().into(),
                        holder: holder.writer,
                        ours: self.writer.clone(),
                    });
                }
                Err(err) => {
                    self.failed(
                        progress,
                        &err,
                        "cannot advance the archive's watermark; retrying",
                    );
                    if sleep_or_shutdown(&mut backoff, shutdown).await {
                        return Ok(false);
                    }
                }
            }
        }
        // The one before is no longer the highest: readers take the
        // highest, so a failed delete only leaves a spare behind.
        if let Some(previous) = previous {
            if let Err(err) = self
                .objects
                .delete(&watermark_name(previous.checkpoint))
                .await
            {
                warn!(cause = %err, "cannot delete an old watermark");
            }
        }
        Ok(true)
    }

    fn report(&self, progress: &watch::Sender<ArchiveProgress>, watermark: Option<&Watermark>) {
        if let Some(w) = watermark {
            self.metrics.archived_checkpoint.set(w.checkpoint as i64);
            self.metrics.archived_commit.set(w.commit as i64);
        }
        progress.send_replace(ArchiveProgress {
            archived_checkpoint: watermark.map(|w| w.checkpoint),
            archived_commit: watermark.map_or(0, |w| w.commit),
            last_error: None,
        });
    }

    fn failed(&self, progress: &watch::Sender<ArchiveProgress>, err: &ArchiveError, what: &str) {
        self.metrics.upload_failures.inc();
        warn!(cause = %err, "{what}");
        progress.send_modify(|p| p.last_error = Some(err.to_string()));
    }
}

/// Sleeps `backoff` (then doubles it, to [`BACKOFF_MAX`]); `true` if
/// shutdown came first.
async fn sleep_or_shutdown(backoff: &mut Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        biased;
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}
