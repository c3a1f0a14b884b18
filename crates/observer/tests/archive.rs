//! The history archive on the local filesystem, end to end over real gRPC
//! on loopback: an observer archives what it certifies (across epochs and
//! a restart), a new one bootstraps from it and then follows the
//! validator with no gap and no repeat; damaged and forged bundles are
//! named and their range taken from the validator; with its upstreams
//! down, a bootstrapped observer still delivers all the archive held; a
//! second writer and another chain's archive are refused; a validator that
//! prunes names the archive, and an observer bootstrapped from it needs
//! nothing pruned.

mod common;

use common::{
    consume, fresh_observer, validator_retaining, validator_with, wait_status, TestClock,
    Validator, PATIENCE,
};
use dagstream_archive::bundle::{decode, encode};
use dagstream_archive::layout::{bundle_name, parse_bundle_name, Manifest, MANIFEST};
use dagstream_archive::{ArchiveError, ArchiveReader, Objects};
use dagstream_observer::{ObserverConfig, ObserverError, ObserverHandle};
use dagstream_sim::{Profile, SimConfig};
use dagstream_store::{MemStore, Store};
use dagstream_types::{CommitIndex, Digest};
use dagstream_validator::retention::{ValidatorConfig, MIN_RETAIN_COMMITS};
use std::sync::Arc;
use std::time::Duration;

/// An epoch every 30 rounds: the archive's bundles cross hand-offs.
fn epochs_every(rounds: u64) -> SimConfig {
    SimConfig {
        epoch_rounds: rounds,
        ..Profile::Small.sim_config(9)
    }
}

fn chain() -> Digest {
    common::committee_and_keys().0.digest()
}

/// Small bundles, so that a short history makes many.
fn archiving(url: &str) -> ObserverConfig {
    let mut config = ObserverConfig::default();
    config.archive.url = Some(url.into());
    config.archive.bundle_bytes = 4 << 10;
    config
}

fn bootstrapping(url: &str) -> ObserverConfig {
    let mut config = ObserverConfig::default();
    config.archive.bootstrap_from = Some(url.into());
    config
}

/// An observer archiving to `url` over `store`, its commits drained.
fn start_writer(validator: &Validator, store: Arc<dyn Store>, url: &str) -> ObserverHandle {
    let (committee, _) = common::committee_and_keys();
    let (observer, mut commits) = dagstream_observer::start(
        committee,
        store,
        vec![validator.endpoint()],
        archiving(url),
        0,
    )
    .expect("the observer starts");
    tokio::spawn(async move { while commits.recv().await.is_some() {} });
    observer
}

/// Waits until the archive at `url` holds commit `commit`; returns its
/// last commit.
async fn archived_to(url: &str, commit: CommitIndex) -> CommitIndex {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(reader) = ArchiveReader::open(url, chain()).await {
                if reader.last_commit() >= commit {
                    return reader.last_commit();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the archive advances")
}

/// The bundles' first commits, ascending.
async fn bundles(url: &str) -> Vec<CommitIndex> {
    let objects = Objects::open(url).unwrap();
    objects
        .list("bundles/")
        .await
        .unwrap()
        .iter()
        .filter_map(|name| parse_bundle_name(name))
        .collect()
}

/// A validator whose history spans several epochs, and an archive of it
/// (written across a restart of its writer). Returns the validator, the
/// archive's directory, URL and last commit once its writer has stopped
/// (a stop finishes the uploads under way, so it stays so).
async fn archived_chain() -> (Validator, tempfile::TempDir, String, CommitIndex) {
    let validator = validator_with(150, None, epochs_every(30)).await;
    let history = validator.store.last_commit_index().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("archive").display());
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let writer = start_writer(&validator, store.clone(), &url);
    let first_run = archived_to(&url, history / 2).await;
    writer.stop().await.unwrap();
    // Restarted on its store, the writer continues from the watermark,
    // to past where the validator is now.
    let writer = start_writer(&validator, store, &url);
    let target = validator.store.last_commit_index().unwrap().max(history) + 10;
    archived_to(&url, target).await;
    writer.stop().await.unwrap();
    let last = ArchiveReader::open(&url, chain())
        .await
        .unwrap()
        .last_commit();
    assert!(last > first_run);
    (validator, dir, url, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_observer_bootstraps_from_the_archive_then_follows_the_validator() {
    let (validator, _dir, url, _) = archived_chain().await;
    // The writer finished its uploads before its stop returned: the
    // archive stays as read here.
    let reader = ArchiveReader::open(&url, chain()).await.unwrap();
    let watermark = reader.watermark().unwrap().clone();
    let archived = watermark.commit;
    assert!(watermark.epoch >= 3, "the archive crosses hand-offs");
    let firsts = bundles(&url).await;
    assert!(firsts.len() as u64 >= watermark.bundles);
    assert_eq!(firsts[0], 1);

    let (observer, mut commits) = fresh_observer(vec![validator.endpoint()], bootstrapping(&url));
    let until = archived + 40;
    let received = consume(&mut commits, 0, until).await;
    assert_eq!(received, validator.commits(until).await);
    // Everything the archive held came from it, verified.
    assert!(observer.status().bootstrapped_commit >= archived);
    assert_eq!(observer.status().last_fault, None);
    observer.stop().await.unwrap();
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_upstreams_down_a_bootstrapped_observer_delivers_the_whole_archive() {
    let (validator, _dir, url, archived) = archived_chain().await;
    let expected = validator.commits(archived).await;
    validator.stop().await;
    // A port nobody listens on: every connection is refused.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (observer, mut commits) = fresh_observer(vec![down], bootstrapping(&url));
    // The last bundle's commits too, though no upstream ever answers.
    assert_eq!(consume(&mut commits, 0, archived).await, expected);
    wait_status(&observer, "the whole archive persisted", |s| {
        s.local_highest_commit == archived && s.bootstrapped_commit == archived
    })
    .await;
    observer.stop().await.unwrap();
}

/// Bootstraps a fresh observer from `url` after `damage` was done to its
/// `n`-th bundle; the observer must take the bundles before it from the
/// archive, name the damaged one, and get the rest from the validator.
async fn bootstrap_past_damage(n: usize, damage: impl FnOnce(&std::path::Path, CommitIndex)) {
    let (validator, dir, url, archived) = archived_chain().await;
    let firsts = bundles(&url).await;
    assert!(firsts.len() > n, "{} bundles", firsts.len());
    let damaged = firsts[n];
    damage(
        &dir.path().join("archive").join(bundle_name(damaged)),
        damaged,
    );
    let (observer, mut commits) = fresh_observer(vec![validator.endpoint()], bootstrapping(&url));
    let until = archived + 20;
    let received = consume(&mut commits, 0, until).await;
    assert_eq!(received, validator.commits(until).await);
    let status = observer.status();
    assert_eq!(status.bootstrapped_commit, damaged - 1);
    let error = status.archive_error.expect("the damage is reported");
    assert!(
        error.contains(&bundle_name(damaged)),
        "the error names the object: {error}"
    );
    observer.stop().await.unwrap();
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_bundle_is_named_and_its_range_taken_from_the_validator() {
    bootstrap_past_damage(2, |path, _| {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        bytes.truncate(bytes.len() - 3);
        std::fs::write(path, bytes).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bundle_is_named_and_its_range_taken_from_the_validator() {
    bootstrap_past_damage(1, |path, _| std::fs::remove_file(path).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_bundle_is_refused_and_nothing_of_it_is_written() {
    // A bundle that decodes, names the right commits, and lies: its last
    // commit's timestamp is moved, so its digest (and every later one)
    // changes, and the certifying votes no longer match.
    bootstrap_past_damage(3, |path, first| {
        let name = path.display().to_string();
        let mut bundle = decode(&name, first, &std::fs::read(path).unwrap()).unwrap();
        let batch = bundle.batch.as_mut().unwrap();
        batch.commits.last_mut().unwrap().timestamp_ms += 1;
        std::fs::write(path, encode(&bundle)).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_and_another_chains_archive_are_refused() {
    let (validator, dir, url, _) = archived_chain().await;
    // Another observer (another store, so another writer id) finds the
    // lease taken and does not write.
    let before = bundles(&url).await;
    let intruder = start_writer(&validator, Arc::new(MemStore::new()), &url);
    wait_status(&intruder, "the lease refused", |s| {
        s.archive_error
            .as_deref()
            .is_some_and(|e| e.contains("written by another observer"))
    })
    .await;
    assert_eq!(bundles(&url).await, before);
    intruder.stop().await.unwrap();

    // An archive of another chain stops a bootstrap: following another
    // chain is never right.
    let other = format!("file://{}", dir.path().join("other").display());
    let objects = Objects::open(&other).unwrap();
    let manifest = serde_json::to_vec(&Manifest::new(Digest::of(b"another chain"))).unwrap();
    objects.put(MANIFEST, manifest.into()).await.unwrap();
    let (observer, _commits) = fresh_observer(vec![validator.endpoint()], bootstrapping(&other));
    let result = tokio::time::timeout(PATIENCE, observer.join())
        .await
        .expect("the observer stops");
    assert!(
        matches!(
            result,
            Err(ObserverError::Archive(ArchiveError::WrongChain { .. }))
        ),
        "{result:?}"
    );
    validator.stop().await;
}

/// A validator that keeps only its newest commits refuses older ones and
/// names its archive: a fresh observer told nothing else says so in its
/// status, and one bootstrapped from the archive needs nothing that was
/// pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruning_validator_names_its_archive_and_a_bootstrap_needs_nothing_it_pruned() {
    let (full, _dir, url, archived) = archived_chain().await;
    // The same chain on a validator standing still some 80 commits past
    // the archive, keeping its newest 100.
    let through = archived + 80;
    full.commits(through).await;
    let leader_round = full
        .store
        .read_commit(through)
        .unwrap()
        .unwrap()
        .leader()
        .round;
    let history = leader_round + 5;
    let clock = TestClock::at(history * common::INTERVAL_MS);
    let retention = ValidatorConfig {
        retain_commits: MIN_RETAIN_COMMITS,
    };
    let pruning = validator_retaining(
        history,
        Some(clock),
        epochs_every(30),
        &retention,
        Some(&url),
    )
    .await;
    let highest = pruning.store.last_commit_index().unwrap();
    let lowest = tokio::time::timeout(PATIENCE, async {
        loop {
            let (lowest, _) = pruning.store.commit_range().unwrap().unwrap();
            if lowest + MIN_RETAIN_COMMITS > highest {
                return lowest;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the validator prunes");
    assert_eq!(lowest, highest + 1 - MIN_RETAIN_COMMITS);
    assert!(lowest > 1 && lowest <= archived, "{lowest} {archived}");

    let (lost, _commits) = fresh_observer(vec![pruning.endpoint()], ObserverConfig::default());
    wait_status(&lost, "the refusal", |s| {
        s.last_upstream_error.as_deref().is_some_and(|e| {
            e.contains(&format!("the lowest available commit is {lowest}"))
                && e.contains(&format!("--bootstrap-from {url}"))
        })
    })
    .await;
    assert_eq!(lost.status().local_highest_commit, 0);
    lost.stop().await.unwrap();

    let (observer, mut commits) = fresh_observer(vec![pruning.endpoint()], bootstrapping(&url));
    let until = archived + 60;
    let received = consume(&mut commits, 0, until).await;
    assert_eq!(received, full.commits(until).await);
    assert!(observer.status().bootstrapped_commit >= archived);
    assert_eq!(observer.status().last_fault, None);
    observer.stop().await.unwrap();
    pruning.stop().await;
    full.stop().await;
}
