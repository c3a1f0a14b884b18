//! [`Context`]: what one publisher's services and stream tasks share.

use crate::batching::CommandLimiter;
use crate::certifier::Certifier;
use crate::config::PublisherConfig;
use crate::metrics::{self, PublisherMetrics};
use crate::security::{fingerprint, Tokens};
use crate::source::ConsensusSource;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Status};

/// State shared by the services and every stream task of one publisher.
pub(crate) struct Context {
    pub(crate) source: Arc<dyn ConsensusSource>,
    pub(crate) config: PublisherConfig,
    pub(crate) metrics: PublisherMetrics,
    pub(crate) certifier: Arc<Certifier>,
    /// Turns true once, when the publisher stops.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The allowed subscriber tokens; `None`: no token is required.
    tokens: Option<Tokens>,
    /// One permit per open stream, `max_subscribers` per service.
    block_streams: Arc<Semaphore>,
    commit_streams: Arc<Semaphore>,
    next_stream_id: AtomicU64,
}

impl Context {
    pub(crate) fn new(
        source: Arc<dyn ConsensusSource>,
        config: PublisherConfig,
        metrics: PublisherMetrics,
        certifier: Arc<Certifier>,
        shutdown: watch::Receiver<bool>,
        tokens: Option<Tokens>,
    ) -> Self {
        let permits = || Arc::new(Semaphore::new(config.max_subscribers));
        Context {
            source,
            metrics,
            certifier,
            shutdown,
            tokens,
            block_streams: permits(),
            commit_streams: permits(),
            next_stream_id: AtomicU64::new(0),
            config,
        }
    }

    pub(crate) fn command_limiter(&self) -> CommandLimiter {
        CommandLimiter::new(
            self.config.max_commands_per_second,
            self.config.command_burst,
        )
    }

    /// A place for one more stream of `service`, held until the stream
    /// ends, or `RESOURCE_EXHAUSTED` when all are taken.
    pub(crate) fn admit(&self, service: &'static str) -> Result<OwnedSemaphorePermit, Status> {
        self.permits(service)
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.metrics
                    .disconnects
                    .with_label_values(&[service, "max_subscribers"])
                    .inc();
                Status::resource_exhausted(format!(
                    "this publisher already serves its maximum of {} {service} streams \
                 (max_subscribers); try another publisher or later",
                    self.config.max_subscribers
                ))
            })
    }

    /// Streams open now, of both services.
    pub(crate) fn open_streams(&self) -> usize {
        [&self.block_streams, &self.commit_streams]
            .iter()
            .map(|permits| {
                self.config
                    .max_subscribers
                    .saturating_sub(permits.available_permits())
            })
            .sum()
    }

    /// A unique name for the subscriber of a new stream, for logs and
    /// metric labels.
    /// Lets `request` through if it carries an allowed token (when tokens
    /// are required): the token's fingerprint, if it carried one. Nothing
    /// else of a request runs before this check.
    pub(crate) fn authenticate<T>(&self, request: &Request<T>) -> Result<Option<String>, Status> {
        self.tokens
            .as_ref()
            .map(|tokens| tokens.check(request.metadata()))
            .transpose()
    }

    /// Names a stream's subscriber for logs and metrics: its address and
    /// stream number, then the fingerprints of its token and of its client
    /// certificate, never the secrets.
    pub(crate) fn subscriber_name<T>(&self, request: &Request<T>, token: Option<String>) -> String {
        let id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let mut name = match request.remote_addr() {
            Some(addr) => format!("{addr}#{id}"),
            None => format!("local#{id}"),
        };
        if let Some(token) = token {
            name.push_str(&format!(" token:{token}"));
        }
        if let Some(leaf) = request
            .peer_certs()
            .and_then(|certs| certs.first().cloned())
        {
            name.push_str(&format!(" cert:{}", fingerprint(leaf.as_ref())));
        }
        name
    }

    fn permits(&self, service: &'static str) -> &Arc<Semaphore> {
        match service {
            metrics::BLOCKS => &self.block_streams,
            _ => &self.commit_streams,
        }
    }
}
