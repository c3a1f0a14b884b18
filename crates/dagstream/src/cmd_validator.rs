//! `dagstream validator`: the simulated committee and its publisher.

use crate::cmd_genesis::{self, GenesisArgs};
use crate::cmd_tls::ServeSecurity;
use crate::config::NodeConfig;
use crate::{chain, http, shutdown};
use anyhow::{bail, Context, Result};
use dagstream_publisher::ConsensusSource;
use dagstream_sim::{CommitteeKeys, Profile, SimConfig};
use dagstream_types::{BlockLimits, Committee, Genesis};
use dagstream_validator::Producer;
use prometheus::{IntGauge, Registry};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct ValidatorArgs {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub genesis: Option<PathBuf>,
    pub profile: Option<Profile>,
    pub seed: Option<u64>,
    pub tps: Option<u64>,
    pub tx_size: Option<usize>,
    pub epoch_rounds: Option<u64>,
    pub history_rounds: u64,
    /// Retention, over the config's.
    pub retain_commits: Option<u64>,
    /// The archive named to subscribers of pruned commits, over the
    /// config's.
    pub history_archive: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub config: Option<PathBuf>,
    pub serve: ServeSecurity,
}

/// The data dir's genesis and keys: already there, copied from `--genesis`,
/// or made now.
fn resolve_genesis(args: &ValidatorArgs) -> Result<(Genesis, CommitteeKeys)> {
    let dir = &args.data_dir;
    let here = dir.join("genesis.json");
    if here.exists() {
        let genesis = Genesis::load(&here)?;
        if let Some(other) = &args.genesis {
            let given = Genesis::load(other)?;
            if given != genesis {
                bail!(
                    "--genesis {} is not the genesis of the data dir {}: a data dir serves one chain",
                    other.display(),
                    dir.display()
                );
            }
        }
        let keys = CommitteeKeys::load(&dir.join("committee-keys.json"))?;
        return Ok((genesis, keys));
    }
    let (genesis, keys) = match &args.genesis {
        Some(source) => {
            let genesis = Genesis::load(source)?;
            let keys_dir = if source.is_dir() {
                source.clone()
            } else {
                source.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let keys =
                CommitteeKeys::load(&keys_dir.join("committee-keys.json")).with_context(|| {
                    format!(
                        "the simulated committee needs its keys next to {}",
                        source.display()
                    )
                })?;
            (genesis, keys)
        }
        None => cmd_genesis::make(&GenesisArgs {
            profile: args.profile.unwrap_or_default(),
            authorities: None,
            seed: args.seed.unwrap_or(0),
            round_interval_ms: None,
            history_rounds: args.history_rounds,
            randomness: true,
        })?,
    };
    cmd_genesis::write(dir, &genesis, &keys)?;
    Ok((genesis, keys))
}

/// The simulator config of the data dir (`sim.json`), made on first start
/// from the profile and flags. Flags given later must not change the chain.
fn resolve_sim_config(args: &ValidatorArgs) -> Result<SimConfig> {
    let path = args.data_dir.join("sim.json");
    let mut config = if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?
    } else {
        args.profile
            .unwrap_or_default()
            .sim_config(args.seed.unwrap_or(0))
    };
    if let Some(tps) = args.tps {
        config.tps = tps;
    }
    if let Some(size) = args.tx_size {
        config.tx_size_bytes = size;
    }
    if let Some(rounds) = args.epoch_rounds {
        config.epoch_rounds = rounds;
    }
    if !path.exists() {
        std::fs::write(&path, serde_json::to_string_pretty(&config)? + "\n")?;
    }
    Ok(config)
}

pub async fn run(args: ValidatorArgs) -> Result<()> {
    // First of all, so that a signal during startup is also graceful.
    let signals = shutdown::on_signals();
    let mut node_config = NodeConfig::load(args.config.as_deref())?;
    args.serve.apply(&mut node_config.publisher)?;
    if let Some(keep) = args.retain_commits {
        node_config.validator.retain_commits = keep;
    }
    node_config.validator.validate()?;
    if args.history_archive.is_some() {
        node_config.publisher.history_archive = args.history_archive.clone();
    }
    if let Some(url) = &node_config.publisher.history_archive {
        dagstream_archive::Objects::check_url(url).context("invalid history archive")?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let (genesis, keys) = resolve_genesis(&args)?;
    let committee = Arc::new(Committee::new(genesis)?);
    let sim_config = resolve_sim_config(&args)?;
    let store = chain::open_store(&args.data_dir)?;
    chain::claim(store.as_ref(), &committee, &args.data_dir)?;
    let producer = Producer::new(
        committee.clone(),
        keys,
        sim_config,
        &BlockLimits::default(),
        store.clone(),
    )
    .context(
        "cannot continue the chain in this data dir (were --tps, --tx-size or --seed changed?)",
    )?;
    tracing::info!(
        chain = %committee.digest(),
        next_round = producer.simulator().next_round(),
        "validator starting"
    );

    let registry = Registry::new();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is the port in use? pick another with --listen",
                args.listen
            )
        })?;
    let handle = dagstream_validator::start(
        producer,
        dagstream_validator::system_clock(),
        listener,
        node_config.publisher,
        &node_config.validator,
        &registry,
    )?;
    tracing::info!(address = %handle.addr, "serving block and commit streams");

    let round = IntGauge::new(
        "dagstream_validator_highest_round",
        "Highest round produced",
    )?;
    let commit = IntGauge::new(
        "dagstream_validator_highest_commit",
        "Highest commit decided",
    )?;
    let lowest = IntGauge::new(
        "dagstream_validator_lowest_commit",
        "Lowest commit retained (rises with --retain-commits)",
    )?;
    registry.register(Box::new(round.clone()))?;
    registry.register(Box::new(commit.clone()))?;
    registry.register(Box::new(lowest.clone()))?;
    let source = handle.source.clone();
    let publisher = handle.publisher().clone();
    let status = Arc::new(move || {
        json!({
            "role": "validator",
            "epoch": source.epochs().current().epoch(),
            "highest_round": source.highest_round(),
            "highest_commit": source.highest_commit_index(),
            "highest_certified_commit": publisher.highest_certified(),
            "lowest_commit": source.lowest_commit_index().ok(),
            "subscribers": publisher.open_streams(),
        })
    });
    let metrics_server = http::serve_if(
        args.metrics_listen,
        &registry,
        status,
        shutdown::wait(signals.clone()),
    )
    .await?;
    let source = handle.source.clone();
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    let mut stop = signals.clone();
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                round.set(source.highest_round() as i64);
                commit.set(source.highest_commit_index() as i64);
                if let Ok(index) = source.lowest_commit_index() {
                    lowest.set(index as i64);
                }
            }
            _ = stop.changed() => break,
        }
    }
    handle.stop().await?;
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    tracing::info!("validator stopped");
    Ok(())
}
