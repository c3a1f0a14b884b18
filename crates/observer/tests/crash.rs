//! The observer as a real process, killed with SIGKILL at random points and
//! restarted on the same data directory: its consumer's log ends up equal
//! to the validator's chain, with no gap and no duplicate.
//!
//! The consumer of the child appends `index digest` per commit to a log and
//! syncs it: that is its persisted acknowledgement. On restart it drops a
//! torn last line and resumes after the last complete one.

mod common;

use common::{committee_and_keys, validator_with};
use dagstream_observer::{start, ObserverConfig};
use dagstream_store::SegmentStore;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UPSTREAM_VAR: &str = "DAGSTREAM_OBSERVER_CHILD_UPSTREAM";
const DIR_VAR: &str = "DAGSTREAM_OBSERVER_CHILD_DIR";

/// Complete lines of the log, as `(index, digest)`; a torn tail is ignored.
fn read_log(path: &Path) -> Vec<(u64, String)> {
    let Ok(file) = std::fs::File::open(path) else {
        return vec![];
    };
    let text = std::io::read_to_string(file).unwrap();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            let (index, digest) = line.split_once(' ').expect("index digest");
            (index.parse().unwrap(), digest.to_string())
        })
        .collect()
}

/// The child: an observer whose consumer logs every commit, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by observer_survives_sigkill as a child process"]
async fn sigkill_child() {
    let (Ok(upstream), Ok(dir)) = (std::env::var(UPSTREAM_VAR), std::env::var(DIR_VAR)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let log_path = dir.join("commits.log");
    // Drop a torn last line: the acknowledgement of that commit never
    // completed, so the commit comes again.
    let acked = read_log(&log_path);
    let complete: String = acked.iter().map(|(i, d)| format!("{i} {d}\n")).collect();
    std::fs::write(&log_path, complete).unwrap();
    let resume_after = acked.last().map_or(0, |(index, _)| *index);

    let (committee, _) = committee_and_keys();
    let store = Arc::new(SegmentStore::open(&dir.join("store")).unwrap());
    let (_observer, mut commits) = start(
        committee,
        store,
        vec![upstream],
        ObserverConfig::default(),
        resume_after,
    )
    .unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap();
    while let Some(sub_dag) = commits.recv().await {
        let (index, digest) = (sub_dag.index(), sub_dag.sub_dag.commit.digest());
        writeln!(log, "{index} {digest}").unwrap();
        log.sync_data().unwrap();
    }
}

fn spawn_child(upstream: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_child", "--nocapture", "--ignored"])
        .env(UPSTREAM_VAR, upstream)
        .env(DIR_VAR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the log has at least `lines` complete lines.
fn wait_for_log(path: &Path, lines: usize) {
    let deadline = Instant::now() + common::PATIENCE;
    while read_log(path).len() < lines {
        assert!(
            Instant::now() < deadline,
            "the child never logged {lines} commits"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_survives_sigkill() {
    let seed = common::test_seed();
    // A small deterministic generator for kill points.
    let mut state = seed | 1;
    let mut random = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };

    // Epochs of 25 rounds, about 16 commits: the kills land on every side
    // of the boundaries, SIGKILL included between a hand-off and the next
    // epoch's first block.
    let sim = dagstream_sim::SimConfig {
        epoch_rounds: 25,
        ..dagstream_sim::Profile::Small.sim_config(9)
    };
    let validator = validator_with(200, None, sim).await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("commits.log");
    std::fs::File::create(&log_path).unwrap();
    let endpoint = validator.endpoint();
    let mut target = 0;
    for kill in 0..5 {
        target += 20 + random(60) as usize;
        let log = log_path.clone();
        let dir_path = dir.path().to_path_buf();
        let endpoint = endpoint.clone();
        let delay = random(20);
        tokio::task::spawn_blocking(move || {
            let mut child = spawn_child(&endpoint, &dir_path);
            wait_for_log(&log, target);
            std::thread::sleep(Duration::from_millis(delay));
            child.kill().unwrap();
            child.wait().unwrap();
        })
        .await
        .unwrap();
        println!("kill {kill} after {} commits", read_log(&log_path).len());
    }
    // A last run to a final count, then check the whole log.
    let log = log_path.clone();
    let dir_path = dir.path().to_path_buf();
    let final_count = target + 30;
    tokio::task::spawn_blocking(move || {
        let mut child = spawn_child(&endpoint, &dir_path);
        wait_for_log(&log, final_count);
        child.kill().unwrap();
        child.wait().unwrap();
    })
    .await
    .unwrap();

    let logged = read_log(&log_path);
    let expected = validator.commits(logged.len() as u64).await;
    let indexes: Vec<u64> = logged.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indexes,
        (1..=logged.len() as u64).collect::<Vec<_>>(),
        "seed {seed}"
    );
    for ((index, digest), commit) in logged.iter().zip(&expected) {
        assert_eq!(
            (*index, digest.clone()),
            (commit.index, commit.digest.to_string()),
            "seed {seed}"
        );
    }
    validator.stop().await;
}
