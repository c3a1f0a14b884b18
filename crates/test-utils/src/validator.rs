//! Validators on a loopback port: [`TestValidator`], which the test drives
//! round by round, and [`ClockedValidator`], which produces by a
//! [`TestClock`] as the real node does.

use crate::chain::TestChain;
use crate::client::{self, PATIENCE};
use crate::clock::{TestClock, Ticker};
use dagstream_publisher::{Publisher, PublisherConfig, PublisherHandle};
use dagstream_store::Store;
use dagstream_types::CommitRef;
use dagstream_validator::retention::ValidatorConfig;
use dagstream_validator::{Producer, ValidatorHandle};
use prometheus::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// How often a wait for a metric or for commits looks again: short next to
/// any test, long enough not to busy the cores the publisher needs.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free")
}

/// A publisher serving a [`TestChain`]'s source on a loopback port, while
/// the test produces rounds with `chain`.
pub struct TestValidator {
    pub chain: TestChain,
    publisher: PublisherHandle,
    registry: Registry,
    addr: SocketAddr,
}

impl TestValidator {
    /// Serves `chain`'s source with `config`, its metrics on a registry of
    /// its own.
    pub async fn start(chain: TestChain, config: PublisherConfig) -> Self {
        let registry = Registry::new();
        let mut publisher = Publisher::start(chain.source().clone(), config, &registry)
            .expect("the publisher starts");
        let addr = publisher
            .spawn_server(loopback().await)
            .expect("the publisher serves");
        TestValidator {
            chain,
            publisher,
            registry,
            addr,
        }
    }

    pub fn publisher(&self) -> &Publisher {
        self.publisher.publisher()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new connection to the publisher.
    pub async fn channel(&self) -> Channel {
        client::connect(&self.endpoint()).await
    }

    /// The value of the publisher's metric `name` with these labels: see
    /// [`metric`].
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.registry, name, labels)
    }

    /// Waits, without sleeping blindly, until the metric reaches `value`;
    /// panics after [`PATIENCE`].
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.metric(name, labels) < value {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}{labels:?} never reached {value}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the publisher has certified everything produced.
    pub async fn wait_certified(&self) {
        self.wait_metric(
            "dagstream_publisher_highest_certified_commit",
            &[],
            self.chain.certified() as f64,
        )
        .await;
    }

    /// Ends the streams and stops serving; returns the chain, which can go
    /// on.
    pub async fn stop(self) -> TestChain {
        self.publisher.stop().await;
        self.chain
    }
}

impl TestChain {
    /// Hands the chain to a validator that produces by `clock` (nothing
    /// more while the clock stands still) and serves with `config` on a
    /// loopback port.
    pub async fn start_clocked(
        self,
        clock: TestClock,
        config: PublisherConfig,
    ) -> ClockedValidator {
        self.start_clocked_with(clock, config, &ValidatorConfig::default())
            .await
    }

    /// [`start_clocked`](Self::start_clocked), with the validator's own
    /// settings (retention).
    pub async fn start_clocked_with(
        self,
        clock: TestClock,
        config: PublisherConfig,
        validator: &ValidatorConfig,
    ) -> ClockedValidator {
        let store = self.store().clone();
        let registry = Registry::new();
        let handle = dagstream_validator::start(
            self.into_producer(),
            clock.clock(),
            loopback().await,
            config,
            validator,
            &registry,
        )
        .expect("the validator starts");
        ClockedValidator {
            handle,
            store,
            clock,
            registry,
            ticker: None,
        }
    }
}

/// A validator as `dagstream_validator::start` runs it, on a
/// [`TestClock`].
pub struct ClockedValidator {
    pub handle: ValidatorHandle,
    pub store: Arc<dyn Store>,
    pub clock: TestClock,
    registry: Registry,
    ticker: Option<Ticker>,
}

impl ClockedValidator {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    /// A new connection to the validator.
    pub async fn channel(&self) -> Channel {
        client::connect(&self.endpoint()).await
    }

    /// The value of the validator's metric `name` with these labels: see
    /// [`metric`].
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.registry, name, labels)
    }

    /// Moves the clock by `step_ms` every `every` of real time until the
    /// validator stops.
    pub fn tick(&mut self, step_ms: u64, every: Duration) {
        self.ticker = Some(self.clock.tick(step_ms, every));
    }

    /// The refs of commits `1..=through` in the validator's store, once it
    /// holds them. An observer can derive a commit from the blocks before
    /// the validator has written the commit itself, so a test comparing
    /// what an observer received waits for the validator to catch up;
    /// failing the test after [`PATIENCE`].
    pub async fn commits(&self, through: u64) -> Vec<CommitRef> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self
            .store
            .last_commit_index()
            .expect("the store reads back")
            < through
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the validator never reached commit {through}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        self.store
            .scan_commits(1, through as usize)
            .expect("the store reads back")
            .iter()
            .map(|c| c.reference())
            .collect()
    }

    /// Stops the clock (if it ticks), serving and producing; returns the
    /// producer.
    pub async fn stop(self) -> Producer {
        drop(self.ticker);
        self.handle
            .stop()
            .await
            .expect("the validator ran without error")
    }
}

/// The sum of counter or gauge `name` over its series that carry these
/// labels on `registry` (for a histogram, its count of observations); 0 if
/// it has none.
pub fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for family in registry.gather() {
        if family.name() != name {
            continue;
        }
        for metric in family.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                metric
                    .get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if matches {
                sum += match family.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => metric.get_counter().get_value(),
                    prometheus::proto::MetricType::HISTOGRAM => {
                        metric.get_histogram().get_sample_count() as f64
                    }
                    _ => metric.get_gauge().get_value(),
                };
            }
        }
    }
    sum
}
