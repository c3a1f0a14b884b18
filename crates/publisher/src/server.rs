//! The gRPC services and the publisher that runs them.

use crate::block_stream::BlockStream;
use crate::certifier::Certifier;
use crate::commit_stream::CommitStream;
use crate::config::PublisherConfig;
use crate::context::Context;
use crate::end_reason::EndReason;
use crate::error::{PublisherError, Result};
use crate::metrics::{self, PublisherMetrics};
use crate::security::{self, Tokens};
use crate::session::{self, ResponseStream};
use crate::source::ConsensusSource;
use dagstream_proto::v1::block_stream_service_server::{
    BlockStreamService, BlockStreamServiceServer,
};
use dagstream_proto::v1::chain_info_service_server::{ChainInfoService, ChainInfoServiceServer};
use dagstream_proto::v1::commit_stream_service_server::{
    CommitStreamService, CommitStreamServiceServer,
};
use dagstream_proto::v1::{
    BlockStreamRequest, BlockStreamResponse, ChainInfo, CommitStreamRequest, CommitStreamResponse,
    GetChainInfoRequest,
};
use dagstream_proto::MAX_MESSAGE_BYTES;
use prometheus::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, Instrument};

/// Largest request a subscriber may send: a Start carries one `u64` per
/// authority, so 1 MiB allows committees of over 100,000.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The validator side of both streams, serving from a [`ConsensusSource`].
///
/// Cheap to clone: clones share the streams, the certifier and the metrics.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Context>,
    /// The listener's TLS, read from the config's files at start.
    tls: Option<ServerTlsConfig>,
}

/// Owns the publisher's background tasks: the certifier, and the servers
/// started with [`PublisherHandle::spawn_server`]. [`PublisherHandle::stop`]
/// ends every open stream, stops the servers and waits for them.
pub struct PublisherHandle {
    publisher: Publisher,
    shutdown: watch::Sender<bool>,
    certifier_task: JoinHandle<()>,
    servers: Vec<JoinHandle<()>>,
}

impl Publisher {
    /// Validates the config, registers the metrics, finds the highest
    /// certified commit, and starts following the source's feed. Must be
    /// called inside a Tokio runtime.
    pub fn start(
        source: Arc<dyn ConsensusSource>,
        config: PublisherConfig,
        registry: &Registry,
    ) -> Result<PublisherHandle> {
        config.validate()?;
        // Read now, so that a missing or bad file stops the node at start.
        let tokens = config
            .auth_tokens_path
            .as_deref()
            .map(Tokens::load)
            .transpose()?;
        let tls = config.tls.as_ref().map(security::server_tls).transpose()?;
        let metrics = PublisherMetrics::new(registry).map_err(|err| PublisherError::Serve {
            reason: format!("cannot register metrics: {err}"),
        })?;
        let certifier = Arc::new(Certifier::new(source.clone(), &config));
        // Subscribe before the search, so that no vote falls in between.
        let feed = source.subscribe();
        certifier.initialize()?;
        let certifier_task = tokio::spawn({
            let certifier = certifier.clone();
            let gauge = metrics.highest_certified_commit.clone();
            let mut certified = certifier.watch();
            async move {
                let track = async move {
                    while certified.changed().await.is_ok() {
                        gauge.set(*certified.borrow() as i64);
                    }
                };
                tokio::join!(certifier.run(feed), track);
            }
        });
        metrics
            .highest_certified_commit
            .set(certifier.highest_certified() as i64);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Context::new(
            source,
            config,
            metrics,
            certifier,
            shutdown_rx,
            tokens,
        ));
        Ok(PublisherHandle {
            publisher: Publisher { shared, tls },
            shutdown,
            certifier_task,
            servers: Vec::new(),
        })
    }

    pub fn config(&self) -> &PublisherConfig {
        &self.shared.config
    }

    /// The highest commit certified by a quorum of votes.
    pub fn highest_certified(&self) -> u64 {
        self.shared.certifier.highest_certified()
    }

    /// Certificates held in the certifier's cache (bounded by
    /// `certificate_cache_len`).
    pub fn cached_certificates(&self) -> usize {
        self.shared.certifier.cached_certificates()
    }

    /// Streams open now, of both services: a subscriber that follows both
    /// streams counts twice.
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams()
    }

    /// The block stream service, with dagstream's message limits.
    pub fn block_service(&self) -> BlockStreamServiceServer<Publisher> {
        BlockStreamServiceServer::new(self.clone())
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// The commit stream service, with dagstream's message limits.
    pub fn commit_service(&self) -> CommitStreamServiceServer<Publisher> {
        CommitStreamServiceServer::new(self.clone())
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// The chain-identity service: which committee this publisher serves.
    pub fn chain_info_service(&self) -> ChainInfoServiceServer<Publisher> {
        ChainInfoServiceServer::new(self.clone())
    }

    /// Serves both streams on `listener` until `shutdown` resolves, with
    /// HTTP/2 keepalive. Streams still open end with `UNAVAILABLE` when the
    /// publisher stops, so stop it first (or use
    /// [`PublisherHandle::spawn_server`], which does both in order).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let local = listener.local_addr().ok();
        info!(address = ?local, "publisher serving");
        // No Nagle: a response that fits in a few segments goes out at
        // once. With Nagle, a tail segment waits for the ACK of the one
        // before, which the subscriber's kernel delays by up to 40 ms:
        // that was the p99 of live latency (`docs/benchmarks.md`).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        self.serve_incoming(incoming, shutdown).await
    }

    /// [`Publisher::serve`] over any stream of connections: a simulated
    /// network, an in-memory pipe, a socket type of the embedder's. TLS,
    /// when configured, applies to them too.
    pub async fn serve_incoming<I, IO, IE>(
        &self,
        incoming: I,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()>
    where
        I: futures::Stream<Item = Result<IO, IE>>,
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let config = &self.shared.config;
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &self.tls {
            builder = builder
                .tls_config(tls.clone())
                .map_err(|err| PublisherError::Serve {
                    reason: format!("TLS: {err}"),
                })?;
        }
        builder
            .http2_keepalive_interval(Some(Duration::from_millis(config.keepalive_interval_ms)))
            .http2_keepalive_timeout(Some(Duration::from_millis(config.keepalive_timeout_ms)))
            .add_service(self.block_service())
            .add_service(self.commit_service())
            .add_service(self.chain_info_service())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|err| PublisherError::Serve {
                reason: err.to_string(),
            })
    }

    fn spawn_stream<Req, Resp, F, Fut>(
        &self,
        service: &'static str,
        request: Request<Streaming<Req>>,
        run: F,
    ) -> Result<Response<ResponseStream<Resp>>, Status>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        F: FnOnce(Arc<Context>, Streaming<Req>, session::Outbox<Resp>, String) -> Fut,
        Fut: Future<Output = EndReason> + Send + 'static,
    {
        let shared = &self.shared;
        let token = shared.authenticate(&request)?;
        let permit = shared.admit(service)?;
        let subscriber = shared.subscriber_name(&request, token);
        let (outbox, stream) = session::channel(
            shared.config.stream_queue_len,
            shared.config.slow_subscriber_timeout(),
            shared.metrics.queue_to_send.with_label_values(&[service]),
        );
        let task = run(
            shared.clone(),
            request.into_inner(),
            outbox,
            subscriber.clone(),
        );
        let metrics = shared.metrics.clone();
        metrics.active_streams.with_label_values(&[service]).inc();
        let span = tracing::info_span!("stream", service, subscriber = %subscriber);
        tokio::spawn(
            async move {
                // Debug: probes and reconnects open and close streams all
                // the time; the metrics count them.
                debug!("stream opened");
                let reason = task.await;
                debug!(reason = reason.name(), "stream closed");
                metrics
                    .disconnects
                    .with_label_values(&[service, reason.name()])
                    .inc();
                metrics.active_streams.with_label_values(&[service]).dec();
                drop(permit);
            }
            .instrument(span),
        );
        Ok(Response::new(stream))
    }
}

impl PublisherHandle {
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Serves the streams on `listener` from a spawned task until
    /// [`PublisherHandle::stop`], and returns the address served. May be
    /// called once per listener.
    pub fn spawn_server(&mut self, listener: TcpListener) -> Result<SocketAddr> {
        let addr = listener.local_addr().map_err(|err| PublisherError::Serve {
            reason: format!("the listener has no local address: {err}"),
        })?;
        let publisher = self.publisher.clone();
        let mut shutdown = self.shutdown.subscribe();
        self.servers.push(tokio::spawn(async move {
            // Stop, or the handle dropped without stopping: both end the
            // server.
            let stopped = async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            if let Err(err) = publisher.serve(listener, stopped).await {
                tracing::error!(cause = %err, %addr, "publisher server failed");
            }
        }));
        Ok(addr)
    }

    /// Ends every open stream with `UNAVAILABLE`, stops the servers and
    /// waits for them, then stops following the source. The streams end
    /// first: a server's graceful shutdown waits for its open streams.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for server in self.servers {
            if let Err(err) = server.await {
                if err.is_panic() {
                    std::panic::resume_unwind(err.into_panic());
                }
            }
        }
        self.certifier_task.abort();
        let _ = self.certifier_task.await;
    }
}

#[tonic::async_trait]
impl BlockStreamService for Publisher {
    type StreamBlocksStream = ResponseStream<BlockStreamResponse>;

    async fn stream_blocks(
        &self,
        request: Request<Streaming<BlockStreamRequest>>,
    ) -> Result<Response<Self::StreamBlocksStream>, Status> {
        self.spawn_stream(metrics::BLOCKS, request, session::run::<BlockStream>)
    }
}

#[tonic::async_trait]
impl CommitStreamService for Publisher {
    type StreamCommitsStream = ResponseStream<CommitStreamResponse>;

    async fn stream_commits(
        &self,
        request: Request<Streaming<CommitStreamRequest>>,
    ) -> Result<Response<Self::StreamCommitsStream>, Status> {
        self.spawn_stream(metrics::COMMITS, request, session::run::<CommitStream>)
    }
}

#[tonic::async_trait]
impl ChainInfoService for Publisher {
    async fn get_chain_info(
        &self,
        request: Request<GetChainInfoRequest>,
    ) -> Result<Response<ChainInfo>, Status> {
        self.shared.authenticate(&request)?;
        let committee = self.shared.source.committee();
        Ok(Response::new(ChainInfo {
            committee_digest: bytes::Bytes::copy_from_slice(committee.digest().as_bytes()),
            epoch: self.shared.source.epochs().current().epoch(),
            highest_commit_index: Some(self.shared.source.highest_commit_index()),
            highest_certified_checkpoint: self.shared.source.highest_certified_checkpoint(),
        }))
    }
}
