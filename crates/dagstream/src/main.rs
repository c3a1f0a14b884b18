//! `dagstream`: run validator and observer nodes, make genesis files,
//! inspect data directories.
//!
//! # Layout
//! - `cmd_genesis`, `cmd_validator`, `cmd_observer`, `cmd_inspect`,
//!   `cmd_store`, `cmd_tls`: one module per subcommand (`cmd_tls` also holds the TLS and
//!   token flags of the node commands); `inspect_archive`, `inspect
//!   --archive`.
//! - `config`: the TOML node configuration (`--config`,
//!   `config print-default`).
//! - `http`: `/metrics`, `/healthz` and `/status`.
//! - `shutdown`: SIGINT/SIGTERM handling.
//! - `chain`: which chain a data directory belongs to.
//! - `report`: the JSON form of a commit.
//! - `cmd_demo` and `timeline`: the demo and its plots.

mod chain;
mod cmd_demo;
mod cmd_genesis;
mod cmd_inspect;
mod cmd_observer;
mod cmd_store;
mod cmd_tls;
mod cmd_validator;
mod config;
mod epochs;
mod http;
mod inspect_archive;
mod report;
mod shutdown;
mod sink;
mod timeline;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc, not the system's malloc: a node's large, short-lived buffers
/// (batches of several MB for subscribers catching up) go back to the OS
/// once freed. With glibc's malloc, a validator whose 50 stalled
/// subscribers had gone kept 1.8 GB more than before they came; with
/// mimalloc, 30 MB (`docs/benchmarks.md`, validator memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use dagstream_sim::Profile;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "dagstream",
    version,
    about = "Validator to observer streaming for DAG-based BFT consensus"
)]
struct Cli {
    /// Log level or filter (as RUST_LOG, which takes precedence).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProfileArg {
    Small,
    Mainnet,
    Stress,
}

impl From<ProfileArg> for Profile {
    fn from(profile: ProfileArg) -> Profile {
        match profile {
            ProfileArg::Small => Profile::Small,
            ProfileArg::Mainnet => Profile::Mainnet,
            ProfileArg::Stress => Profile::Stress,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Make a new simulated chain: genesis.json and committee-keys.json.
    Genesis {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "small")]
        profile: ProfileArg,
        /// Committee size (default: the profile's).
        #[arg(long)]
        authorities: Option<usize>,
        /// Seed of the committee's keys.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Round interval (default: the profile's).
        #[arg(long)]
        round_interval_ms: Option<u64>,
        /// Place the genesis this many rounds in the past.
        #[arg(long, default_value_t = 0)]
        history_rounds: u64,
        /// A chain without randomness: no group key, and no partials in
        /// blocks.
        #[arg(long)]
        no_randomness: bool,
    },
    /// Run the simulated committee and serve its streams.
    Validator {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        listen: SocketAddr,
        /// A genesis.json (or a directory holding it and committee-keys.json)
        /// for a new data dir. Without it, a new chain is made.
        #[arg(long)]
        genesis: Option<PathBuf>,
        #[arg(long, value_enum)]
        profile: Option<ProfileArg>,
        /// Seed of a new chain's keys and DAG.
        #[arg(long)]
        seed: Option<u64>,
        /// Transactions per second (default: the profile's).
        #[arg(long)]
        tps: Option<u64>,
        /// Transaction size in bytes (default: the profile's).
        #[arg(long)]
        tx_size: Option<usize>,
        /// The committee ends each epoch after this many rounds and hands
        /// the chain to the next one (`epoch_rounds` in sim.json); 0, the
        /// default, never.
        #[arg(long)]
        epoch_rounds: Option<u64>,
        /// A new chain starts this many rounds in the past: history for
        /// observers to catch up on.
        #[arg(long, default_value_t = 0)]
        history_rounds: u64,
        /// Keep only the newest N commits, and the blocks they name
        /// (`validator.retain_commits`); 0 keeps everything. At least 100.
        #[arg(long, value_name = "N")]
        retain_commits: Option<u64>,
        /// The archive that holds the history this validator prunes
        /// (`publisher.history_archive`): named to subscribers that ask for
        /// pruned commits.
        #[arg(long, value_name = "URL")]
        history_archive: Option<String>,
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        serve: cmd_tls::ServeSecurity,
    },
    /// Follow upstreams, verify everything, persist the commit sequence.
    Observer {
        #[arg(long)]
        data_dir: PathBuf,
        /// genesis.json, or a directory holding it.
        #[arg(long)]
        genesis: PathBuf,
        /// A publisher to follow, http://HOST:PORT or https://HOST:PORT;
        /// repeat for several.
        #[arg(long = "upstream", required = true)]
        upstreams: Vec<String>,
        /// Serve the verified chain to other observers on this address.
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Append one JSON line per commit, exactly once across restarts.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Pin a checkpoint: EPOCH:DIGEST, the final checkpoint of EPOCH
        /// (`inspect --epochs` on a trusted node prints it). A hand-off of
        /// that epoch over any other checkpoint is refused. Repeat for
        /// several.
        #[arg(long = "waypoint", value_name = "EPOCH:DIGEST")]
        waypoints: Vec<dagstream_observer::Waypoint>,
        /// Upload every certified checkpoint to this history archive:
        /// file:///PATH or s3://BUCKET/PREFIX (with the standard AWS_*
        /// variables). See docs/archive.md.
        #[arg(long, value_name = "URL")]
        archive: Option<String>,
        /// Take the history after this data dir's last commit from this
        /// archive, verified as if a validator sent it, before following
        /// the upstreams.
        #[arg(long, value_name = "URL")]
        bootstrap_from: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        upstream: cmd_tls::UpstreamSecurity,
        /// For --listen: TLS and tokens of this observer's own subscribers.
        #[command(flatten)]
        serve: cmd_tls::ServeSecurity,
        #[command(flatten)]
        sink: sink::SinkArgs,
    },
    /// Show a data dir's range, verify its chain, or show one commit or
    /// checkpoint.
    Inspect {
        #[arg(long, required_unless_present = "archive")]
        data_dir: Option<PathBuf>,
        /// Verify a history archive offline instead (file:///PATH or
        /// s3://BUCKET/PREFIX): manifest, every bundle, checkpoint and
        /// certificate, hand-offs and the watermark, from --genesis alone.
        #[arg(long, value_name = "URL", requires = "genesis",
              conflicts_with_all = ["data_dir", "commit", "checkpoint", "epochs"])]
        archive: Option<String>,
        /// genesis.json (or a directory holding it), for --archive.
        #[arg(long)]
        genesis: Option<PathBuf>,
        #[arg(long, conflicts_with = "checkpoint")]
        commit: Option<u64>,
        /// Show a checkpoint of an observer's store, its commits and
        /// signers, and verify it and its certificate.
        #[arg(long, conflicts_with = "commit")]
        checkpoint: Option<u64>,
        /// List each epoch (its commits, committee and the checkpoint that
        /// handed it over), with the whole chain verified across them.
        #[arg(long, conflicts_with_all = ["commit", "checkpoint"])]
        epochs: bool,
        #[arg(long)]
        json: bool,
    },
    /// See the design work: a validator with history and three observers
    /// (catching up, slow consumer, restarted), a live dashboard, checks,
    /// and a report with plots.
    Demo {
        #[arg(long, default_value_t = 60)]
        duration_secs: u64,
        #[arg(long, default_value = "demo-report")]
        report: PathBuf,
    },
    /// Write a throwaway CA, server and client certificates and a bearer
    /// token, for trying TLS and tokens locally.
    Tls {
        #[arg(long)]
        out: PathBuf,
        /// A name or address the server certificate is valid for; repeat
        /// for several.
        #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hosts: Vec<String>,
    },
    /// A data dir's store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Check the store (index integrity, the whole chain); if it is
    /// damaged, move it aside so that the node starts over from its
    /// genesis.
    Repair {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting with its default, as TOML.
    PrintDefault,
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(&cli.log_level, cli.log_format);
    if let Err(err) = run(cli.command) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command {
        Command::Genesis {
            out,
            profile,
            authorities,
            seed,
            round_interval_ms,
            history_rounds,
            no_randomness,
        } => cmd_genesis::run(
            &out,
            &cmd_genesis::GenesisArgs {
                profile: profile.into(),
                authorities,
                seed,
                round_interval_ms,
                history_rounds,
                randomness: !no_randomness,
            },
        ),
        Command::Validator {
            data_dir,
            listen,
            genesis,
            profile,
            seed,
            tps,
            tx_size,
            epoch_rounds,
            history_rounds,
            retain_commits,
            history_archive,
            metrics_listen,
            config,
            serve,
        } => runtime.block_on(cmd_validator::run(cmd_validator::ValidatorArgs {
            data_dir,
            listen,
            genesis,
            profile: profile.map(Into::into),
            seed,
            tps,
            tx_size,
            epoch_rounds,
            history_rounds,
            retain_commits,
            history_archive,
            metrics_listen,
            config,
            serve,
        })),
        Command::Observer {
            data_dir,
            genesis,
            upstreams,
            listen,
            metrics_listen,
            output,
            waypoints,
            archive,
            bootstrap_from,
            config,
            upstream,
            serve,
            sink,
        } => runtime.block_on(cmd_observer::run(cmd_observer::ObserverArgs {
            data_dir,
            genesis,
            upstreams,
            listen,
            metrics_listen,
            output,
            config,
            serve,
            upstream,
            waypoints,
            archive,
            bootstrap_from,
            sink,
        })),
        Command::Inspect {
            archive: Some(url),
            genesis: Some(genesis),
            json,
            ..
        } => runtime.block_on(inspect_archive::run(&url, &genesis, json)),
        Command::Inspect {
            data_dir: Some(data_dir),
            commit,
            checkpoint,
            epochs,
            json,
            ..
        } => {
            let target = match (commit, checkpoint) {
                _ if epochs => cmd_inspect::Target::Epochs,
                (Some(index), _) => cmd_inspect::Target::Commit(index),
                (None, Some(sequence)) => cmd_inspect::Target::Checkpoint(sequence),
                (None, None) => cmd_inspect::Target::Chain,
            };
            cmd_inspect::run(&data_dir, target, json)
        }
        Command::Inspect { .. } => anyhow::bail!("give --data-dir, or --archive with --genesis"),
        Command::Demo {
            duration_secs,
            report,
        } => {
            let passed = runtime.block_on(cmd_demo::run(
                std::time::Duration::from_secs(duration_secs.max(5)),
                &report,
            ))?;
            if !passed {
                anyhow::bail!(
                    "the demo's checks failed; see {}/summary.json",
                    report.display()
                );
            }
            Ok(())
        }
        Command::Tls { out, hosts } => cmd_tls::run(&out, &hosts),
        Command::Store {
            command: StoreCommand::Repair { data_dir },
        } => cmd_store::run(&data_dir),
        Command::Config {
            command: ConfigCommand::PrintDefault,
        } => {
            print!("{}", config::NodeConfig::default_toml());
            Ok(())
        }
    }
}
