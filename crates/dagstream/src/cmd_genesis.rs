//! `dagstream genesis`: a new simulated chain.

use anyhow::{bail, Context, Result};
use dagstream_sim::{generate, CommitteeKeys, GenesisParams, Profile};
use dagstream_types::{unix_time_ms, Genesis, DEFAULT_GC_DEPTH_ROUNDS};
use std::path::Path;

pub struct GenesisArgs {
    pub profile: Profile,
    pub authorities: Option<usize>,
    pub seed: u64,
    pub round_interval_ms: Option<u64>,
    pub history_rounds: u64,
    /// Whether the committee deals randomness shares (a group key in the
    /// genesis, partials in blocks).
    pub randomness: bool,
}

/// Makes a genesis whose round `history_rounds` is now.
pub fn make(args: &GenesisArgs) -> Result<(Genesis, CommitteeKeys)> {
    let authorities = args.authorities.unwrap_or(args.profile.authorities());
    if authorities == 0 || authorities > 1_000 {
        bail!("--authorities must be between 1 and 1000, not {authorities}");
    }
    let interval = args
        .round_interval_ms
        .unwrap_or(args.profile.round_interval_ms());
    if interval == 0 {
        bail!("--round-interval-ms must be positive");
    }
    let (mut genesis, keys) = generate(&GenesisParams {
        authorities,
        round_interval_ms: interval,
        genesis_time_ms: unix_time_ms()
            .saturating_sub(args.history_rounds.saturating_mul(interval)),
        gc_depth_rounds: DEFAULT_GC_DEPTH_ROUNDS,
        seed: args.seed,
    });
    if !args.randomness {
        genesis.randomness = None;
    }
    Ok((genesis, keys))
}

/// Writes `genesis.json` and `committee-keys.json` (owner-only) into `dir`.
pub fn write(dir: &Path, genesis: &Genesis, keys: &CommitteeKeys) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let genesis_path = dir.join("genesis.json");
    if genesis_path.exists() {
        bail!(
            "{} exists already: refusing to overwrite a chain",
            genesis_path.display()
        );
    }
    std::fs::write(&genesis_path, genesis.to_json_pretty() + "\n")
        .with_context(|| format!("cannot write {}", genesis_path.display()))?;
    keys.save(&dir.join("committee-keys.json"))?;
    Ok(())
}

pub fn run(out: &Path, args: &GenesisArgs) -> Result<()> {
    let (genesis, keys) = make(args)?;
    write(out, &genesis, &keys)?;
    let committee = dagstream_types::Committee::new(genesis)?;
    println!(
        "wrote {}/genesis.json (chain {}, {} authorities) and committee-keys.json",
        out.display(),
        committee.digest(),
        committee.size()
    );
    Ok(())
}
