//! The history archive on a real S3-protocol server process (moto's, on a
//! loopback port, started and stopped by this test, behind a proxy that
//! cuts the link, answers 500 or slows down on command): an observer whose
//! object store is down at start follows the chain meanwhile and archives
//! once the server comes up; an outage or a run of 500s mid-run shows as
//! lag and an error, and the archive then catches up; a slow server only
//! slows the archive; a new observer bootstraps from it.
//!
//! One test in its own binary: the AWS variables are the process's.

mod common;

use common::{consume, fresh_observer, validator, wait_status, PATIENCE};
use dagstream_archive::ArchiveReader;
use dagstream_observer::ObserverConfig;
use dagstream_store::{MemStore, Store};
use dagstream_test_utils::proxy::{Fault, FaultProxy, HTTP_500};
use dagstream_test_utils::s3::S3Server;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_on_s3_survives_a_server_down_at_start_and_bootstraps_an_observer() {
    let validator = validator(120).await;
    let history = validator.store.last_commit_index().unwrap();
    let port = S3Server::free_port();
    let proxy = FaultProxy::start(([127, 0, 0, 1], port).into()).await;
    // The variables name (through the proxy) a server not running yet.
    S3Server::export_aws_env_for(proxy.addr().port());
    let url = "s3://chain/mainnet";

    let mut config = ObserverConfig::default();
    config.archive.url = Some(url.into());
    config.archive.bundle_bytes = 4 << 10;
    let (committee, _) = common::committee_and_keys();
    let (writer, mut commits) = dagstream_observer::start(
        committee,
        Arc::new(MemStore::new()) as Arc<dyn Store>,
        vec![validator.endpoint()],
        config,
        0,
    )
    .unwrap();
    tokio::spawn(async move { while commits.recv().await.is_some() {} });
    // The chain does not wait for the archive.
    wait_status(&writer, "caught up while the archive is down", |s| {
        s.local_highest_commit >= history && s.archive_error.is_some()
    })
    .await;
    assert_eq!(writer.status().archived_checkpoint, None);

    let server = S3Server::start_on(port);
    server.create_bucket("chain");
    wait_status(&writer, "archived the history", |s| {
        s.archived_checkpoint.is_some() && s.archive_error.is_none()
    })
    .await;
    // An outage: every connection to the server cut. The chain goes on;
    // the archive waits, and says why.
    let (archived, local) = (
        writer.status().archived_checkpoint,
        writer.status().local_highest_commit,
    );
    proxy.set(Fault::Cut);
    wait_status(&writer, "the outage reported", |s| {
        s.archive_error.is_some() && s.local_highest_commit > local + 20
    })
    .await;
    proxy.set(Fault::Pass);
    wait_status(&writer, "the archive caught up after the outage", |s| {
        s.archive_error.is_none() && s.archived_checkpoint > archived
    })
    .await;
    // A server that answers every request with a 500: the same, and the
    // status says what the server answered.
    let (archived, local) = (
        writer.status().archived_checkpoint,
        writer.status().local_highest_commit,
    );
    proxy.set(Fault::Answer(HTTP_500));
    wait_status(&writer, "the 500s reported", |s| {
        s.archive_error
            .as_deref()
            .is_some_and(|e| e.contains("500"))
            && s.local_highest_commit > local + 20
    })
    .await;
    proxy.set(Fault::Pass);
    wait_status(&writer, "the archive caught up after the 500s", |s| {
        s.archive_error.is_none() && s.archived_checkpoint > archived
    })
    .await;
    // A slow server, every chunk held 50 ms each way: the archive still
    // advances.
    let archived = writer.status().archived_checkpoint;
    proxy.set(Fault::Delay(Duration::from_millis(50)));
    wait_status(&writer, "archiving through a slow server", |s| {
        s.archived_checkpoint > archived
    })
    .await;
    proxy.set(Fault::Pass);
    let chain = common::committee_and_keys().0.digest();
    tokio::time::timeout(PATIENCE, async {
        while ArchiveReader::open(url, chain).await.unwrap().last_commit() < history {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the archive catches up");
    writer.stop().await.unwrap();
    // The writer finished its uploads before its stop returned: the
    // archive stays as read here.
    let archived = ArchiveReader::open(url, chain).await.unwrap().last_commit();

    let mut config = ObserverConfig::default();
    config.archive.bootstrap_from = Some(url.into());
    let (observer, mut commits) = fresh_observer(vec![validator.endpoint()], config);
    let until = archived + 20;
    let received = consume(&mut commits, 0, until).await;
    assert_eq!(received, validator.commits(until).await);
    assert!(observer.status().bootstrapped_commit >= archived);
    observer.stop().await.unwrap();
    validator.stop().await;
    drop(server);
}
