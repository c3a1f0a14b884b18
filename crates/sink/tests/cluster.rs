//! The sink against a three-node JetStream cluster on loopback, with a
//! replicated (R3) stream: the node that leads the stream is killed while
//! the sink publishes, and the subject still holds each commit once, in
//! order.

mod common;

use async_nats::jetstream::{self, stream};
use common::{encoder, expected, followed_chain, free_port, persisted, NatsServer, PATIENCE};
use dagstream_sink::nats::JetStreamLog;
use dagstream_sink::{message_id, Sink, SinkConfig, SinkMetrics, SinkProgress};
use std::time::Duration;
use tokio::sync::watch;

/// Three servers, each routing to the others.
fn cluster(dir: &std::path::Path) -> Vec<NatsServer> {
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let all_routes = routes
        .iter()
        .map(|port| format!("nats://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            let data = dir.join(format!("n{i}"));
            NatsServer::start_with(
                &data,
                clients[i],
                vec![
                    "--name".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "dagstream".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", routes[i]),
                    "--routes".into(),
                    all_routes.clone(),
                ],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = cluster(dir.path());
    let servers_urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let urls = servers_urls.join(",");
    let client = async_nats::connect(servers_urls).await.unwrap();
    let context = jetstream::new(client);
    // Replicated three times; created once the cluster has elected its
    // meta leader (until then the request fails).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut created = loop {
        let config = stream::Config {
            name: "DAGSTREAM".into(),
            subjects: vec!["dagstream.commits".into()],
            num_replicas: 3,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        match context.get_or_create_stream(config).await {
            Ok(stream) => break stream,
            Err(err) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the cluster forms: {err}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    let (committee, observer, last) = followed_chain(60).await;
    let store = observer.source().store().clone();
    let config = SinkConfig {
        url: Some(urls.clone()),
        batch: 7,
        window: 3,
        ..SinkConfig::default()
    };
    let log = JetStreamLog::connect(&config, committee.digest(), "w".into())
        .await
        .unwrap();
    let sink = Sink::new(
        log,
        store.clone(),
        encoder(),
        "w".into(),
        &config,
        SinkMetrics::unregistered(),
    );
    let (status, status_rx) = persisted(last / 3);
    let (progress_tx, mut progress) = watch::channel(SinkProgress::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(sink.run(status_rx, progress_tx, shutdown_rx));
    let reach = |commit| {
        let mut progress = progress.clone();
        async move {
            tokio::time::timeout(PATIENCE, progress.wait_for(|p| p.commit == Some(commit)))
                .await
                .expect("the sink reaches its commit")
                .unwrap();
        }
    };
    reach(last / 3).await;

    // The stream's leader goes, and the sink goes on publishing.
    let leader = created
        .info()
        .await
        .unwrap()
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("an R3 stream has a leader");
    let victim = leader.trim_start_matches('n').parse::<usize>().unwrap();
    servers[victim].kill();
    status.send_modify(|s| s.local_highest_commit = last);
    reach(last).await;
    shutdown.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert!(progress.borrow_and_update().commit == Some(last));

    // Read back through a survivor.
    let survivor = servers
        .iter()
        .position(|s| s.port != servers[victim].port)
        .unwrap();
    let context = jetstream::new(async_nats::connect(servers[survivor].url()).await.unwrap());
    let mut stream = context.get_stream("DAGSTREAM").await.unwrap();
    let last_sequence = stream.info().await.unwrap().state.last_sequence;
    let mut held = Vec::new();
    for sequence in 1..=last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .unwrap()
            .as_str()
            .to_string();
        held.push((id, message.payload));
    }
    let wanted = expected(store.as_ref(), last);
    let ids: Vec<&str> = held.iter().map(|(id, _)| id.as_str()).collect();
    let wanted_ids: Vec<String> = wanted
        .iter()
        .map(|r| message_id(&committee.digest(), r.index))
        .collect();
    assert_eq!(ids, wanted_ids, "each commit once, in order");
    for ((_, payload), record) in held.iter().zip(&wanted) {
        assert_eq!(payload, &record.payload);
    }
    observer.stop().await.unwrap();
}
