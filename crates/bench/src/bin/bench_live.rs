//! Live latency and fan-out of one validator's block stream, against Redis
//! Streams and core NATS moving the same bytes in the same run.
//!
//! ```text
//! cargo run --release -p dagstream-bench --features peers --bin bench_live -- \
//!     [--window SECONDS] [--warmup SECONDS] [--receivers 1,20,50,100] \
//!     [--observers 1,5] [--consumers 20] [--out DIR]
//! ```
//!
//! Each run starts a validator at the mainnet profile (100 authorities,
//! 75 ms rounds, 5,000 TPS: bursts of 100 blocks of about 6 KB) from
//! genesis, with its subscribers in this process, so that publish and
//! arrival times come from one monotonic clock:
//! - a run without subscribers, the CPU baseline;
//! - one run per `--receivers` count of receive-only block stream clients
//!   (publish → received, and the spread from the first subscriber to the
//!   last for each block);
//! - one run per `--observers` count of full observers (publish →
//!   verified);
//! - with the `peers` feature, `--consumers` consumers of Redis Streams and
//!   of NATS, fed the validator's own block bytes in the same bursts. A
//!   server that is not installed is skipped with a message
//!   (`apt-get install redis-server nats-server`).
//!
//! It prints one table row per run, then for each run the delays from each
//! block's scheduled time (its round's) to its acceptance and to its
//! arrival at the subscribers, and the publisher's own latency histograms, and writes `latency_cdf.svg` (plotters) and
//! `summary.json` to `--out` (default `target/bench_live`).

use anyhow::Context;
use clap::Parser;
use dagstream_bench::latency::Percentiles;
use dagstream_bench::live::{self, Kind, LiveConfig, LiveRun};
use dagstream_bench::plot::{self, Series};
use dagstream_sim::Profile;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Seconds measured per run.
    #[arg(long, default_value_t = 20)]
    window: u64,
    /// Seconds before the window: connections open, observers catch up.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Receive-only subscriber counts, one run each (0: none).
    #[arg(long, value_delimiter = ',', default_value = "1,20,50,100")]
    receivers: Vec<usize>,
    /// Full observer counts, one run each (0: none).
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    observers: Vec<usize>,
    /// Consumers of each peer.
    #[arg(long, default_value_t = 20)]
    consumers: usize,
    /// Where the plot and the summary go.
    #[arg(long, default_value = "target/bench_live")]
    out: PathBuf,
}

fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

/// A table row: latency and spread percentiles, then the rest.
fn row(
    system: &str,
    subscribers: usize,
    rate: f64,
    latencies: &mut [u64],
    spreads: &mut [u64],
    complete: usize,
    rest: &str,
) -> String {
    let l = Percentiles::of(latencies);
    let s = Percentiles::of(spreads);
    format!(
        "| {system} | {subscribers} | {rate:.0} | {complete}/{subscribers} | {} | {} | {} | {} | {} | {rest} |",
        ms(l.p50),
        ms(l.p99),
        ms(l.p999),
        ms(s.p50),
        ms(s.p99),
    )
}

fn live_row(run: &mut LiveRun, baseline_cpu: f64) -> String {
    let extra = run.publisher_cpu - baseline_cpu;
    let per = if run.subscribers > 0 {
        extra / run.subscribers as f64
    } else {
        0.0
    };
    let rest = format!(
        "{:.3} | {:.3} | {:.4} | {:.3} | {:.1}",
        run.producer_cpu,
        run.publisher_cpu,
        per,
        run.subscriber_cpu,
        run.bytes_per_second / 1e6
    );
    let name = format!("dagstream, {}", run.kind.name());
    row(
        &name,
        run.subscribers,
        run.blocks_per_second,
        &mut run.report.latencies,
        &mut run.report.spreads,
        run.report.complete,
        &rest,
    )
}

fn summary(run: &LiveRun) -> serde_json::Value {
    let mut latencies = run.report.latencies.clone();
    let mut spreads = run.report.spreads.clone();
    let l = Percentiles::of(&mut latencies);
    let s = Percentiles::of(&mut spreads);
    json!({
        "kind": run.kind.name(),
        "subscribers": run.subscribers,
        "blocks_per_second": run.blocks_per_second,
        "complete_subscribers": run.report.complete,
        "latency_ms": {"p50": l.p50 as f64 / 1e6, "p99": l.p99 as f64 / 1e6, "p999": l.p999 as f64 / 1e6, "max": l.max as f64 / 1e6, "count": l.count},
        "spread_ms": {"p50": s.p50 as f64 / 1e6, "p99": s.p99 as f64 / 1e6, "count": s.count},
        "producer_cpu": run.producer_cpu,
        "publisher_cpu": run.publisher_cpu,
        "subscriber_cpu": run.subscriber_cpu,
        "bytes_per_second": run.bytes_per_second,
        "publisher_accept_to_queue_ms": {"p50": run.accept_to_queue_ms.0, "p99": run.accept_to_queue_ms.1},
        "publisher_queue_to_send_ms": {"p50": run.queue_to_send_ms.0, "p99": run.queue_to_send_ms.1},
        "scheduled_to_accepted_ms": {
            "p50": run.scheduled_to_accepted.p50 as f64 / 1e6,
            "p99": run.scheduled_to_accepted.p99 as f64 / 1e6,
        },
        "scheduled_to_received_ms": {
            "p50": run.scheduled_to_received.p50 as f64 / 1e6,
            "p99": run.scheduled_to_received.p99 as f64 / 1e6,
        },
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = LiveConfig {
        profile: Profile::Mainnet,
        warmup: Duration::from_secs(args.warmup),
        window: Duration::from_secs(args.window),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    println!(
        "mainnet profile, {} s warm-up, {} s window per run, {} cores",
        args.warmup,
        args.window,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| system | subscribers | msgs/s | complete | p50 ms | p99 ms | p999 ms | spread p50 ms | spread p99 ms | producer CPU s/s | publisher CPU s/s | publisher CPU per subscriber | subscribers' CPU s/s | MB/s sent |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut baseline = live::run(&config, Kind::Receiver, 0).context("the baseline run")?;
    let baseline_cpu = baseline.publisher_cpu;
    println!("{}", live_row(&mut baseline, baseline_cpu));
    let mut runs = Vec::new();
    for &n in args.receivers.iter().filter(|&&n| n > 0) {
        let mut run =
            live::run(&config, Kind::Receiver, n).with_context(|| format!("{n} receivers"))?;
        println!("{}", live_row(&mut run, baseline_cpu));
        runs.push(run);
    }
    for &n in args.observers.iter().filter(|&&n| n > 0) {
        let mut run =
            live::run(&config, Kind::Observer, n).with_context(|| format!("{n} observers"))?;
        println!("{}", live_row(&mut run, baseline_cpu));
        runs.push(run);
    }
    let peers = peers(&args, &config)?;

    println!();
    println!("end to end, blocks of the window, from their round's scheduled time; and the publisher's block stream histograms over the whole run (bucket upper bounds):");
    println!("| subscribers | scheduled → accepted p50 / p99 ms | scheduled → received p50 / p99 ms | accepted → queued p50 / p99 ms | queued → taken for the socket p50 / p99 ms |");
    println!("|---|---|---|---|---|");
    for run in &runs {
        println!(
            "| {} × {} | {} / {} | {} / {} | {} / {} | {} / {} |",
            run.subscribers,
            run.kind.name(),
            ms(run.scheduled_to_accepted.p50),
            ms(run.scheduled_to_accepted.p99),
            ms(run.scheduled_to_received.p50),
            ms(run.scheduled_to_received.p99),
            run.accept_to_queue_ms.0,
            run.accept_to_queue_ms.1,
            run.queue_to_send_ms.0,
            run.queue_to_send_ms.1
        );
    }

    // The runs that kept up: a run that fell behind is off the scale.
    let mut series: Vec<Series> = runs
        .iter()
        .filter(|r| r.report.complete == r.subscribers)
        .filter(|r| r.subscribers == args.consumers || r.kind == Kind::Observer)
        .map(|r| {
            let mut sorted_ns = r.report.latencies.clone();
            sorted_ns.sort_unstable();
            let what = match r.kind {
                Kind::Receiver => "publish → received",
                Kind::Observer => "publish → verified",
            };
            Series {
                label: format!("dagstream, {} × {}: {what}", r.subscribers, r.kind.name()),
                sorted_ns,
            }
        })
        .collect();
    for (name, mut latencies) in peers.iter().map(|(n, l)| (n, l.clone())) {
        latencies.sort_unstable();
        series.push(Series {
            label: format!("{name}, {} consumers", args.consumers),
            sorted_ns: latencies,
        });
    }
    let plot_path = args.out.join("latency_cdf.svg");
    plot::cdf(&plot_path, "Live latency, mainnet profile (CDF)", &series)?;
    let summary = json!({
        "window_seconds": args.window,
        "baseline": summary(&baseline),
        "runs": runs.iter().map(summary).collect::<Vec<_>>(),
    });
    let summary_path = args.out.join("summary.json");
    std::fs::write(&summary_path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    println!(
        "wrote {} and {}",
        plot_path.display(),
        summary_path.display()
    );
    Ok(())
}

/// Runs the peers and prints their rows; returns their latencies.
#[cfg(feature = "peers")]
fn peers(args: &Args, config: &LiveConfig) -> anyhow::Result<Vec<(String, Vec<u64>)>> {
    use dagstream_bench::peers::{self, PeerConfig};
    let peer_config = PeerConfig {
        bursts: payloads(config.profile, 20)?,
        consumers: args.consumers,
        interval: Duration::from_millis(config.profile.round_interval_ms()),
        warmup: config.warmup,
        window: config.window,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut out = Vec::new();
    for (name, result) in [
        (
            "Redis Streams",
            runtime.block_on(peers::redis_streams(&peer_config)),
        ),
        ("NATS", runtime.block_on(peers::nats(&peer_config))),
    ] {
        match result? {
            Some(mut run) => {
                let latencies = run.report.latencies.clone();
                let complete = run.report.complete;
                println!(
                    "{}",
                    row(
                        name,
                        args.consumers,
                        run.messages_per_second,
                        &mut run.report.latencies,
                        &mut run.report.spreads,
                        complete,
                        "— | — | — | — | —"
                    )
                );
                out.push((name.to_string(), latencies));
            }
            None => println!(
                "{name}: not installed, skipped (apt-get install redis-server nats-server)"
            ),
        }
    }
    Ok(out)
}

#[cfg(not(feature = "peers"))]
fn peers(_: &Args, _: &LiveConfig) -> anyhow::Result<Vec<(String, Vec<u64>)>> {
    println!("peers: built without the `peers` feature, skipped (--features peers)");
    Ok(Vec::new())
}

/// `rounds` rounds of the profile's blocks, as the validator signs them.
#[cfg(feature = "peers")]
fn payloads(profile: Profile, rounds: usize) -> anyhow::Result<Vec<Vec<bytes::Bytes>>> {
    let (_, mut producer) = live::producer(
        profile,
        std::sync::Arc::new(dagstream_store::MemStore::new()),
    )?;
    let mut bursts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let round = producer.produce_round()?;
        bursts.push(
            round
                .blocks
                .iter()
                .map(|b| b.serialized().clone())
                .collect(),
        );
    }
    Ok(bursts)
}
