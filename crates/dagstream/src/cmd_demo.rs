//! `dagstream demo`: the whole design working, in one process, in about a
//! minute.
//!
//! A validator starts with a long history, and its committee hands the
//! chain to a new one every 15 seconds (an epoch of 150 rounds); three
//! observers, which trust only the genesis committee, follow it:
//! - **fresh** starts far behind and catches up through CommitsOnly,
//!   Overlap and back to BlocksOnly;
//! - **slow-consumer** has a consumer that slows down mid-run, so its
//!   observer pauses the block stream, then resumes it;
//! - **restarted** is stopped mid-run and restarted on its data dir, and
//!   resumes with nothing lost.
//!
//! A live dashboard shows each observer's epoch, mode, lag and current
//! rate. At the end
//! the demo checks that every observer's sequence equals the validator's,
//! prints a summary, and writes `timeline.svg`, `timeline.png` and
//! `summary.json` to the report directory. It exits non-zero if a check
//! fails.

use crate::chain;
use crate::timeline::{self, Sample};
use anyhow::{Context, Result};
use dagstream_observer::metrics::quantile;
use dagstream_observer::{
    start_with_metrics, DeliveredSubDag, Mode, ObserverConfig, ObserverHandle, ObserverMetrics,
    SubscriberConfig,
};
use dagstream_publisher::epochs::Epochs;
use dagstream_publisher::PublisherConfig;
use dagstream_sim::{generate, GenesisParams, Profile, SimConfig};
use dagstream_store::{MemStore, Store};
use dagstream_types::{BlockLimits, CommitRef, Committee};
use dagstream_validator::retention::ValidatorConfig;
use dagstream_validator::Producer;
use serde_json::json;
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Rounds of history: about 1,500 commits, far beyond the 50 that send a
/// fresh observer to the commit stream.
const HISTORY_ROUNDS: u64 = 1_500;
/// How often the dashboard and the timeline sample the observers.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Rounds of an epoch: 15 s of the chain, so that the history holds ten
/// hand-offs and a one-minute run four more.
const EPOCH_ROUNDS: u64 = 150;
/// The dashboard's rate is over this much of the latest time: the
/// chain's current pace, not the average since start.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// One observer of the demo and what its consumer received.
struct Follower {
    name: &'static str,
    handle: Option<ObserverHandle>,
    received: Arc<Mutex<Vec<CommitRef>>>,
    consumer: Option<tokio::task::JoinHandle<()>>,
    /// Every mode seen, in order, across restarts.
    modes: Vec<(Mode, bool)>,
    restarts: u32,
    /// Its metrics, kept across its restart: the certification latency.
    metrics: ObserverMetrics,
    /// The epoch of the last commit its consumer received.
    epoch: Arc<AtomicU64>,
    /// `(seconds, commits received)` over the last [`RATE_WINDOW`].
    recent: VecDeque<(f64, usize)>,
}

impl Follower {
    /// Commits per second over the last [`RATE_WINDOW`], with `delivered`
    /// at `t` seconds.
    fn rate(&mut self, t: f64, delivered: usize) -> f64 {
        self.recent.push_back((t, delivered));
        while self
            .recent
            .front()
            .is_some_and(|(then, _)| t - then > RATE_WINDOW.as_secs_f64())
        {
            self.recent.pop_front();
        }
        match self.recent.front() {
            Some(&(then, before)) if t > then => (delivered - before) as f64 / (t - then),
            _ => 0.0,
        }
    }
}

/// Consumes commits, sleeping `delay()` after each (the slow consumer).
fn consume(
    mut commits: mpsc::Receiver<DeliveredSubDag>,
    received: Arc<Mutex<Vec<CommitRef>>>,
    epoch: Arc<AtomicU64>,
    delay: impl Fn() -> Duration + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(delivered) = commits.recv().await {
            received
                .lock()
                .expect("lock")
                .push(delivered.sub_dag.reference());
            epoch.store(delivered.epoch(), Ordering::Relaxed);
            let pause = delay();
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    })
}

pub async fn run(duration: Duration, report_dir: &Path) -> Result<bool> {
    std::fs::create_dir_all(report_dir)
        .with_context(|| format!("cannot create report dir {}", report_dir.display()))?;
    let work = std::env::temp_dir().join(format!("dagstream-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    // The validator: small profile, genesis far enough in the past for the
    // history, then one round per 100 ms of wall clock.
    let interval = Profile::Small.round_interval_ms();
    let (genesis, keys) = generate(&GenesisParams {
        authorities: Profile::Small.authorities(),
        round_interval_ms: interval,
        genesis_time_ms: dagstream_types::unix_time_ms() - HISTORY_ROUNDS * interval,
        gc_depth_rounds: dagstream_types::DEFAULT_GC_DEPTH_ROUNDS,
        seed: 42,
    });
    let committee = Arc::new(Committee::new(genesis)?);
    let validator_store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut producer = Producer::new(
        committee.clone(),
        keys,
        SimConfig {
            epoch_rounds: EPOCH_ROUNDS,
            ..Profile::Small.sim_config(42)
        },
        &BlockLimits::default(),
        validator_store.clone(),
    )?;
    println!("producing {HISTORY_ROUNDS} rounds of history...");
    while producer.simulator().next_round_time_ms() <= dagstream_types::unix_time_ms() {
        producer.step(dagstream_types::unix_time_ms())?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let validator = dagstream_validator::start(
        producer,
        dagstream_validator::system_clock(),
        listener,
        PublisherConfig::default(),
        &ValidatorConfig::default(),
        &prometheus::Registry::new(),
    )?;
    let upstream = format!("http://{}", validator.addr);
    let validator_epoch = || -> Result<u64> {
        Ok(Epochs::load(validator_store.as_ref(), committee.clone())?
            .current()
            .epoch())
    };
    let history_epoch = validator_epoch()?;
    println!(
        "validator at {upstream} with {} commits of history, in epoch {history_epoch}",
        validator_store.last_commit_index()?
    );

    let slow = ObserverConfig {
        subscriber: SubscriberConfig {
            pause_blocks_queue_size: 40,
            resume_blocks_queue_size: 10,
            ..SubscriberConfig::default()
        },
        block_queue_capacity: 100,
        output_queue_len: 8,
        ..ObserverConfig::default()
    };
    let restart_dir = work.join("restarted");
    let started = Instant::now();
    let phase = |fraction: f64| Duration::from_secs_f64(duration.as_secs_f64() * fraction);
    // The slow consumer slows down from 30% of the run until its observer
    // has paused the block stream (or 85% at the latest), then catches up:
    // tied to the event, not to a guess of how long filling the queues takes.
    let (slow_from, slow_until) = (phase(0.30), phase(0.85));
    let pause_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop_at, restart_at) = (phase(0.45), phase(0.6));

    let mut followers = Vec::new();
    for (name, config) in [
        ("fresh", ObserverConfig::default()),
        ("slow-consumer", slow),
        ("restarted", ObserverConfig::default()),
    ] {
        let store: Arc<dyn Store> = if name == "restarted" {
            chain::open_store(&restart_dir)?
        } else {
            Arc::new(MemStore::new())
        };
        let metrics = ObserverMetrics::unregistered()?;
        let (handle, commits) = start_with_metrics(
            committee.clone(),
            store,
            vec![upstream.clone()],
            config,
            0,
            metrics.clone(),
        )?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let epoch = Arc::new(AtomicU64::new(0));
        let paused = pause_seen.clone();
        let delay = move || {
            let now = started.elapsed();
            let slowing = name == "slow-consumer"
                && now >= slow_from
                && now < slow_until
                && !paused.load(std::sync::atomic::Ordering::Relaxed);
            if slowing {
                Duration::from_millis(250)
            } else {
                Duration::ZERO
            }
        };
        followers.push(Follower {
            name,
            handle: Some(handle),
            consumer: Some(consume(commits, received.clone(), epoch.clone(), delay)),
            received,
            modes: Vec::new(),
            restarts: 0,
            metrics,
            epoch,
            recent: VecDeque::new(),
        });
    }

    let tty = std::io::stdout().is_terminal();
    let mut samples: Vec<Sample> = Vec::new();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    let mut last_print = Instant::now();
    let mut drawn = false;
    let mut boundaries: Vec<(f64, u64)> = Vec::new();
    while started.elapsed() < duration {
        ticks.tick().await;
        let now = started.elapsed();
        let restarted = &mut followers[2];
        if now >= stop_at && restarted.restarts == 0 && restarted.handle.is_some() {
            if let Some(handle) = restarted.handle.take() {
                restarted.modes.extend(handle.status().mode_trace);
                handle.stop().await?;
            }
            if let Some(consumer) = restarted.consumer.take() {
                let _ = consumer.await;
            }
        }
        if now >= restart_at && restarted.handle.is_none() {
            // The consumer acknowledged everything it received: resume
            // right after it.
            let acked = restarted
                .received
                .lock()
                .expect("lock")
                .last()
                .map_or(0, |c| c.index);
            let store: Arc<dyn Store> = chain::open_store(&restart_dir)?;
            let (handle, commits) = start_with_metrics(
                committee.clone(),
                store,
                vec![upstream.clone()],
                ObserverConfig::default(),
                acked,
                restarted.metrics.clone(),
            )?;
            restarted.consumer = Some(consume(
                commits,
                restarted.received.clone(),
                restarted.epoch.clone(),
                || Duration::ZERO,
            ));
            restarted.handle = Some(handle);
            restarted.restarts += 1;
        }
        // The validator's live hand-offs, for the timeline.
        let epoch = validator_epoch()?;
        if epoch > boundaries.last().map_or(history_epoch, |(_, e)| *e) {
            boundaries.push((now.as_secs_f64(), epoch));
        }
        let mut lines = vec![format!("validator      epoch {epoch:>3}")];
        for follower in &mut followers {
            let t = now.as_secs_f64();
            let (mode, paused, lag) = match &follower.handle {
                Some(handle) => {
                    let status = handle.status();
                    if follower.name == "slow-consumer" && status.paused {
                        pause_seen.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    let lag = status
                        .upstream_highest_commit
                        .map(|u| u.saturating_sub(status.local_highest_commit));
                    (status.mode, status.paused, lag)
                }
                None => (None, false, None),
            };
            samples.push(Sample {
                observer: follower.name,
                t,
                lag,
                mode,
                paused,
            });
            let delivered = follower.received.lock().expect("lock").len();
            let rate = follower.rate(t, delivered);
            lines.push(format!(
                "{:<14} epoch {:>3}  {:<12} {:<7} lag {:>6}  delivered {:>6}  {:>6.0} commits/s",
                follower.name,
                follower.epoch.load(Ordering::Relaxed),
                mode.map_or("stopped".to_string(), |m| format!("{m:?}")),
                if paused { "paused" } else { "" },
                lag.map_or("-".to_string(), |l| l.to_string()),
                delivered,
                rate,
            ));
        }
        if tty {
            if drawn {
                print!("\x1b[{}A", lines.len() + 1);
            }
            println!("t = {:>5.1} s\x1b[K", now.as_secs_f64());
            for line in &lines {
                println!("{line}\x1b[K");
            }
            drawn = true;
        } else if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            println!("t = {:.1} s | {}", now.as_secs_f64(), lines.join(" | "));
        }
    }

    // Stop everything, then check.
    for follower in &mut followers {
        if let Some(handle) = follower.handle.take() {
            follower.modes.extend(handle.status().mode_trace);
            handle.stop().await?;
        }
        if let Some(consumer) = follower.consumer.take() {
            let _ = consumer.await;
        }
    }
    validator.stop().await?;

    let chain: Vec<CommitRef> = validator_store
        .scan_commits(1, usize::MAX)?
        .iter()
        .map(|c| c.reference())
        .collect();
    let mut all_ok = true;
    let mut summary = Vec::new();
    println!();
    let final_epoch = validator_epoch()?;
    println!(
        "the committee handed the chain over {final_epoch} times: {history_epoch} in the \
         history, {} during the run",
        final_epoch - history_epoch
    );
    println!(
        "{:<14} {:>9} {:>6} {:>14} {:>9} {:>9} {:>15}  checks",
        "observer", "commits", "epoch", "mode changes", "pauses", "restarts", "certified p50/99"
    );
    for follower in &followers {
        let received = follower.received.lock().expect("lock").clone();
        let matches = !received.is_empty()
            && received.len() <= chain.len()
            && received == chain[..received.len()];
        let modes = distinct_modes(&follower.modes);
        let pauses = follower.modes.iter().filter(|(_, paused)| *paused).count();
        let mut checks = vec![("sequence equals the validator's", matches)];
        match follower.name {
            "fresh" => checks.push((
                "BlocksOnly -> CommitsOnly -> Overlap -> BlocksOnly",
                modes.starts_with(&[
                    Mode::BlocksOnly,
                    Mode::CommitsOnly,
                    Mode::Overlap,
                    Mode::BlocksOnly,
                ]),
            )),
            "slow-consumer" => checks.push((
                "paused and resumed",
                follower.modes.windows(2).any(|w| w[0].1 && !w[1].1),
            )),
            _ => checks.push((
                "restarted with nothing lost",
                follower.restarts == 1 && matches,
            )),
        }
        let ok = checks.iter().all(|(_, ok)| *ok);
        all_ok &= ok;
        // Rounds from a checkpoint's closing decision to its certificate.
        let rounds = &follower.metrics.certification_rounds;
        let (p50, p99) = (quantile(rounds, 0.5), quantile(rounds, 0.99));
        let show = |q: Option<f64>| q.map_or("-".to_string(), |q| q.to_string());
        let epoch = follower.epoch.load(Ordering::Relaxed);
        println!(
            "{:<14} {:>9} {:>6} {:>14} {:>9} {:>9} {:>15}  {}",
            follower.name,
            received.len(),
            epoch,
            modes.len().saturating_sub(1),
            pauses,
            follower.restarts,
            format!("{} / {} rounds", show(p50), show(p99)),
            checks
                .iter()
                .map(|(name, ok)| format!("{} {name}", if *ok { "PASS" } else { "FAIL" }))
                .collect::<Vec<_>>()
                .join("; ")
        );
        summary.push(json!({
            "observer": follower.name,
            "commits": received.len(),
            "epoch": epoch,
            "modes": modes.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>(),
            "pauses": pauses,
            "restarts": follower.restarts,
            "checkpoints_certified": rounds.get_sample_count(),
            "certification_rounds_p50": p50,
            "certification_rounds_p99": p99,
            "checks": checks.iter().map(|(name, ok)| json!({"check": name, "passed": ok})).collect::<Vec<_>>(),
        }));
    }
    let summary = json!({
        "duration_secs": duration.as_secs_f64(),
        "validator_commits": chain.len(),
        "validator_epoch": final_epoch,
        "epochs_during_run": final_epoch - history_epoch,
        "passed": all_ok,
        "observers": summary,
    });
    std::fs::write(
        report_dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    timeline::write(report_dir, &samples, &boundaries)?;
    println!(
        "\n{}: report in {} (summary.json, timeline.svg, timeline.png)",
        if all_ok {
            "all checks passed"
        } else {
            "CHECKS FAILED"
        },
        report_dir.display()
    );
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_dir_all(&work);
    Ok(all_ok)
}

fn distinct_modes(trace: &[(Mode, bool)]) -> Vec<Mode> {
    let mut modes: Vec<Mode> = Vec::new();
    for (mode, _) in trace {
        if modes.last() != Some(mode) {
            modes.push(*mode);
        }
    }
    modes
}
