//! The dagstream runs: one validator producing on the system clock from
//! genesis, into a segment store in a temporary directory, as `dagstream
//! validator` does, and N subscribers in the same process.
//!
//! The validator's publisher runs on a runtime of its own, whose threads
//! are named [`VALIDATOR_THREADS`], and its producer (signing, the commit
//! rule, the durable writes) on its own thread
//! ([`dagstream_validator::PRODUCER_THREAD`]), so that the publisher's CPU
//! time is told apart from the producer's and from the subscribers', which
//! run on another runtime ([`SUBSCRIBER_THREADS`]). Publish times are taken from the validator's
//! feed: each block carries the instant its source accepted it, after its
//! durable write. Arrival times are taken when a response is read off the
//! stream (receive-only clients), or when an observer hands the verified
//! block to its feed.

use crate::cpu::thread_cpu_seconds;
use crate::latency::{block_key, round_of, Arrivals, Key, Percentiles, Report};
use crate::{BenchError, Result};
use dagstream_observer::ObserverConfig;
use dagstream_proto::v1::block_stream_service_client::BlockStreamServiceClient;
use dagstream_proto::v1::{block_stream_request, BlockStreamRequest, StartBlockStream};
use dagstream_publisher::{ConsensusSource, PublisherConfig};
use dagstream_sim::{generate, GenesisParams, Profile};
use dagstream_store::{MemStore, SegmentStore, Store};
use dagstream_types::{unix_time_ms, BlockLimits, Committee, DEFAULT_GC_DEPTH_ROUNDS};
use dagstream_validator::retention::ValidatorConfig;
use dagstream_validator::{system_clock, Producer, PRODUCER_THREAD};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};

/// Thread name prefix of the validator's runtime.
pub const VALIDATOR_THREADS: &str = "bench-validator";
/// Thread name prefix of the subscribers' runtime.
pub const SUBSCRIBER_THREADS: &str = "bench-subscrib";
/// Worker threads of each runtime: the machine's cores, as a node would.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
/// Longest wait after the window for the blocks published in it to arrive:
/// a subscriber that has not got them by then counts as incomplete.
const MAX_GRACE: Duration = Duration::from_secs(30);
/// Blocks are at most this far into their `SignedBlock` bytes: epoch (u64),
/// round (u64), author (u32), in BCS.
const REF_PREFIX: usize = 20;

/// What the subscribers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A bare block stream client: reads each response and notes when its
    /// blocks arrived. What the publisher's fan-out alone costs.
    Receiver,
    /// A full observer (verify, derive commits, sequence, persist in
    /// memory), noting when each block is verified.
    Observer,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Receiver => "receive-only",
            Kind::Observer => "full observer",
        }
    }
}

/// How long each run lasts, and at which profile.
#[derive(Clone, Copy, Debug)]
pub struct LiveConfig {
    pub profile: Profile,
    /// Before the window: connections open, observers catch up.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
}

/// What one run measured over its window.
#[derive(Debug)]
pub struct LiveRun {
    pub kind: Kind,
    pub subscribers: usize,
    pub report: Report,
    /// CPU seconds per wall second of the validator's runtime: the
    /// publisher (streams, gRPC, the certifier).
    pub publisher_cpu: f64,
    /// The same for the producer thread: signing, the commit rule, the
    /// durable writes.
    pub producer_cpu: f64,
    /// The same for the subscribers' runtime.
    pub subscriber_cpu: f64,
    /// Block bytes the publisher sent per second, all streams together.
    pub bytes_per_second: f64,
    /// Blocks published per second.
    pub blocks_per_second: f64,
    /// The publisher's own block stream histograms over the whole run (in
    /// ms, each the upper bound of the bucket that holds the quantile):
    /// p50 and p99 of accepted → queued, and of queued → taken for the
    /// socket.
    pub accept_to_queue_ms: (f64, f64),
    pub queue_to_send_ms: (f64, f64),
    /// Per block published in the window, from its round's scheduled time
    /// (the committee's round time, by the wall clock) to its acceptance,
    /// in ns: the validator's own delay before the block is published.
    pub scheduled_to_accepted: Percentiles,
    /// Per block published in the window and per subscriber that got it,
    /// from its round's scheduled time to its arrival, in ns: what a user
    /// of the subscriber sees end to end.
    pub scheduled_to_received: Percentiles,
}

fn runtime(name: &'static str) -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .thread_name(name)
        // A thread that exits takes its CPU time with it: blocking-pool
        // threads stay for the run.
        .thread_keep_alive(Duration::from_secs(3_600))
        .enable_all()
        .build()
        .map_err(|err| BenchError::Start {
            what: "a runtime",
            reason: err.to_string(),
        })
}

fn nanos(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_nanos() as u64
}

/// Runs a validator with `subscribers` of `kind` and measures the window.
pub fn run(config: &LiveConfig, kind: Kind, subscribers: usize) -> Result<LiveRun> {
    let validator_rt = runtime(VALIDATOR_THREADS)?;
    let subscriber_rt = runtime(SUBSCRIBER_THREADS)?;
    let epoch = Instant::now();
    let dir = tempfile::tempdir().map_err(|err| BenchError::Start {
        what: "a temporary directory",
        reason: err.to_string(),
    })?;
    let registry = prometheus::Registry::new();
    let (committee, validator) = validator_rt.block_on(start_validator(
        config.profile,
        &dir.path().join("store"),
        &registry,
    ))?;
    let endpoint = format!("http://{}", validator.addr);
    let source = validator.source.clone();

    // Publish times: every block of the feed, from now on. The wall clock
    // is read once, with the monotonic epoch, to place each round's
    // scheduled time on the monotonic clock.
    let epoch_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let published: Arc<Mutex<Vec<(Key, u64)>>> = Arc::default();
    let (stop, stopped) = watch::channel(false);
    let recorder = subscriber_rt.spawn({
        let mut feed = source.subscribe();
        let published = published.clone();
        let mut stopped = stopped.clone();
        async move {
            loop {
                tokio::select! {
                    accepted = feed.recv() => match accepted {
                        Ok(accepted) => {
                            let block = &accepted.block;
                            let key = block_key(block.round(), block.author());
                            let at = nanos(epoch, accepted.at);
                            published.lock().expect("not poisoned").push((key, at));
                        }
                        // Lost publish times only shrink the sample.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    },
                    _ = stopped.changed() => return,
                }
            }
        }
    });

    // The highest round each subscriber has seen.
    let seen: Vec<Arc<AtomicU64>> = (0..subscribers).map(|_| Arc::default()).collect();
    let subscribers_running = subscriber_rt.block_on(async {
        let from_round = source.highest_round();
        let mut running = Vec::with_capacity(subscribers);
        for seen in &seen {
            let tracker = Tracker {
                epoch,
                stopped: stopped.clone(),
                seen: seen.clone(),
            };
            running.push(match kind {
                Kind::Receiver => {
                    Subscriber::receiver(&endpoint, committee.size(), from_round, tracker).await?
                }
                Kind::Observer => Subscriber::observer(&endpoint, &committee, tracker)?,
            });
        }
        Ok::<_, BenchError>(running)
    })?;

    std::thread::sleep(config.warmup);
    let bytes = || {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "dagstream_publisher_bytes_sent_total")
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value())
            .sum::<f64>()
    };
    let sample = || {
        (
            Instant::now(),
            thread_cpu_seconds(VALIDATOR_THREADS),
            thread_cpu_seconds(SUBSCRIBER_THREADS),
            bytes(),
            thread_cpu_seconds(PRODUCER_THREAD),
        )
    };
    let start = sample();
    std::thread::sleep(config.window);
    let end = sample();
    // Everything accepted in the window is on each stream ahead of the
    // first block accepted after it, whose round is past the window's.
    let last_round = source.highest_round();
    let waiting = Instant::now();
    while seen.iter().any(|s| s.load(Ordering::Relaxed) <= last_round)
        && waiting.elapsed() < MAX_GRACE
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = stop.send(true);
    let arrivals: Vec<Arrivals> = subscriber_rt.block_on(async {
        let mut all = Vec::with_capacity(subscribers_running.len());
        for subscriber in subscribers_running {
            all.push(subscriber.finish().await);
        }
        let _ = recorder.await;
        all
    });
    validator_rt
        .block_on(validator.stop())
        .map_err(|err| BenchError::Run {
            what: "the validator",
            reason: err.to_string(),
        })?;
    let seconds = (end.0 - start.0).as_secs_f64();
    let window = (nanos(epoch, start.0), nanos(epoch, end.0));
    let histogram = |name: &str| {
        let quantiles = histogram_quantiles(&registry, name, &[0.5, 0.99]);
        (quantiles[0] * 1e3, quantiles[1] * 1e3)
    };
    let accept_to_queue_ms = histogram("dagstream_publisher_accept_to_queue_seconds");
    let queue_to_send_ms = histogram("dagstream_publisher_queue_to_send_seconds");
    let published = std::mem::take(&mut *published.lock().expect("not poisoned"));
    // From a block's scheduled time to `at` (monotonic ns).
    let since_scheduled = |key: Key, at: u64| {
        let scheduled_ns = committee.round_time_ms(round_of(key)) * 1_000_000;
        (epoch_unix_ns + at).saturating_sub(scheduled_ns)
    };
    let in_window: HashSet<Key> = published
        .iter()
        .filter(|(_, at)| (window.0..window.1).contains(at))
        .map(|(key, _)| *key)
        .collect();
    let mut to_accepted: Vec<u64> = published
        .iter()
        .filter(|(key, _)| in_window.contains(key))
        .map(|&(key, at)| since_scheduled(key, at))
        .collect();
    let mut to_received: Vec<u64> = arrivals
        .iter()
        .flatten()
        .filter(|(key, _)| in_window.contains(key))
        .map(|&(key, at)| since_scheduled(key, at))
        .collect();
    let report = Report::new(&published, &arrivals, window);
    Ok(LiveRun {
        kind,
        subscribers,
        blocks_per_second: report.published as f64 / seconds,
        report,
        publisher_cpu: (end.1 - start.1) / seconds,
        producer_cpu: (end.4 - start.4) / seconds,
        subscriber_cpu: (end.2 - start.2) / seconds,
        bytes_per_second: (end.3 - start.3) / seconds,
        accept_to_queue_ms,
        queue_to_send_ms,
        scheduled_to_accepted: Percentiles::of(&mut to_accepted),
        scheduled_to_received: Percentiles::of(&mut to_received),
    })
}

/// Quantiles of the block stream's series of histogram `name` on
/// `registry`, in its unit: the upper bound of the bucket holding each
/// (infinity past the last bucket, 0 without observations).
fn histogram_quantiles(registry: &prometheus::Registry, name: &str, quantiles: &[f64]) -> Vec<f64> {
    let families = registry.gather();
    let histogram = families
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .find(|m| m.get_label().iter().any(|l| l.value() == "blocks"))
        .map(|m| m.get_histogram().clone());
    let Some(histogram) = histogram else {
        return vec![0.0; quantiles.len()];
    };
    let count = histogram.get_sample_count();
    quantiles
        .iter()
        .map(|q| {
            if count == 0 {
                return 0.0;
            }
            let rank = (q * count as f64).ceil() as u64;
            histogram
                .get_bucket()
                .iter()
                .find(|b| b.cumulative_count() >= rank)
                .map_or(f64::INFINITY, |b| b.upper_bound())
        })
        .collect()
}

/// A committee at `profile` whose genesis is now, and its producer over
/// `store`.
pub fn producer(profile: Profile, store: Arc<dyn Store>) -> Result<(Arc<Committee>, Producer)> {
    let fail = |what: &'static str| {
        move |err: &dyn std::fmt::Display| BenchError::Start {
            what,
            reason: err.to_string(),
        }
    };
    let (genesis, keys) = generate(&GenesisParams {
        authorities: profile.authorities(),
        round_interval_ms: profile.round_interval_ms(),
        genesis_time_ms: unix_time_ms(),
        gc_depth_rounds: DEFAULT_GC_DEPTH_ROUNDS,
        seed: 0,
    });
    let committee = Arc::new(Committee::new(genesis).map_err(|e| fail("the committee")(&e))?);
    let producer = Producer::new(
        committee.clone(),
        keys,
        profile.sim_config(0),
        &BlockLimits::default(),
        store,
    )
    .map_err(|e| fail("the producer")(&e))?;
    Ok((committee, producer))
}

/// A validator at `profile`, from genesis now, serving on a loopback port.
async fn start_validator(
    profile: Profile,
    store_dir: &std::path::Path,
    registry: &prometheus::Registry,
) -> Result<(Arc<Committee>, dagstream_validator::ValidatorHandle)> {
    let fail = |what: &'static str| {
        move |err: &dyn std::fmt::Display| BenchError::Start {
            what,
            reason: err.to_string(),
        }
    };
    let store: Arc<dyn Store> =
        Arc::new(SegmentStore::open(store_dir).map_err(|e| fail("the store")(&e))?);
    let (committee, producer) = producer(profile, store)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| fail("the listener")(&e))?;
    let handle = dagstream_validator::start(
        producer,
        system_clock(),
        listener,
        PublisherConfig::default(),
        &ValidatorConfig::default(),
        registry,
    )
    .map_err(|e| fail("the validator")(&e))?;
    Ok((committee, handle))
}

/// What each subscriber's recording task shares with the run.
struct Tracker {
    epoch: Instant,
    stopped: watch::Receiver<bool>,
    /// The highest round this subscriber has seen.
    seen: Arc<AtomicU64>,
}

impl Tracker {
    /// Notes that `key` arrived at `at`.
    fn arrived(&self, arrivals: &mut Arrivals, key: Key, at: u64) {
        arrivals.push((key, at));
        self.seen.fetch_max(key >> 16, Ordering::Relaxed);
    }
}

/// One running subscriber, which hands back its arrivals when stopped.
enum Subscriber {
    Receiver(tokio::task::JoinHandle<Arrivals>),
    Observer {
        handle: dagstream_observer::ObserverHandle,
        tap: tokio::task::JoinHandle<Arrivals>,
        consumer: tokio::task::JoinHandle<()>,
    },
}

impl Subscriber {
    /// A block stream client on its own connection, started at
    /// `from_round` for every author: it gets the live blocks only.
    async fn receiver(
        endpoint: &str,
        authorities: usize,
        from_round: u64,
        tracker: Tracker,
    ) -> Result<Self> {
        let fail = |err: &dyn std::fmt::Display| BenchError::Start {
            what: "a block stream",
            reason: err.to_string(),
        };
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| fail(&e))?
            // The observer's windows: a round's burst is not held up by
            // window updates.
            .initial_stream_window_size(Some(dagstream_observer::STREAM_WINDOW_BYTES))
            .initial_connection_window_size(Some(dagstream_observer::CONNECTION_WINDOW_BYTES))
            .connect()
            .await
            .map_err(|e| fail(&e))?;
        let (commands, rx) = mpsc::channel(1);
        let start = BlockStreamRequest {
            command: Some(block_stream_request::Command::Start(StartBlockStream {
                highest_round_per_authority: vec![from_round; authorities],
                preferred_batch_size: 0,
                epoch: None,
            })),
        };
        commands.send(start).await.map_err(|e| fail(&e))?;
        let mut stream = BlockStreamServiceClient::new(channel)
            .max_decoding_message_size(dagstream_proto::MAX_MESSAGE_BYTES)
            .stream_blocks(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|e| fail(&e))?
            .into_inner();
        let mut stopped = tracker.stopped.clone();
        Ok(Subscriber::Receiver(tokio::spawn(async move {
            // Keeps the request stream open: closing it would end the stream.
            let _commands = commands;
            let mut arrivals = Vec::new();
            loop {
                tokio::select! {
                    message = stream.message() => {
                        let Ok(Some(response)) = message else { break };
                        let at = nanos(tracker.epoch, Instant::now());
                        for block in &response.blocks {
                            if let Some(key) = key_of(block) {
                                tracker.arrived(&mut arrivals, key, at);
                            }
                        }
                    }
                    _ = stopped.changed() => break,
                }
            }
            arrivals
        })))
    }

    /// A full observer over an in-memory store, from genesis, on its own
    /// connection; its verified blocks are noted as they come.
    fn observer(endpoint: &str, committee: &Arc<Committee>, tracker: Tracker) -> Result<Self> {
        let (handle, mut commits) = dagstream_observer::start(
            committee.clone(),
            Arc::new(MemStore::new()),
            vec![endpoint.to_string()],
            ObserverConfig::default(),
            0,
        )
        .map_err(|err| BenchError::Start {
            what: "an observer",
            reason: err.to_string(),
        })?;
        let mut verified = handle.subscribe_verified();
        let mut stopped = tracker.stopped.clone();
        let tap = tokio::spawn(async move {
            let mut arrivals = Vec::new();
            loop {
                tokio::select! {
                    block = verified.recv() => match block {
                        Ok(block) => {
                            let at = nanos(tracker.epoch, Instant::now());
                            let key = block_key(block.round(), block.author());
                            tracker.arrived(&mut arrivals, key, at);
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                    _ = stopped.changed() => break,
                }
            }
            arrivals
        });
        let consumer = tokio::spawn(async move { while commits.recv().await.is_some() {} });
        Ok(Subscriber::Observer {
            handle,
            tap,
            consumer,
        })
    }

    async fn finish(self) -> Arrivals {
        match self {
            Subscriber::Receiver(task) => task.await.unwrap_or_default(),
            Subscriber::Observer {
                handle,
                tap,
                consumer,
            } => {
                let arrivals = tap.await.unwrap_or_default();
                // A failed observer shows as missing arrivals.
                let _ = handle.stop().await;
                consumer.abort();
                arrivals
            }
        }
    }
}

/// The `(round, author)` key of `SignedBlock` bytes, read from their first
/// bytes without decoding the rest.
pub fn key_of(block: &[u8]) -> Option<Key> {
    let prefix = block.get(..REF_PREFIX)?;
    let round = u64::from_le_bytes(prefix[8..16].try_into().ok()?);
    let author = u32::from_le_bytes(prefix[16..20].try_into().ok()?);
    Some(block_key(round, author))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagstream_types::{Block, VerifiedBlock};

    #[test]
    fn the_key_is_read_from_the_block_bytes() {
        let key = ed25519_key();
        let block = VerifiedBlock::sign(
            Block {
                epoch: 3,
                round: 1_234,
                author: 77,
                timestamp_ms: 5,
                ancestors: vec![],
                transactions: vec![],
                commit_votes: vec![],
                system_messages: vec![],
            },
            &key,
        );
        assert_eq!(key_of(block.serialized()), Some(block_key(1_234, 77)));
        assert_eq!(key_of(&block.serialized()[..10]), None);
    }

    fn ed25519_key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
    }
}
