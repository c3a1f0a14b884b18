//! `dagstream observer`: follow upstreams, verify, persist, and optionally
//! write the commit sequence to a JSON-lines file and relay it.

use crate::cmd_tls::{ServeSecurity, UpstreamSecurity};
use crate::config::NodeConfig;
use crate::sink::RunningSink;
use crate::{chain, http, report, shutdown};
use anyhow::{bail, Context, Result};
use dagstream_observer::{start_with_metrics, ObserverMetrics, ObserverStatus};
use dagstream_publisher::Publisher;
use dagstream_sink::SinkProgress;
use dagstream_store::WriteBatch;
use dagstream_types::{CommitIndex, Committee, Genesis};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prometheus::Registry;
use serde_json::json;
use std::io::{IsTerminal, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct ObserverArgs {
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    pub upstreams: Vec<String>,
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub output: Option<PathBuf>,
    pub config: Option<PathBuf>,
    /// TLS and tokens of the relay's own subscribers.
    pub serve: ServeSecurity,
    /// TLS and the token towards upstreams.
    pub upstream: UpstreamSecurity,
    /// Checkpoints pinned on the command line, on top of the config's.
    pub waypoints: Vec<dagstream_observer::Waypoint>,
    /// The history archive to upload to, over the config's.
    pub archive: Option<String>,
    /// The history archive to bootstrap from, over the config's.
    pub bootstrap_from: Option<String>,
    /// The NATS JetStream sink, over the config's.
    pub sink: crate::sink::SinkArgs,
}

/// The `--output` file, opened for appending after its last complete line.
struct Output {
    file: std::fs::File,
    last_index: CommitIndex,
}

impl Output {
    /// Drops a torn last line (a crash mid-write) and finds the last index
    /// written: writing resumes right after it, so the file never has a gap
    /// or a duplicate.
    fn open(path: &Path) -> Result<Output> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open --output {}", path.display()))?;
        let text = std::io::read_to_string(&mut file)?;
        let complete = text.rfind('\n').map_or(0, |end| end + 1);
        if complete < text.len() {
            tracing::warn!(
                bytes = text.len() - complete,
                "dropping a torn last line of --output"
            );
            file.set_len(complete as u64)?;
            file.sync_all()?;
        }
        file.seek(std::io::SeekFrom::End(0))?;
        let last_index = match text[..complete].lines().last() {
            None => 0,
            Some(line) => serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["index"].as_u64())
                .with_context(|| {
                    format!(
                        "the last line of {} is not a dagstream commit",
                        path.display()
                    )
                })?,
        };
        Ok(Output { file, last_index })
    }

    fn append(&mut self, line: &[u8]) -> Result<()> {
        // One write: a crash tears at most this line, which `open` drops.
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        // The acknowledgement: once synced, this commit is never written
        // again.
        self.file.sync_data()?;
        Ok(())
    }
}

pub async fn run(args: ObserverArgs) -> Result<()> {
    // First of all, so that a signal during startup is also graceful.
    let signals = shutdown::on_signals();
    let mut node_config = NodeConfig::load(args.config.as_deref())?;
    args.serve.apply(&mut node_config.publisher)?;
    args.upstream.apply(&mut node_config.observer)?;
    node_config
        .observer
        .waypoints
        .extend(args.waypoints.iter().copied());
    let archive = &mut node_config.observer.archive;
    if args.archive.is_some() {
        archive.url = args.archive.clone();
    }
    if args.bootstrap_from.is_some() {
        archive.bootstrap_from = args.bootstrap_from.clone();
    }
    args.sink.apply(&mut node_config.sink)?;
    if args.upstreams.is_empty() {
        bail!("give at least one --upstream http://HOST:PORT");
    }
    let genesis = Genesis::load(&args.genesis)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    // Keep the genesis with the data, so that `inspect` can check
    // signatures offline.
    let kept = args.data_dir.join("genesis.json");
    if !kept.exists() {
        std::fs::write(&kept, genesis.to_json_pretty() + "\n")
            .with_context(|| format!("cannot write {}", kept.display()))?;
    }
    let committee = Arc::new(Committee::new(genesis)?);
    let store = chain::open_store(&args.data_dir)?;
    chain::claim(store.as_ref(), &committee, &args.data_dir)?;
    let tip = store.last_commit_index()?;
    let mut output = match &args.output {
        Some(path) => Some(Output::open(path)?),
        None => None,
    };
    let resume_after = output.as_ref().map_or(tip, |o| o.last_index);
    // An empty value is a cleared marker.
    let resyncing = store
        .read_meta(chain::RESYNC_KEY)?
        .is_some_and(|marker| !marker.is_empty());
    if resume_after > tip && resyncing {
        tracing::info!(
            resume_after,
            tip,
            "re-syncing a repaired store: output resumes after the file's last commit"
        );
    } else if resyncing {
        // Caught up with the file: from now on an output file ahead of the
        // store is an error again.
        let mut cleared = WriteBatch::new();
        cleared.put_meta(chain::RESYNC_KEY, Vec::new());
        store.write(cleared)?;
    } else if resume_after > tip {
        bail!(
            "--output ends at commit {resume_after}, past this data dir's last commit {tip}: \
             it belongs to another data dir"
        );
    }
    let registry = Registry::new();
    let (observer, mut commits) = start_with_metrics(
        committee.clone(),
        store.clone(),
        args.upstreams.clone(),
        node_config.observer.clone(),
        resume_after,
        ObserverMetrics::new(&registry)?,
    )?;
    tracing::info!(chain = %committee.digest(), resume_after, "observer starting");

    let relay = match args.listen {
        Some(addr) => {
            let mut handle =
                Publisher::start(observer.source(), node_config.publisher.clone(), &registry)?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr}: is the port in use? pick another with --listen")
            })?;
            handle.spawn_server(listener)?;
            tracing::info!(%addr, "relaying to other observers");
            Some(handle)
        }
        None => None,
    };

    let sink = RunningSink::start(&node_config.sink, &committee, &observer, &registry).await?;
    let status_rx = observer.watch_status();
    let relayed = relay.as_ref().map(|handle| handle.publisher().clone());
    let sunk = sink.as_ref().map(|sink| sink.progress.clone());
    let status = Arc::new(move || {
        let subscribers = relayed.as_ref().map_or(0, |p| p.open_streams());
        let sink = sunk.as_ref().map(|progress| progress.borrow().clone());
        status_json(&status_rx.borrow(), subscribers, sink.as_ref())
    });
    let metrics_server = http::serve_if(
        args.metrics_listen,
        &registry,
        status,
        shutdown::wait(signals.clone()),
    )
    .await?;

    let display = Display::new(std::io::stdout().is_terminal());
    let mut report_every = tokio::time::interval(display.interval());
    let mut stop = signals.clone();
    let mut delivered: u64 = 0;
    let mut delivered_bytes: u64 = 0;
    let mut last = (Instant::now(), 0u64, 0u64);
    loop {
        tokio::select! {
            sub_dag = commits.recv() => {
                let Some(delivered_sub_dag) = sub_dag else { break };
                let sub_dag = &delivered_sub_dag.sub_dag;
                if output.is_some() || sink.is_some() {
                    // Encoded once, for the file and the sink alike.
                    let line = serde_json::to_vec(&report::delivered_json(&delivered_sub_dag))?;
                    if let Some(output) = output.as_mut() {
                        output.append(&line)?;
                    }
                    if let Some(sink) = &sink {
                        sink.offer(delivered_sub_dag.index(), line);
                    }
                }
                delivered += 1;
                delivered_bytes += sub_dag.blocks.iter().map(|b| b.serialized().len() as u64).sum::<u64>();
            }
            _ = report_every.tick() => {
                let seconds = last.0.elapsed().as_secs_f64().max(0.001);
                let rates = (
                    (delivered - last.1) as f64 / seconds,
                    (delivered_bytes - last.2) as f64 / seconds / 1e6,
                );
                last = (Instant::now(), delivered, delivered_bytes);
                display.show(&observer.status(), rates);
            }
            _ = stop.changed() => break,
        }
    }
    display.finish();
    if let Some(sink) = sink {
        sink.stop().await;
    }
    let stopped = observer.stop().await;
    if let Some(handle) = relay {
        handle.stop().await;
    }
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    stopped?;
    tracing::info!(delivered, "observer stopped");
    Ok(())
}

/// The live view: an indicatif bar (catching up) or status line (at the
/// tip) on a terminal, periodic log lines otherwise.
struct Display {
    bar: Option<ProgressBar>,
}

/// Commits behind from which the display shows a progress bar.
const CATCHING_UP: u64 = 10;

impl Display {
    fn new(tty: bool) -> Display {
        Display {
            // On stdout, where the terminal was detected; logs stay on stderr.
            bar: tty.then(|| ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout())),
        }
    }

    fn interval(&self) -> Duration {
        // Refresh a terminal often; keep logs quiet.
        Duration::from_secs(if self.bar.is_some() { 1 } else { 10 })
    }

    fn show(&self, status: &ObserverStatus, (commits_per_s, mb_per_s): (f64, f64)) {
        let lag = status
            .upstream_highest_commit
            .map(|u| u.saturating_sub(status.local_highest_commit));
        let line = format!(
            "{}{} | commit {} | lag {} | {:.0} commits/s | {:.2} MB/s | upstream {}",
            status
                .mode
                .map_or("connecting".to_string(), |m| format!("{m:?}")),
            if status.paused { " (paused)" } else { "" },
            status.local_highest_commit,
            lag.map_or("?".to_string(), |l| l.to_string()),
            commits_per_s,
            mb_per_s,
            status.active_upstream.as_deref().unwrap_or("none"),
        );
        let Some(bar) = &self.bar else {
            tracing::info!("{line}");
            return;
        };
        let template = if lag.is_some_and(|l| l > CATCHING_UP) {
            "{msg}\n[{bar:40}] {pos}/{len} ETA {eta}"
        } else {
            "{msg}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        if let Some(upstream) = status.upstream_highest_commit {
            bar.set_length(upstream);
        }
        bar.set_position(status.local_highest_commit);
        bar.set_message(line);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

fn status_json(
    status: &ObserverStatus,
    subscribers: usize,
    sink: Option<&SinkProgress>,
) -> serde_json::Value {
    json!({
        "role": "observer",
        "epoch": status.epoch,
        "mode": status.mode.map(|m| format!("{m:?}")),
        "paused": status.paused,
        "commit_lag": status.upstream_highest_commit.map(|u| u.saturating_sub(status.local_highest_commit)),
        "highest_local_commit": status.local_highest_commit,
        "highest_upstream_commit": status.upstream_highest_commit,
        "active_upstream": status.active_upstream,
        "subscribers": subscribers,
        "checkpoint": status.checkpoint,
        "last_closed_checkpoint": status.last_closed_checkpoint,
        "highest_certified_checkpoint": status.highest_certified_checkpoint,
        "upstream_certified_checkpoint": status.upstream_certified_checkpoint,
        "caught_up": status.caught_up,
        "last_fault": status.last_fault,
        "last_upstream_error": status.last_upstream_error,
        "archived_checkpoint": status.archived_checkpoint,
        "archive_error": status.archive_error,
        "bootstrapped_commit": status.bootstrapped_commit,
        "sink_commit": sink.and_then(|s| s.commit),
        "sink_error": sink.and_then(|s| s.error.clone()),
    })
}
