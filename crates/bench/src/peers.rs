//! The peer baselines: the same payloads, in the same bursts, to the same
//! number of consumers, through Redis Streams and through core NATS.
//!
//! Each server is started by the benchmark on a free loopback port, and
//! killed by PID when the run ends (also on error: the child is killed on
//! drop). A server that is not on the PATH is skipped (`Ok(None)`); install
//! them with `apt-get install redis-server nats-server`.
//!
//! Every message is one block's bytes preceded by an 8-byte sequence
//! number, which identifies it at the consumers. A burst is one round's
//! blocks, published together, every round interval: the publish time of
//! each message is taken just before its burst is handed to the client,
//! as the validator's is taken when its round is announced.

use crate::latency::{Arrivals, Key, Report};
use crate::{BenchError, Result};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a started server gets to accept connections.
const STARTUP: Duration = Duration::from_secs(10);
/// Redis stream entries kept: a few seconds of bursts, so that the
/// server's memory stays flat over the run.
const REDIS_MAXLEN: usize = 100_000;
/// Entries one XREAD returns at most: more than a burst.
const REDIS_READ_COUNT: usize = 1_000;
/// How long one XREAD blocks before it is repeated (it also bounds how
/// long a consumer takes to see the stop signal).
const REDIS_BLOCK_MS: usize = 500;

/// How a peer run is shaped.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// One burst per element: a round's payloads.
    pub bursts: Vec<Vec<Bytes>>,
    pub consumers: usize,
    pub interval: Duration,
    pub warmup: Duration,
    pub window: Duration,
}

/// What one peer run measured.
#[derive(Debug)]
pub struct PeerRun {
    pub name: &'static str,
    pub report: Report,
    pub messages_per_second: f64,
}

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `program` from the PATH, or `None`.
fn find(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|err| BenchError::Start {
        what: "a loopback port",
        reason: err.to_string(),
    })?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|err| BenchError::Start {
            what: "a loopback port",
            reason: err.to_string(),
        })
}

/// Starts `program args` and waits until `port` accepts connections.
fn start_server(
    what: &'static str,
    program: &std::path::Path,
    args: &[&str],
    port: u16,
) -> Result<Server> {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| BenchError::Start {
            what,
            reason: err.to_string(),
        })?;
    let server = Server(child);
    let deadline = Instant::now() + STARTUP;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(BenchError::Start {
                what,
                reason: format!("nothing listens on port {port} after {STARTUP:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

fn nanos(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_nanos() as u64
}

/// The message for payload `payload` with sequence number `key`.
fn message(key: Key, payload: &[u8]) -> Bytes {
    let mut message = BytesMut::with_capacity(8 + payload.len());
    message.put_u64_le(key);
    message.put_slice(payload);
    message.freeze()
}

fn key_of(message: &[u8]) -> Option<Key> {
    Some(u64::from_le_bytes(message.get(..8)?.try_into().ok()?))
}

/// Publishes the bursts in turn, one per interval, until stopped, noting
/// each message's publish time. `send` publishes one burst.
async fn publish<F, Fut>(
    config: &PeerConfig,
    epoch: Instant,
    published: &Mutex<Vec<(Key, u64)>>,
    mut stopped: watch::Receiver<bool>,
    mut send: F,
) -> Result<()>
where
    F: FnMut(Vec<Bytes>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut ticks = tokio::time::interval(config.interval);
    let mut next: Key = 0;
    for burst in config.bursts.iter().cycle() {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return Ok(()),
        }
        let messages: Vec<Bytes> = burst
            .iter()
            .map(|payload| {
                next += 1;
                message(next, payload)
            })
            .collect();
        let at = nanos(epoch, Instant::now());
        published
            .lock()
            .expect("not poisoned")
            .extend((next + 1 - messages.len() as u64..=next).map(|key| (key, at)));
        send(messages).await?;
    }
    Ok(())
}

/// Warm-up, window, grace; then the report.
async fn measure(
    config: &PeerConfig,
    epoch: Instant,
    published: &Mutex<Vec<(Key, u64)>>,
    stop: watch::Sender<bool>,
    consumers: Vec<tokio::task::JoinHandle<Arrivals>>,
    publisher: tokio::task::JoinHandle<Result<()>>,
) -> Result<(Report, f64)> {
    tokio::time::sleep(config.warmup).await;
    let start = nanos(epoch, Instant::now());
    tokio::time::sleep(config.window).await;
    let end = nanos(epoch, Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(true);
    let mut arrivals = Vec::with_capacity(consumers.len());
    for consumer in consumers {
        arrivals.push(consumer.await.unwrap_or_default());
    }
    publisher.await.map_err(|err| BenchError::Run {
        what: "the peer publisher",
        reason: err.to_string(),
    })??;
    let published = std::mem::take(&mut *published.lock().expect("not poisoned"));
    let report = Report::new(&published, &arrivals, (start, end));
    let rate = report.published as f64 / ((end - start) as f64 / 1e9);
    Ok((report, rate))
}

/// Redis Streams: one stream, XADD per message (pipelined per burst), each
/// consumer on its own connection reading with XREAD BLOCK from the last
/// id it saw. No persistence, as a cache would be deployed.
pub async fn redis_streams(config: &PeerConfig) -> Result<Option<PeerRun>> {
    let Some(program) = find("redis-server") else {
        return Ok(None);
    };
    let port = free_port()?;
    let port_arg = port.to_string();
    let _server = start_server(
        "redis-server",
        &program,
        &[
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        port,
    )?;
    let fail = |err: redis::RedisError| BenchError::Run {
        what: "redis",
        reason: err.to_string(),
    };
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(fail)?;
    let epoch = Instant::now();
    let published: Arc<Mutex<Vec<(Key, u64)>>> = Arc::default();
    let (stop, stopped) = watch::channel(false);
    let mut consumers = Vec::with_capacity(config.consumers);
    for _ in 0..config.consumers {
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(fail)?;
        let mut stopped = stopped.clone();
        consumers.push(tokio::spawn(async move {
            let mut arrivals = Vec::new();
            let mut last = "$".to_string();
            while !*stopped.borrow_and_update() {
                let reply: redis::RedisResult<redis::streams::StreamReadReply> =
                    redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(REDIS_READ_COUNT)
                        .arg("BLOCK")
                        .arg(REDIS_BLOCK_MS)
                        .arg("STREAMS")
                        .arg("blocks")
                        .arg(&last)
                        .query_async(&mut connection)
                        .await;
                let Ok(reply) = reply else { break };
                let at = nanos(epoch, Instant::now());
                for entry in reply.keys.iter().flat_map(|k| &k.ids) {
                    if let Some(redis::Value::BulkString(payload)) = entry.map.get("p") {
                        if let Some(key) = key_of(payload) {
                            arrivals.push((key, at));
                        }
                    }
                    last.clone_from(&entry.id);
                }
            }
            arrivals
        }));
    }
    let connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(fail)?;
    let publisher = tokio::spawn({
        let config = config.clone();
        let published = published.clone();
        async move {
            publish(&config, epoch, &published, stopped, |messages| {
                let mut pipe = redis::pipe();
                for message in &messages {
                    pipe.cmd("XADD")
                        .arg("blocks")
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(REDIS_MAXLEN)
                        .arg("*")
                        .arg("p")
                        .arg(&message[..])
                        .ignore();
                }
                // A multiplexed connection: its clones share one socket.
                let mut connection = connection.clone();
                async move { pipe.query_async::<()>(&mut connection).await.map_err(fail) }
            })
            .await
        }
    });
    let (report, rate) = measure(config, epoch, &published, stop, consumers, publisher).await?;
    Ok(Some(PeerRun {
        name: "Redis Streams",
        report,
        messages_per_second: rate,
    }))
}

/// Core NATS: one subject, each consumer its own connection and
/// subscription, the publisher flushing after each burst.
pub async fn nats(config: &PeerConfig) -> Result<Option<PeerRun>> {
    let Some(program) = find("nats-server") else {
        return Ok(None);
    };
    let port = free_port()?;
    let port_arg = port.to_string();
    let _server = start_server(
        "nats-server",
        &program,
        &["-a", "127.0.0.1", "-p", &port_arg],
        port,
    )?;
    let address = format!("nats://127.0.0.1:{port}");
    let fail = |err: &dyn std::fmt::Display| BenchError::Run {
        what: "nats",
        reason: err.to_string(),
    };
    let epoch = Instant::now();
    let published: Arc<Mutex<Vec<(Key, u64)>>> = Arc::default();
    let (stop, stopped) = watch::channel(false);
    let mut consumers = Vec::with_capacity(config.consumers);
    for _ in 0..config.consumers {
        let client = async_nats::connect(&address).await.map_err(|e| fail(&e))?;
        let mut subscription = client.subscribe("blocks").await.map_err(|e| fail(&e))?;
        // The subscription is registered once the server saw it.
        client.flush().await.map_err(|e| fail(&e))?;
        let mut stopped = stopped.clone();
        consumers.push(tokio::spawn(async move {
            let _client = client;
            let mut arrivals = Vec::new();
            loop {
                tokio::select! {
                    message = subscription.next() => {
                        let Some(message) = message else { break };
                        let at = nanos(epoch, Instant::now());
                        if let Some(key) = key_of(&message.payload) {
                            arrivals.push((key, at));
                        }
                    }
                    _ = stopped.changed() => break,
                }
            }
            arrivals
        }));
    }
    let client = async_nats::connect(&address).await.map_err(|e| fail(&e))?;
    let publisher = tokio::spawn({
        let config = config.clone();
        let published = published.clone();
        async move {
            publish(&config, epoch, &published, stopped, |messages| {
                let client = client.clone();
                async move {
                    for message in messages {
                        client
                            .publish("blocks", message)
                            .await
                            .map_err(|e| fail(&e))?;
                    }
                    client.flush().await.map_err(|e| fail(&e))
                }
            })
            .await
        }
    });
    let (report, rate) = measure(config, epoch, &published, stop, consumers, publisher).await?;
    Ok(Some(PeerRun {
        name: "NATS",
        report,
        messages_per_second: rate,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_its_key_ahead_of_the_payload() {
        let message = message(0x0102_0304, b"block bytes");
        assert_eq!(key_of(&message), Some(0x0102_0304));
        assert_eq!(&message[8..], b"block bytes");
        assert_eq!(key_of(b"short"), None);
    }
}
