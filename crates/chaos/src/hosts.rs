//! The software of each simulated host: a validator (honest, or Byzantine)
//! and an observer with its consumer, over turmoil's network.
//!
//! Each runs the real node code: [`Producer`] and [`Publisher`] for a
//! validator, [`dagstream_observer::start_with_transport`] for an observer.
//! Only the clock (turmoil's virtual time) and the sockets (turmoil's TCP)
//! are simulated. A host's store lives outside its software, so a host
//! that crashes and restarts comes back on what it had written.

use crate::check::Shared;
use dagstream_observer::upstream::transport::Io;
use dagstream_observer::{start_with_transport, Connector, ObserverConfig, ObserverMetrics};
use dagstream_publisher::{Publisher, PublisherConfig, StoreSource};
use dagstream_sim::{CommitteeKeys, SimConfig};
use dagstream_store::{MemStore, Store};
use dagstream_types::{BlockLimits, Committee};
use dagstream_validator::Producer;
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The port every validator serves both streams on.
pub const PORT: u16 = 9000;

/// Simulated milliseconds since the simulation began: the validators'
/// clock (genesis is at 0) and the checks' timestamps.
pub fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64)
}

/// A turmoil connection that the publisher's server accepts.
pub struct SimStream(turmoil::net::TcpStream);

impl tonic::transport::server::Connected for SimStream {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The observer's connector: a turmoil connection to the URI's host and
/// port.
pub fn connector() -> Connector {
    Arc::new(|uri| {
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().unwrap_or(PORT);
            let stream = turmoil::net::TcpStream::connect(format!("{host}:{port}")).await?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    })
}

/// What a validator host runs.
#[derive(Clone)]
pub struct Validator {
    /// The committee whose keys sign the chain it makes.
    pub committee: Arc<Committee>,
    pub keys: CommitteeKeys,
    /// The committee it claims to serve, whose digest it reports: the
    /// genesis committee for an honest validator and a Byzantine one alike.
    pub served: Arc<Committee>,
    pub sim: SimConfig,
    pub publisher: PublisherConfig,
    /// How far ahead of the simulated time its clock runs: a Byzantine
    /// validator runs ahead, so that it claims the highest tip and draws
    /// every observer to it.
    pub ahead_ms: u64,
    pub store: Arc<MemStore>,
}

impl Validator {
    /// Continues the chain in its store, serves it on [`PORT`], and
    /// produces each round when it falls due, until the host crashes.
    pub async fn run(self) -> turmoil::Result {
        let store: Arc<dyn Store> = self.store.clone();
        let source = Arc::new(StoreSource::new(store, self.served.clone())?);
        let mut producer = Producer::with_source(
            self.committee,
            self.keys,
            self.sim,
            &BlockLimits::default(),
            source.clone(),
        )?;
        let registry = prometheus::Registry::new();
        let handle = Publisher::start(source, self.publisher, &registry)?;
        let publisher = handle.publisher().clone();
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| SimStream(stream));
            Some((accepted, listener))
        });
        tokio::task::spawn_local(async move {
            publisher
                .serve_incoming(Box::pin(incoming), std::future::pending())
                .await
        });
        loop {
            let now = now_ms() + self.ahead_ms;
            producer.step(now)?;
            let next = producer.simulator().next_round_time_ms();
            let wait = next.saturating_sub(now).max(1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// What an observer host runs: the observer and its consumer.
#[derive(Clone)]
pub struct Observer {
    pub index: usize,
    pub committee: Arc<Committee>,
    pub upstreams: Vec<String>,
    pub config: ObserverConfig,
    pub store: Arc<MemStore>,
    pub checker: Shared,
    /// Until when (simulated ms) the consumer reads nothing.
    pub stalled_until: Rc<Cell<u64>>,
    /// How many commits before its last one the consumer resumes after a
    /// restart: 0, but for a test of the checks.
    pub resume_behind: u64,
}

impl Observer {
    /// Starts the observer on its store, resuming after the last commit
    /// its consumer processed, and consumes: every commit and every status
    /// goes to the checker. Ends only with the host, or on the observer's
    /// own fatal error.
    pub async fn run(self) -> turmoil::Result {
        let processed = self.checker.borrow().outputs[self.index].last_index();
        let resume_after = processed.saturating_sub(self.resume_behind);
        let store: Arc<dyn Store> = self.store.clone();
        let (handle, mut commits) = start_with_transport(
            self.committee,
            store,
            self.upstreams,
            self.config,
            resume_after,
            ObserverMetrics::unregistered()?,
            dagstream_observer::Transport::Custom(connector()),
        )?;
        let mut status = handle.watch_status();
        loop {
            let stalled_until = self.stalled_until.get();
            let stalled = now_ms() < stalled_until;
            tokio::select! {
                biased;
                changed = status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let seen = status.borrow_and_update().clone();
                    self.checker.borrow_mut().status(now_ms(), self.index, seen);
                }
                _ = tokio::time::sleep(Duration::from_millis(stalled_until.saturating_sub(now_ms()))), if stalled => {}
                commit = commits.recv(), if !stalled => match commit {
                    Some(commit) => {
                        let reference = commit.sub_dag.reference();
                        self.checker.borrow_mut().delivered(now_ms(), self.index, reference);
                    }
                    None => break,
                },
            }
        }
        handle.join().await?;
        Err("the observer stopped on its own".into())
    }
}
