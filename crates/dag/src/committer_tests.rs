//! Commit rule tests on hand-built DAGs.

use crate::test_dag::DagBuilder;
use crate::{DagConfig, DagConsensus, Decision, DecisionRule};
use dagstream_types::{AuthorityIndex, CommittedSubDag, ConsensusState, Digest, Round};

/// Feeds every block of `dag` to a fresh core.
fn run(dag: &DagBuilder) -> (Vec<Decision>, Vec<CommittedSubDag>) {
    let mut core = DagConsensus::new(dag.committee(), DagConfig::default());
    let output = core.add_blocks(dag.blocks().to_vec()).unwrap();
    assert_eq!(output.accepted.len(), dag.blocks().len());
    (output.decisions, output.commits)
}

/// `(round, committed?, rule)` per decision.
fn outline(decisions: &[Decision]) -> Vec<(Round, bool, DecisionRule)> {
    decisions
        .iter()
        .map(|d| (d.round(), matches!(d, Decision::Commit { .. }), d.rule()))
        .collect()
}

fn decision_at(decisions: &[Decision], round: Round) -> &Decision {
    decisions
        .iter()
        .find(|d| d.round() == round)
        .unwrap_or_else(|| panic!("round {round} undecided"))
}

fn others(all: usize, excluded: AuthorityIndex) -> Vec<AuthorityIndex> {
    (0..all as AuthorityIndex)
        .filter(|a| *a != excluded)
        .collect()
}

/// Asserts the hash chain, the timestamp rule and the sub-DAG order.
fn assert_chain(commits: &[CommittedSubDag]) {
    let mut previous: Option<&CommittedSubDag> = None;
    for sub_dag in commits {
        let commit = sub_dag.commit.commit();
        assert_eq!(commit.index, previous.map_or(1, |p| p.index() + 1));
        assert_eq!(
            commit.previous_digest,
            previous.map_or(Digest::ZERO, |p| p.commit.digest())
        );
        let previous_ts = previous.map_or(0, |p| p.commit.timestamp_ms());
        assert_eq!(
            commit.timestamp_ms,
            sub_dag.leader().timestamp_ms().max(previous_ts)
        );
        let refs: Vec<_> = sub_dag.blocks.iter().map(|b| b.reference()).collect();
        assert_eq!(commit.blocks, refs);
        assert!(refs.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert_eq!(*refs.last().unwrap(), commit.leader, "leader last");
        previous = Some(sub_dag);
    }
}

#[test]
fn direct_commit_of_every_leader_in_a_full_dag() {
    let mut dag = DagBuilder::new(4);
    dag.layers(1..=10);
    let (decisions, commits) = run(&dag);

    // Round 9 has votes at round 10 but no certificates yet.
    let expected: Vec<_> = (1..=8).map(|r| (r, true, DecisionRule::Direct)).collect();
    assert_eq!(outline(&decisions), expected);
    assert_chain(&commits);
    for (i, sub_dag) in commits.iter().enumerate() {
        let round = i as Round + 1;
        assert_eq!(
            sub_dag.commit.leader(),
            dag.block(round, dag.leader(round)).reference()
        );
        // The first leader commits alone (genesis is never committed); every
        // later one also commits the three non-leaders of the round before.
        assert_eq!(sub_dag.blocks.len(), if round == 1 { 1 } else { 4 });
    }
}

#[test]
fn direct_skip_when_a_quorum_does_not_vote() {
    let mut dag = DagBuilder::new(4);
    dag.layers(1..=3);
    let leader = dag.leader(3);
    dag.round(4).skip_parent(leader).build();
    dag.layers(5..=8);
    let (decisions, commits) = run(&dag);

    assert_eq!(
        outline(&decisions),
        (1..=6)
            .map(|r| (r, r != 3, DecisionRule::Direct))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        decision_at(&decisions, 3),
        &Decision::Skip {
            round: 3,
            author: leader,
            rule: DecisionRule::Direct
        }
    );
    assert_chain(&commits);
    // The skipped leader's block is still committed, by a later leader that
    // reaches it through its author's next block.
    let skipped = dag.block(3, leader).reference();
    assert!(commits
        .iter()
        .any(|c| c.commit.commit().blocks.contains(&skipped)));
}

#[test]
fn indirect_commit_through_a_certificate_in_the_anchor_history() {
    let mut dag = DagBuilder::new(4);
    dag.layers(1..=3);
    let l = dag.leader(3);
    let rest = others(4, l);
    let (x, y, z) = (rest[0], rest[1], rest[2]);
    // Round 4: l, x and y vote; z does not: no quorum to skip.
    dag.round(4).parents(z, &others(4, l)).build();
    // Round 5: only y's block sees all three votes, so there is exactly one
    // certificate: no quorum to commit directly.
    dag.round(5)
        .parents(l, &[l, x, z])
        .parents(x, &[x, l, z])
        .parents(z, &[z, l, x])
        .parents(y, &[y, l, x])
        .build();
    // Round 6's leader references y's certificate and is committed directly.
    dag.layers(6..=8);
    let (decisions, commits) = run(&dag);

    match decision_at(&decisions, 3) {
        Decision::Commit { leader, rule } => {
            assert_eq!(leader.reference(), dag.block(3, l).reference());
            assert_eq!(*rule, DecisionRule::Indirect);
        }
        other => panic!("expected an indirect commit, got {other:?}"),
    }
    assert_eq!(
        decision_at(&decisions, 6),
        &Decision::Commit {
            leader: dag.block(6, dag.leader(6)),
            rule: DecisionRule::Direct
        }
    );
    assert_chain(&commits);
    assert!(commits
        .iter()
        .any(|c| c.commit.leader() == dag.block(3, l).reference()));
}

#[test]
fn indirect_skip_when_the_anchor_sees_no_certificate() {
    let mut dag = DagBuilder::new(4);
    dag.layers(1..=3);
    let l = dag.leader(3);
    let rest = others(4, l);
    let (y, z) = (rest[1], rest[2]);
    // Round 4: l and x vote, y and z do not: neither a skip quorum nor
    // enough votes for any certificate.
    dag.round(4)
        .parents(y, &others(4, l))
        .parents(z, &others(4, l))
        .build();
    dag.layers(5..=8);
    let (decisions, commits) = run(&dag);

    assert_eq!(
        decision_at(&decisions, 3),
        &Decision::Skip {
            round: 3,
            author: l,
            rule: DecisionRule::Indirect
        }
    );
    assert_eq!(decisions.len(), 6, "rounds 1 to 6 decided");
    assert_chain(&commits);
    assert!(commits
        .iter()
        .all(|c| c.commit.leader() != dag.block(3, l).reference()));
}

#[test]
fn undecided_leader_blocks_later_decisions_until_its_anchor_decides() {
    let mut dag = DagBuilder::new(4);
    dag.layers(1..=3);
    let l = dag.leader(3);
    let rest = others(4, l);
    dag.round(4)
        .parents(rest[1], &others(4, l))
        .parents(rest[2], &others(4, l))
        .build();
    // Rounds 5 and 6 exist, but round 6's leader needs round 8 to be decided:
    // round 3 stays undecided and nothing after it is handed out.
    dag.layers(5..=7);
    let (decisions, _) = run(&dag);
    assert_eq!(
        outline(&decisions),
        vec![
            (1, true, DecisionRule::Direct),
            (2, true, DecisionRule::Direct)
        ]
    );
}

#[test]
fn crashed_authority_leaders_are_skipped_and_others_commit() {
    let mut dag = DagBuilder::new(4);
    let crashed: AuthorityIndex = 1;
    for round in 1..=20 {
        dag.round(round).producers(&others(4, crashed)).build();
    }
    let (decisions, commits) = run(&dag);

    // Commits need two rounds above the leader, skips only one: round 19 is
    // decided only if its leader is the crashed authority.
    let expected = 18 + usize::from(dag.leader(19) == crashed);
    assert_eq!(decisions.len(), expected);
    for decision in &decisions {
        let round = decision.round();
        let is_commit = matches!(decision, Decision::Commit { .. });
        assert_eq!(is_commit, dag.leader(round) != crashed, "round {round}");
        assert_eq!(decision.rule(), DecisionRule::Direct, "round {round}");
    }
    assert!(decisions
        .iter()
        .any(|d| !matches!(d, Decision::Commit { .. })));
    assert_chain(&commits);
    // In a fully connected DAG the last committed leader commits the whole
    // round before it: everything below its round, and itself.
    let committed: usize = commits.iter().map(|c| c.blocks.len()).sum();
    let last_leader_round = commits.last().unwrap().commit.leader().round;
    assert_eq!(committed, 3 * (last_leader_round as usize - 1) + 1);
    assert!(commits
        .iter()
        .flat_map(|c| &c.blocks)
        .all(|b| b.author() != crashed));
}

#[test]
fn slow_authority_is_skipped_as_leader_and_committed_late() {
    let mut dag = DagBuilder::new(4);
    // Leads rounds 5, 8, 10 and 12, not round 1.
    let slow: AuthorityIndex = 0;
    dag.layers(1..=1);
    for round in 2..=20 {
        dag.round(round).late_parent(slow).build();
    }
    let (decisions, commits) = run(&dag);

    assert_eq!(decisions.len(), 18);
    for decision in &decisions {
        let round = decision.round();
        let is_commit = matches!(decision, Decision::Commit { .. });
        // Round 1 is referenced on time: lateness starts at round 2.
        assert_eq!(
            is_commit,
            round == 1 || dag.leader(round) != slow,
            "round {round}"
        );
    }
    assert_chain(&commits);
    let committed: Vec<_> = commits.iter().flat_map(|c| &c.blocks).collect();
    for round in 1..=15 {
        let block = dag.block(round, slow).reference();
        assert!(
            committed.iter().any(|b| b.reference() == block),
            "slow block of round {round} never committed"
        );
    }
}

/// The leader schedule of the wire-format vector committee
/// (`docs/wire-format.md`): any implementation must elect the same leaders.
#[test]
fn leader_schedule_vector() {
    let committee = crate::test_dag::test_committee(&[1, 1, 1, 1], 50);
    assert_eq!(
        committee.digest().to_string(),
        "901a313d72944e9463f55c0195b03782aa5b8c6a3220e7ff6df9d76bd4d1a8de"
    );
    let schedule = crate::LeaderSchedule::new(&committee);
    let leaders: Vec<AuthorityIndex> = (1..=12).map(|r| schedule.leader(r)).collect();
    assert_eq!(leaders, vec![2, 1, 1, 2, 0, 1, 3, 0, 2, 0, 1, 0]);

    // Stake weighting: an authority with 97% of the stake leads ~97% of
    // rounds.
    let weighted = crate::test_dag::test_committee(&[97, 1, 1, 1], 50);
    let schedule = crate::LeaderSchedule::new(&weighted);
    let led_by_0 = (1..=1000).filter(|r| schedule.leader(*r) == 0).count();
    assert!((940..=995).contains(&led_by_0), "{led_by_0}");
}

/// A core rebuilt from its last commit, its blocks above the GC round and
/// which of them are committed continues exactly like the original.
#[test]
fn recovered_core_continues_identically() {
    let mut dag = DagBuilder::new(4);
    dag.layers(1..=12);
    // Make the leaders right after the recovery point need the skip and
    // indirect rules.
    let l = dag.leader(13);
    dag.round(13).build();
    dag.round(14).skip_parent(l).build();
    dag.layers(15..=40);
    // Split after round 14: round 13's skip is decided, round 14's leader
    // is not, so the last decision is a skip after the last commit.
    let split = dag.blocks().iter().position(|b| b.round() == 15).unwrap();
    let (first, rest) = dag.blocks().split_at(split);

    let mut original = DagConsensus::new(dag.committee(), DagConfig::default());
    let before = original.add_blocks(first.to_vec()).unwrap().commits;
    let blocks: Vec<_> = original.dag().blocks().cloned().collect();
    let committed: Vec<_> = blocks
        .iter()
        .map(|b| b.reference())
        .filter(|r| original.dag().is_committed(r))
        .collect();
    let state = ConsensusState {
        last_commit: original.last_commit().cloned(),
        blocks,
        committed,
    };
    let mut recovered =
        DagConsensus::recover(dag.committee(), DagConfig::default(), state).unwrap();

    let expected = original.add_blocks(rest.to_vec()).unwrap();
    let actual = recovered.add_blocks(rest.to_vec()).unwrap();
    assert!(!before.is_empty() && expected.commits.len() > 20);
    let refs = |c: &[CommittedSubDag]| c.iter().map(|c| c.reference()).collect::<Vec<_>>();
    assert_eq!(refs(&actual.commits), refs(&expected.commits));
    // The recovered core decides the skip of round 13 again, then agrees.
    assert_eq!(
        outline(&actual.decisions)[0],
        (13, false, DecisionRule::Direct)
    );
    assert_eq!(
        outline(&actual.decisions)[1..],
        outline(&expected.decisions)[..]
    );

    // Recovery without the blocks the DAG needs is refused.
    let last = original.last_commit().cloned();
    let newest: Vec<_> = original
        .dag()
        .blocks()
        .filter(|b| b.round() == 40)
        .cloned()
        .collect();
    assert!(matches!(
        DagConsensus::recover(
            dag.committee(),
            DagConfig::default(),
            ConsensusState {
                last_commit: last,
                blocks: newest,
                committed: vec![],
            }
        ),
        Err(crate::DagError::IncompleteRecovery {
            missing_ancestors_of: 4
        })
    ));
}

/// Memory stays bounded: however long the chain, the DAG holds only the
/// blocks above the GC round, plus the undecided tail.
#[test]
fn dag_size_stays_bounded_over_a_long_run() {
    let gc_depth = 3;
    let committee = crate::test_dag::test_committee(&[1, 1, 1, 1], gc_depth);
    let mut dag = DagBuilder::with_committee(committee);
    let mut core = DagConsensus::new(dag.committee(), DagConfig::default());
    let mut largest = 0;
    for round in 1..=600 {
        dag.round(round).build();
        let new: Vec<_> = dag
            .blocks()
            .iter()
            .filter(|b| b.round() == round)
            .cloned()
            .collect();
        core.add_blocks(new).unwrap();
        largest = largest.max(core.dag().accepted_len());
        // Kept: rounds above `last leader round - gc_depth`; the last leader
        // trails the newest round by 2 in a full DAG.
        assert!(
            core.dag().accepted_len() <= 4 * (gc_depth as usize + 3),
            "round {round}: {} blocks kept",
            core.dag().accepted_len()
        );
    }
    assert_eq!(core.last_commit().unwrap().index(), 598);
    assert_eq!(largest, 4 * (gc_depth as usize + 3));
}
