//! Runs the simulated committee against the wall clock and prints its
//! commits.
//!
//! ```text
//! cargo run --release -p dagstream-sim --example committee -- \
//!     [--seconds 5] [--history-rounds 100] [--profile small] [--seed 0] [--data-dir DIR]
//! ```
//!
//! The genesis is placed `--history-rounds` rounds in the past, so the
//! committee first produces that history as fast as it can, then one round
//! per interval. With `--data-dir`, the chain is kept in a redb store and a
//! second run continues it.

use dagstream_sim::{generate, CommitteeKeys, GenesisParams, Profile, Simulator};
use dagstream_store::{SegmentStore, Store};
use dagstream_types::{unix_time_ms, BlockLimits, Committee, Genesis, DEFAULT_GC_DEPTH_ROUNDS};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds produced per step while catching up, so that progress is printed
/// and persisted in bounded chunks.
const MAX_ROUNDS_PER_STEP: usize = 64;

struct Args {
    seconds: u64,
    history_rounds: u64,
    profile: Profile,
    seed: u64,
    data_dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 5,
        history_rounds: 100,
        profile: Profile::Small,
        seed: 0,
        data_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--seconds" => args.seconds = number(value()?)?,
            "--history-rounds" => args.history_rounds = number(value()?)?,
            "--seed" => args.seed = number(value()?)?,
            "--profile" => args.profile = value()?.parse().map_err(|e| format!("{e}"))?,
            "--data-dir" => args.data_dir = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The genesis and keys in `dir`, or new ones written there.
fn genesis_in(
    dir: Option<&PathBuf>,
    make: impl Fn() -> (Genesis, CommitteeKeys),
) -> (Genesis, CommitteeKeys) {
    let Some(dir) = dir else { return make() };
    let (genesis_path, keys_path) = (dir.join("genesis.json"), dir.join("committee-keys.json"));
    if genesis_path.exists() {
        let genesis = Genesis::load(&genesis_path).expect("readable genesis.json");
        let keys = std::fs::read_to_string(&keys_path).expect("readable committee-keys.json");
        return (
            genesis,
            CommitteeKeys::from_json(&keys).expect("valid committee-keys.json"),
        );
    }
    let (genesis, keys) = make();
    std::fs::create_dir_all(dir).expect("data dir can be created");
    std::fs::write(&genesis_path, genesis.to_json_pretty()).expect("genesis.json written");
    keys.save(&keys_path).expect("committee-keys.json written");
    (genesis, keys)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
    };
    let interval = args.profile.round_interval_ms();
    let (genesis, keys) = genesis_in(args.data_dir.as_ref(), || {
        generate(&GenesisParams {
            authorities: args.profile.authorities(),
            round_interval_ms: interval,
            genesis_time_ms: unix_time_ms().saturating_sub(args.history_rounds * interval),
            gc_depth_rounds: DEFAULT_GC_DEPTH_ROUNDS,
            seed: args.seed,
        })
    });
    let committee = Arc::new(Committee::new(genesis).expect("valid genesis"));
    let config = args.profile.sim_config(args.seed);
    let limits = BlockLimits::default();
    let store: Option<SegmentStore> = args
        .data_dir
        .as_ref()
        .map(|dir| SegmentStore::open(&dir.join("store")).expect("store opens"));
    let mut sim = match &store {
        Some(store) => Simulator::recover(committee.clone(), keys, config, &limits, store),
        None => Simulator::new(committee.clone(), keys, config, &limits),
    }
    .unwrap_or_else(|err| {
        eprintln!("error: {err}");
        std::process::exit(1);
    });
    println!(
        "{} authorities, {interval} ms rounds, chain {}; starting at round {}",
        committee.size(),
        committee.digest(),
        sim.next_round()
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let (mut rounds, mut commits) = (0u64, 0u64);
    while Instant::now() < deadline {
        let outputs = sim
            .produce_due(unix_time_ms(), MAX_ROUNDS_PER_STEP)
            .expect("round produced");
        if outputs.is_empty() {
            let wait = sim.next_round_time_ms().saturating_sub(unix_time_ms());
            std::thread::sleep(Duration::from_millis(wait.clamp(1, interval)));
            continue;
        }
        for output in &outputs {
            if let Some(store) = &store {
                store.write(sim.batch_for(output)).expect("round persisted");
            }
            rounds += 1;
            for sub_dag in &output.commits {
                commits += 1;
                let leader = sub_dag.commit.leader();
                let txs: usize = sub_dag.blocks.iter().map(|b| b.transactions().len()).sum();
                println!(
                    "commit {:>6}  leader r{}/a{}  blocks {:>3}  txs {:>5}  digest {}",
                    sub_dag.index(),
                    leader.round,
                    leader.author,
                    sub_dag.blocks.len(),
                    txs,
                    sub_dag.commit.digest()
                );
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{rounds} rounds and {commits} commits in {elapsed:.1} s; next round {}",
        sim.next_round()
    );
}
