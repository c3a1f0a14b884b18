use dagstream_dag::{DagConfig, DagConsensus, Decision, DecisionRule};
use dagstream_sim::{
    derive_key, generate, CommitteeKeys, GenesisParams, Profile, RoundOutput, SimConfig, SimError,
    Simulator,
};
use dagstream_types::{
    BlockLimits, CheckpointBuilder, CheckpointSummary, CommitRef, Committee, Stake, SystemMessage,
    VerifiedBlock,
};
use std::collections::HashMap;
use std::sync::Arc;

const GENESIS_TIME_MS: u64 = 1_700_000_000_000;

fn params(authorities: usize, seed: u64) -> GenesisParams {
    GenesisParams {
        authorities,
        round_interval_ms: 100,
        genesis_time_ms: GENESIS_TIME_MS,
        gc_depth_rounds: 50,
        seed,
    }
}

fn simulator(params: &GenesisParams, config: SimConfig) -> Simulator {
    let (genesis, keys) = generate(params);
    let committee = Arc::new(Committee::new(genesis).unwrap());
    Simulator::new(committee, keys, config, &BlockLimits::default()).unwrap()
}

fn run(sim: &mut Simulator, rounds: usize) -> Vec<RoundOutput> {
    (0..rounds).map(|_| sim.produce_round().unwrap()).collect()
}

fn commits(outputs: &[RoundOutput]) -> Vec<CommitRef> {
    outputs
        .iter()
        .flat_map(|o| o.commits.iter().map(|c| c.reference()))
        .collect()
}

#[test]
fn same_genesis_and_seed_give_identical_chains() {
    let config = Profile::Small.sim_config(11);
    let mut first = simulator(&params(4, 11), config.clone());
    // The second instance reaches the same rounds through the clock, in
    // uneven chunks, as a validator started later would.
    let mut second = simulator(&params(4, 11), config.clone());
    let a = run(&mut first, 200);
    let mut b = Vec::new();
    for now in [
        GENESIS_TIME_MS + 50,
        GENESIS_TIME_MS + 7_300,
        GENESIS_TIME_MS + 20_000,
    ] {
        b.extend(second.produce_due(now, usize::MAX).unwrap());
    }
    assert_eq!(b.len(), 200);
    for (x, y) in a.iter().zip(&b) {
        let bytes = |o: &RoundOutput| -> Vec<_> {
            o.blocks.iter().map(|b| b.serialized().clone()).collect()
        };
        assert_eq!(bytes(x), bytes(y), "round {}", x.round);
    }
    let chain = commits(&a);
    assert!(chain.len() > 150, "{} commits in 200 rounds", chain.len());
    assert_eq!(chain, commits(&b));

    let mut other_seed = simulator(&params(4, 11), Profile::Small.sim_config(12));
    assert_ne!(commits(&run(&mut other_seed, 200)), chain);
}

/// The chain of a fixed genesis and seed, pinned across versions: a change
/// here means validators of different versions would serve different chains.
#[test]
fn chain_stability_vector() {
    let mut sim = simulator(&params(4, 7), Profile::Small.sim_config(7));
    let chain = commits(&run(&mut sim, 100));
    let (index, digest) = (chain[49].index, chain[49].digest);
    assert_eq!(index, 50);
    assert_eq!(
        digest.to_string(),
        "eee092af561976025024cbc5f2f673b4d29639cc7e4866f257d38499f19dd8b3"
    );
}

/// Every checkpoint the commits close is signed by every live authority,
/// in its block of one or two rounds after the round that closed it, and
/// every signature verifies over the summary an observer forms from the
/// same commits.
#[test]
fn every_closed_checkpoint_is_signed_by_every_live_authority() {
    let mut config = Profile::Small.sim_config(5);
    config.crashed = vec![3];
    let mut sim = simulator(&params(7, 5), config);
    let outputs = run(&mut sim, 120);
    let committee = sim.committee().clone();
    let mut builder = CheckpointBuilder::new(committee.epoch());
    let mut closed_at = HashMap::new();
    for output in &outputs {
        let mut closed = Vec::new();
        for commit in &output.commits {
            let c = &commit.commit;
            let randomness = output
                .randomness
                .iter()
                .find(|(index, _)| *index == c.index())
                .map_or(vec![], |(_, outputs)| outputs.clone());
            closed.extend(
                builder
                    .place(c.index(), c.digest(), c.timestamp_ms(), &randomness)
                    .closed,
            );
        }
        assert_eq!(closed, output.checkpoints, "round {}", output.round);
        for summary in closed {
            closed_at.insert(summary.sequence, (output.round, summary));
        }
    }
    assert!(closed_at.len() > 40, "{} checkpoints", closed_at.len());
    let mut signed: HashMap<(u64, u32), u64> = HashMap::new();
    let mut late = 0;
    for block in outputs.iter().flat_map(|o| &o.blocks) {
        for message in block.system_messages() {
            let SystemMessage::CheckpointSignature {
                sequence,
                summary_digest,
                signature,
            } = message
            else {
                continue;
            };
            let (round, summary) = closed_at[sequence];
            assert_eq!(*summary_digest, summary.digest());
            assert!(CheckpointSummary::verify_signature(
                summary_digest,
                block.author(),
                signature,
                &committee
            ));
            let delay = block.round() - round;
            assert!((1..=2).contains(&delay), "delay {delay}");
            late += usize::from(delay == 2);
            assert!(signed.insert((*sequence, block.author()), delay).is_none());
        }
    }
    // Every live authority signed each checkpoint whose signatures were
    // all due within the run.
    let last_round = outputs.last().unwrap().round;
    for (sequence, (round, _)) in &closed_at {
        if round + 2 <= last_round {
            for author in [0, 1, 2, 4, 5, 6] {
                assert!(
                    signed.contains_key(&(*sequence, author)),
                    "{sequence} by {author}"
                );
            }
            assert!(!signed.contains_key(&(*sequence, 3)));
        }
    }
    // About a fifth come a round late.
    let share = late * 100 / signed.len();
    assert!((10..=30).contains(&share), "{share}% late");

    // The committee's highest certified checkpoint after each round is the
    // highest whose signatures in blocks so far carry a quorum of stake.
    let mut stake: HashMap<u64, Stake> = HashMap::new();
    let mut highest = None;
    for output in &outputs {
        for block in &output.blocks {
            for message in block.system_messages() {
                let SystemMessage::CheckpointSignature { sequence, .. } = message else {
                    continue;
                };
                let total = stake.entry(*sequence).or_default();
                *total += committee.stake(block.author());
                if committee.reached_quorum(*total) {
                    highest = highest.max(Some(*sequence));
                }
            }
        }
        assert_eq!(
            output.checkpoint_state.highest_certified, highest,
            "round {}",
            output.round
        );
    }
    assert!(highest > Some(30), "{highest:?}");
}

#[test]
fn every_block_passes_full_verification_and_observers_derive_the_same_commits() {
    let mut sim = simulator(&params(7, 3), Profile::Small.sim_config(3));
    let outputs = run(&mut sim, 120);
    let committee = sim.committee().clone();
    let mut observer = DagConsensus::new(committee.clone(), DagConfig::default());
    let mut derived = Vec::new();
    for output in &outputs {
        // Received from the wire: re-verified from the bytes alone, and fed
        // newest author first to show order within a round does not matter.
        let received: Vec<VerifiedBlock> = output
            .blocks
            .iter()
            .rev()
            .map(|b| {
                VerifiedBlock::verify(b.serialized().clone(), &committee, &BlockLimits::default())
                    .unwrap()
            })
            .collect();
        let out = observer.add_blocks(received).unwrap();
        derived.extend(out.commits.iter().map(|c| c.reference()));
    }
    assert_eq!(derived, commits(&outputs));
}

#[test]
fn every_commit_is_voted_by_a_quorum_in_the_next_round() {
    let mut sim = simulator(&params(4, 5), Profile::Small.sim_config(5));
    let outputs = run(&mut sim, 100);
    let committee = sim.committee().clone();
    let mut votes: HashMap<CommitRef, Stake> = HashMap::new();
    for block in outputs.iter().flat_map(|o| &o.blocks) {
        for vote in block.commit_votes() {
            *votes.entry(*vote).or_default() += committee.stake(block.author());
        }
    }
    for window in outputs.windows(2) {
        let (decided, next) = (&window[0], &window[1]);
        for commit in &decided.commits {
            // Every block of the next round, and only those, votes for it.
            let voters: Vec<_> = next
                .blocks
                .iter()
                .filter(|b| b.commit_votes().contains(&commit.reference()))
                .collect();
            assert_eq!(voters.len(), next.blocks.len(), "{:?}", commit.reference());
            assert_eq!(votes[&commit.reference()], committee.total_stake());
        }
    }
}

#[test]
fn crashed_and_slow_authorities_exercise_skips_and_the_indirect_rule() {
    // Sparse parents make undecided leaders common.
    let config = SimConfig {
        crashed: vec![0],
        slow: vec![3],
        extra_parent_percent: 50,
        ..Profile::Small.sim_config(21)
    };
    let mut sim = simulator(&params(10, 21), config);
    let outputs = run(&mut sim, 300);
    let committee = sim.committee().clone();
    let decisions: Vec<&Decision> = outputs.iter().flat_map(|o| &o.decisions).collect();
    // Leaders are decided in round order with no gap; sparse parents leave
    // a tail of undecided leaders waiting for their anchors.
    let rounds: Vec<_> = decisions.iter().map(|d| d.round()).collect();
    assert_eq!(rounds, (1..=decisions.len() as u64).collect::<Vec<_>>());
    assert!(decisions.len() >= 250, "{} decisions", decisions.len());
    let leader = |d: &Decision| match d {
        Decision::Commit { leader, .. } => leader.author(),
        Decision::Skip { author, .. } => *author,
    };
    for decision in &decisions {
        if leader(decision) == 0 {
            assert!(
                matches!(decision, Decision::Skip { .. }),
                "crashed leader committed"
            );
        }
    }
    assert!(decisions
        .iter()
        .any(|d| leader(d) == 3 && matches!(d, Decision::Skip { .. })));
    assert!(decisions.iter().any(|d| d.rule() == DecisionRule::Indirect));
    // The crashed authority has no blocks; the slow one's are all committed.
    let committed: Vec<_> = outputs
        .iter()
        .flat_map(|o| o.commits.iter().flat_map(|c| &c.blocks))
        .map(|b| b.reference())
        .collect();
    assert!(committed.iter().all(|b| b.author != 0));
    for block in outputs[..200].iter().flat_map(|o| &o.blocks) {
        assert!(
            committed.contains(&block.reference()),
            "{block:?} never committed"
        );
    }
    assert_eq!(committee.size(), 10);
}

#[test]
fn rounds_are_produced_when_due() {
    let mut sim = simulator(&params(4, 1), Profile::Small.sim_config(1));
    assert!(sim
        .produce_due(GENESIS_TIME_MS + 99, 100)
        .unwrap()
        .is_empty());
    let due = sim.produce_due(GENESIS_TIME_MS + 2_050, 100).unwrap();
    assert_eq!(
        due.iter().map(|o| o.round).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert!(sim
        .produce_due(GENESIS_TIME_MS + 2_099, 100)
        .unwrap()
        .is_empty());
    // A long backlog comes in bounded chunks.
    assert_eq!(
        sim.produce_due(GENESIS_TIME_MS + 60_000, 7).unwrap().len(),
        7
    );
    assert_eq!(sim.next_round(), 28);
    // Timestamps follow the schedule, not the wall clock.
    for block in &due[4].blocks {
        let scheduled = GENESIS_TIME_MS + 5 * 100;
        assert!((scheduled..=scheduled + 10).contains(&block.timestamp_ms()));
    }
}

#[test]
fn load_follows_the_configured_rate() {
    let mut sim = simulator(
        &params(4, 2),
        SimConfig {
            tps: 1_000,
            tx_size_bytes: 100,
            ..SimConfig::default()
        },
    );
    let outputs = run(&mut sim, 50);
    let txs: Vec<_> = outputs
        .iter()
        .flat_map(|o| &o.blocks)
        .flat_map(|b| b.transactions())
        .collect();
    // 1,000 TPS over 50 rounds of 100 ms, spread over 4 authorities, each
    // block's count being 25 exactly (no fractional part).
    assert_eq!(txs.len(), 5_000);
    assert!(txs.iter().all(|t| t.0.len() == 100));
}

#[test]
fn profiles_fit_the_default_block_limits() {
    for profile in [Profile::Small, Profile::Mainnet, Profile::Stress] {
        let params = GenesisParams {
            authorities: profile.authorities(),
            round_interval_ms: profile.round_interval_ms(),
            ..params(0, 1)
        };
        let mut sim = simulator(&params, profile.sim_config(1));
        let output = sim.produce_round().unwrap();
        assert_eq!(output.blocks.len(), profile.authorities(), "{profile}");
        assert_eq!(profile.to_string().parse::<Profile>().unwrap(), profile);
    }
}

#[test]
fn bad_configs_are_refused_with_a_specific_error() {
    let (genesis, keys) = generate(&params(4, 1));
    let committee = Arc::new(Committee::new(genesis).unwrap());
    let limits = BlockLimits::default();
    let new = |config: SimConfig| Simulator::new(committee.clone(), keys.clone(), config, &limits);

    let two_down = SimConfig {
        crashed: vec![0],
        slow: vec![1],
        ..SimConfig::default()
    };
    assert!(matches!(
        new(two_down),
        Err(SimError::NoLiveQuorum {
            stake: 2,
            quorum: 3
        })
    ));
    assert!(matches!(
        new(SimConfig {
            crashed: vec![4],
            ..SimConfig::default()
        }),
        Err(SimError::UnknownAuthority {
            option: "crashed",
            authority: 4,
            committee_size: 4
        })
    ));
    assert!(matches!(
        new(SimConfig {
            tps: 10_000_000,
            tx_size_bytes: 1,
            ..SimConfig::default()
        }),
        Err(SimError::TooManyTransactions {
            per_block: 250_000,
            max: 10_000,
            ..
        })
    ));
    assert!(matches!(
        new(SimConfig {
            tps: 10_000,
            tx_size_bytes: 100_000,
            ..SimConfig::default()
        }),
        Err(SimError::BlocksTooLarge { .. })
    ));
    assert!(matches!(
        new(SimConfig {
            extra_parent_percent: 101,
            ..SimConfig::default()
        }),
        Err(SimError::InvalidConfig { .. })
    ));
    let mut wrong = keys.keys().to_vec();
    wrong[2] = derive_key(99, 2);
    assert!(matches!(
        Simulator::new(
            committee.clone(),
            CommitteeKeys::new(wrong),
            SimConfig::default(),
            &limits
        ),
        Err(SimError::KeyMismatch { authority: 2 })
    ));
    assert!(matches!(
        Simulator::new(
            committee,
            CommitteeKeys::new(vec![]),
            SimConfig::default(),
            &limits
        ),
        Err(SimError::WrongKeyCount {
            expected: 4,
            got: 0
        })
    ));
}

#[test]
fn committee_keys_round_trip_through_json() {
    let (genesis, keys) = generate(&params(4, 9));
    let committee = Committee::new(genesis).unwrap();
    let text = keys.to_json_pretty();
    let back = CommitteeKeys::from_json(&text).unwrap();
    back.check(&committee).unwrap();
    assert_eq!(back.to_json_pretty(), text);
    assert!(matches!(
        CommitteeKeys::from_json(r#"{"private_keys": ["zz"]}"#),
        Err(SimError::InvalidConfig { .. })
    ));
}

#[test]
fn committee_keys_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("committee-keys.json");
    let (genesis, keys) = generate(&params(4, 9));
    keys.save(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    CommitteeKeys::load(&path)
        .unwrap()
        .check(&Committee::new(genesis).unwrap())
        .unwrap();
    assert!(matches!(
        CommitteeKeys::load(&dir.path().join("missing.json")),
        Err(SimError::KeysFile { .. })
    ));
}
