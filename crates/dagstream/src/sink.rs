//! `dagstream observer --sink`: the commit sequence into NATS JetStream,
//! exactly once (`dagstream-sink`), beside the observer.

use crate::report;
use anyhow::{Context, Result};
use dagstream_observer::ObserverHandle;
use dagstream_sink::nats::JetStreamLog;
use dagstream_sink::{
    writer_id, Encoder, Record, Sink, SinkConfig, SinkMetrics, SinkProgress, FEED_CAPACITY,
};
use dagstream_types::{CommitIndex, Committee};
use prometheus::Registry;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The sink's flags, over the config file's `[sink]`.
#[derive(clap::Args, Debug, Default)]
pub struct SinkArgs {
    /// Publish every persisted commit, in order and exactly once, to NATS
    /// JetStream at this URL (nats://HOST:PORT, tls://HOST:PORT). See
    /// docs/sink.md.
    #[arg(long = "sink", value_name = "URL")]
    pub url: Option<String>,
    /// The subject to publish to (default dagstream.commits).
    #[arg(long = "sink-subject", value_name = "SUBJECT", requires = "url")]
    pub subject: Option<String>,
    /// The JetStream stream that keeps the subject, created if absent
    /// (default DAGSTREAM).
    #[arg(long = "sink-stream", value_name = "NAME", requires = "url")]
    pub stream: Option<String>,
    /// Accept a subject last written by another observer (this one
    /// replaces it).
    #[arg(long = "sink-takeover", requires = "url")]
    pub takeover: bool,
}

impl SinkArgs {
    pub fn apply(&self, config: &mut SinkConfig) -> Result<()> {
        if let Some(url) = &self.url {
            config.url = Some(url.clone());
        }
        if let Some(subject) = &self.subject {
            config.subject = subject.clone();
        }
        if let Some(stream) = &self.stream {
            config.stream = stream.clone();
        }
        config.takeover |= self.takeover;
        config.validate()?;
        Ok(())
    }
}

/// A running sink: its progress for `/status`, and its task.
pub struct RunningSink {
    pub progress: watch::Receiver<SinkProgress>,
    /// Commits as delivered, encoded: the sink appends them without
    /// reading the store while it keeps up.
    feed: mpsc::Sender<Record>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningSink {
    /// Starts the sink if `config` names a log. Its failures are logged
    /// and shown in `/status`; the observer goes on without it.
    pub async fn start(
        config: &SinkConfig,
        committee: &Committee,
        observer: &ObserverHandle,
        registry: &Registry,
    ) -> Result<Option<RunningSink>> {
        if config.url.is_none() {
            return Ok(None);
        }
        let store = observer.source().store().clone();
        let writer = writer_id(store.as_ref())?;
        let log = JetStreamLog::connect(config, committee.digest(), writer.clone()).await?;
        let metrics = SinkMetrics::new(registry).context("cannot register the sink's metrics")?;
        let encode: Encoder = Arc::new(|delivered| {
            serde_json::to_vec(&report::delivered_json(delivered)).expect("a JSON value serializes")
        });
        let (feed, fed) = mpsc::channel(FEED_CAPACITY);
        let sink = Sink::new(log, store, encode, writer, config, metrics).fed_by(fed);
        let (progress_tx, progress) = watch::channel(SinkProgress::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let status = observer.watch_status();
        let task = tokio::spawn(async move {
            if let Err(err) = sink.run(status, progress_tx, shutdown_rx).await {
                tracing::error!(cause = %err, "the sink stopped; the observer goes on without it");
            }
        });
        tracing::info!(url = config.url.as_deref(), subject = %config.subject, "publishing commits to NATS JetStream");
        Ok(Some(RunningSink {
            progress,
            feed,
            shutdown,
            task,
        }))
    }

    /// Hands the sink commit `index`, delivered, as `--output` encodes it.
    /// Never waits: a sink that lags reads what it misses from the store.
    pub fn offer(&self, index: CommitIndex, line: Vec<u8>) {
        let _ = self.feed.try_send(Record {
            index,
            payload: line.into(),
        });
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
