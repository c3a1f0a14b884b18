//! A validator on a loopback port, driven round by round by the test, and
//! client helpers.
#![allow(dead_code)]

use dagstream_proto::v1::block_stream_service_client::BlockStreamServiceClient;
use dagstream_proto::v1::commit_stream_service_client::CommitStreamServiceClient;
use dagstream_proto::v1::{
    block_stream_request, commit_stream_request, BlockStreamRequest, BlockStreamResponse,
    CommitStreamRequest, CommitStreamResponse, StartBlockStream, StartCommitStream,
    StopBlockStream, StopCommitStream,
};
use dagstream_publisher::{Publisher, PublisherConfig, PublisherHandle, StoreSource};
use dagstream_sim::{generate, GenesisParams, SimConfig, Simulator};
use dagstream_store::{MemStore, Store};
use dagstream_types::{BlockLimits, CommitRef, Committee, TrustedCommit, VerifiedBlock};
use prometheus::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// How long a test waits for something that must happen. Generous: tests
/// run on loaded 2-core machines; reaching it means a bug, not slowness.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A config with short heartbeats, so that tests see them quickly.
pub fn test_config() -> PublisherConfig {
    PublisherConfig {
        heartbeat_interval_ms: 50,
        ..PublisherConfig::default()
    }
}

pub struct Validator {
    pub sim: Simulator,
    pub store: Arc<dyn Store>,
    pub source: Arc<StoreSource>,
    pub handle: Option<PublisherHandle>,
    pub registry: Registry,
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    /// Every block produced, in production order.
    pub blocks: Vec<VerifiedBlock>,
    /// Every commit produced, in order.
    pub commits: Vec<TrustedCommit>,
    /// The highest commit voted for by a round produced so far: every block
    /// of round `r + 1` votes for the commits decided after round `r`.
    pub certified: u64,
}

impl Validator {
    /// A 4-authority committee with `history` rounds produced before the
    /// publisher starts.
    pub async fn start(history: usize, config: PublisherConfig) -> Validator {
        Self::start_with(4, SimConfig::default(), history, config).await
    }

    pub async fn start_with(
        authorities: usize,
        sim_config: SimConfig,
        history: usize,
        config: PublisherConfig,
    ) -> Validator {
        Self::start_on(
            Arc::new(MemStore::new()),
            authorities,
            sim_config,
            history,
            config,
        )
        .await
    }

    pub async fn start_on(
        store: Arc<dyn Store>,
        authorities: usize,
        sim_config: SimConfig,
        history: usize,
        config: PublisherConfig,
    ) -> Validator {
        let (genesis, keys) = generate(&GenesisParams {
            authorities,
            round_interval_ms: 100,
            genesis_time_ms: 0,
            gc_depth_rounds: 50,
            seed: 5,
        });
        let committee = Arc::new(Committee::new(genesis).unwrap());
        let sim =
            Simulator::new(committee.clone(), keys, sim_config, &BlockLimits::default()).unwrap();
        let mut validator = Validator {
            sim,
            source: Arc::new(StoreSource::new(store.clone(), committee).unwrap()),
            store,
            handle: None,
            registry: Registry::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
            shutdown: None,
            server: None,
            blocks: Vec::new(),
            commits: Vec::new(),
            certified: 0,
        };
        validator.produce(history);
        // The publisher of a restarted node: its source starts over the store.
        validator.source = Arc::new(
            StoreSource::new(validator.store.clone(), validator.sim.committee().clone()).unwrap(),
        );
        let handle =
            Publisher::start(validator.source.clone(), config, &validator.registry).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        validator.addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let publisher = handle.publisher().clone();
        validator.server = Some(tokio::spawn(async move {
            publisher
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        }));
        validator.handle = Some(handle);
        validator.shutdown = Some(tx);
        validator
    }

    /// Produces rounds: each is written to the store, then published.
    pub fn produce(&mut self, rounds: usize) {
        for _ in 0..rounds {
            let voted = self.commits.last().map_or(0, |c| c.index());
            let output = self.sim.produce_round().unwrap();
            self.certified = voted;
            self.store.write(self.sim.batch_for(&output)).unwrap();
            let commits: Vec<TrustedCommit> =
                output.commits.iter().map(|c| c.commit.clone()).collect();
            self.source.publish(&output.blocks, &commits);
            self.blocks.extend(output.blocks);
            self.commits.extend(commits);
        }
    }

    pub fn committee(&self) -> Arc<Committee> {
        self.sim.committee().clone()
    }

    pub fn commit_refs(&self) -> Vec<CommitRef> {
        self.commits.iter().map(|c| c.reference()).collect()
    }

    /// Waits until the publisher has certified everything produced.
    pub async fn wait_certified(&self) {
        self.wait_metric(
            "dagstream_publisher_highest_certified_commit",
            &[],
            self.certified as f64,
        )
        .await;
    }

    pub fn highest_certified(&self) -> u64 {
        self.handle
            .as_ref()
            .unwrap()
            .publisher()
            .highest_certified()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// The value of a counter or gauge with these labels, 0 if absent.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        for family in self.registry.gather() {
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
                    return match family.get_field_type() {
                        prometheus::proto::MetricType::COUNTER => metric.get_counter().get_value(),
                        _ => metric.get_gauge().get_value(),
                    };
                }
            }
        }
        0.0
    }

    /// Waits, without sleeping blindly, until the metric reaches `value`.
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.metric(name, labels) < value {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}{labels:?} never reached {value}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop().await;
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

/// Waits for `future`, failing the test after [`PATIENCE`].
pub async fn patiently<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// One open block stream: send commands, receive responses.
pub struct BlockStream {
    pub commands: mpsc::Sender<BlockStreamRequest>,
    pub responses: Streaming<BlockStreamResponse>,
}

impl BlockStream {
    pub async fn open(channel: Channel) -> Result<BlockStream, tonic::Status> {
        let (commands, rx) = mpsc::channel(16);
        let responses = BlockStreamServiceClient::new(channel)
            .max_decoding_message_size(dagstream_proto::MAX_MESSAGE_BYTES)
            .stream_blocks(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(BlockStream {
            commands,
            responses,
        })
    }

    pub async fn start(&self, highest_round_per_authority: Vec<u64>, preferred_batch_size: u32) {
        let command = block_stream_request::Command::Start(StartBlockStream {
            highest_round_per_authority,
            preferred_batch_size,
        });
        self.commands
            .send(BlockStreamRequest {
                command: Some(command),
            })
            .await
            .unwrap();
    }

    pub async fn stop(&self) {
        let command = block_stream_request::Command::Stop(StopBlockStream {});
        self.commands
            .send(BlockStreamRequest {
                command: Some(command),
            })
            .await
            .unwrap();
    }

    pub async fn next(&mut self) -> Result<BlockStreamResponse, tonic::Status> {
        patiently("a block response", self.responses.message())
            .await
            .map(|r| r.expect("stream ended"))
    }
}

/// One open commit stream.
pub struct CommitStream {
    pub commands: mpsc::Sender<CommitStreamRequest>,
    pub responses: Streaming<CommitStreamResponse>,
}

impl CommitStream {
    pub async fn open(channel: Channel) -> Result<CommitStream, tonic::Status> {
        let (commands, rx) = mpsc::channel(16);
        let responses = CommitStreamServiceClient::new(channel)
            .max_decoding_message_size(dagstream_proto::MAX_MESSAGE_BYTES)
            .stream_commits(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(CommitStream {
            commands,
            responses,
        })
    }

    pub async fn start(&self, last_commit_index: u64, preferred_batch_size: u32) {
        let command = commit_stream_request::Command::Start(StartCommitStream {
            last_commit_index,
            preferred_batch_size,
        });
        self.commands
            .send(CommitStreamRequest {
                command: Some(command),
            })
            .await
            .unwrap();
    }

    pub async fn stop(&self) {
        let command = commit_stream_request::Command::Stop(StopCommitStream {});
        self.commands
            .send(CommitStreamRequest {
                command: Some(command),
            })
            .await
            .unwrap();
    }

    pub async fn next(&mut self) -> Result<CommitStreamResponse, tonic::Status> {
        patiently("a commit response", self.responses.message())
            .await
            .map(|r| r.expect("stream ended"))
    }
}
