//! Every transition of the state machine, hysteresis, and a proptest that
//! random inputs never produce an invalid command sequence.

use crate::state_machine::*;
use crate::ObserverError;
use proptest::prelude::*;
use Command::*;

const STEP: u64 = 100;

/// A machine after T0, and a clock that advances one interval per call.
struct Harness {
    machine: SubscriberStateMachine,
    now: u64,
}

impl Harness {
    fn new() -> Self {
        let mut machine = SubscriberStateMachine::new(SubscriberConfig::default()).unwrap();
        assert_eq!(machine.start(0), vec![StartBlocks]);
        Harness { machine, now: 0 }
    }

    fn eval(&mut self, lag: u64, queue: usize) -> Vec<Command> {
        self.now += STEP;
        self.machine.evaluate(
            self.now,
            Observation {
                upstream_highest_commit: Some(1_000 + lag),
                local_highest_commit: 1_000,
                block_queue_len: queue,
            },
        )
    }

    fn mode(&self) -> (Mode, bool) {
        (self.machine.mode(), self.machine.paused())
    }
}

#[test]
fn t0_starts_in_blocks_only() {
    let h = Harness::new();
    assert_eq!(h.mode(), (Mode::BlocksOnly, false));
    assert!(h.machine.blocks_active());
    assert!(!h.machine.commits_active());
}

#[test]
fn nothing_happens_before_start_before_the_interval_or_without_a_lag() {
    let mut machine = SubscriberStateMachine::new(SubscriberConfig::default()).unwrap();
    let far_behind = Observation {
        upstream_highest_commit: Some(10_000),
        local_highest_commit: 0,
        block_queue_len: 0,
    };
    assert!(
        machine.evaluate(1_000, far_behind).is_empty(),
        "not started"
    );
    machine.start(1_000);
    assert!(
        machine.evaluate(1_099, far_behind).is_empty(),
        "before the interval"
    );
    let unknown = Observation {
        upstream_highest_commit: None,
        ..far_behind
    };
    assert!(machine.evaluate(1_100, unknown).is_empty(), "lag unknown");
    assert_eq!(
        machine.evaluate(1_200, far_behind),
        vec![StartCommits, StopBlocks]
    );
}

#[test]
fn t1_far_behind_switches_to_commits() {
    let mut h = Harness::new();
    assert!(h.eval(49, 0).is_empty());
    assert_eq!(h.eval(50, 0), vec![StartCommits, StopBlocks]);
    assert_eq!(h.mode(), (Mode::CommitsOnly, false));
    assert!(!h.machine.blocks_active() && h.machine.commits_active());
}

#[test]
fn t2_close_enough_resumes_blocks_in_overlap() {
    let mut h = Harness::new();
    h.eval(500, 0);
    assert!(h.eval(11, 0).is_empty());
    assert_eq!(h.eval(10, 0), vec![StartBlocks]);
    assert_eq!(h.mode(), (Mode::Overlap, false));
    assert!(h.machine.blocks_active() && h.machine.commits_active());
}

#[test]
fn t3_caught_up_stops_commits() {
    let mut h = Harness::new();
    h.eval(500, 0);
    h.eval(5, 0);
    assert!(h.eval(1, 0).is_empty());
    assert_eq!(h.eval(0, 0), vec![StopCommits]);
    assert_eq!(h.mode(), (Mode::BlocksOnly, false));
}

#[test]
fn caught_up_at_once_still_passes_through_overlap() {
    let mut h = Harness::new();
    h.eval(500, 0);
    assert_eq!(h.eval(0, 0), vec![StartBlocks]);
    assert_eq!(h.mode().0, Mode::Overlap);
    assert_eq!(h.eval(0, 0), vec![StopCommits]);
    assert_eq!(h.mode().0, Mode::BlocksOnly);
}

#[test]
fn falling_behind_again_in_overlap_goes_back_to_commits() {
    let mut h = Harness::new();
    h.eval(500, 0);
    h.eval(10, 0);
    assert!(h.eval(49, 0).is_empty());
    assert_eq!(h.eval(50, 0), vec![StopBlocks]);
    assert_eq!(h.mode(), (Mode::CommitsOnly, false));
}

#[test]
fn t4_t5_pause_and_resume_blocks() {
    let mut h = Harness::new();
    assert!(h.eval(0, 499).is_empty());
    assert_eq!(h.eval(0, 500), vec![StopBlocks]);
    assert_eq!(h.mode(), (Mode::BlocksOnly, true));
    assert!(!h.machine.blocks_active());
    assert!(h.eval(0, 51).is_empty());
    assert_eq!(h.eval(0, 50), vec![StartBlocks]);
    assert_eq!(h.mode(), (Mode::BlocksOnly, false));
}

#[test]
fn pause_applies_in_overlap_too() {
    let mut h = Harness::new();
    h.eval(500, 0);
    h.eval(10, 0);
    assert_eq!(h.eval(5, 800), vec![StopBlocks]);
    assert_eq!(h.mode(), (Mode::Overlap, true));
    // Caught up while paused: commits stop, blocks stay paused until drained.
    assert_eq!(h.eval(0, 800), vec![StopCommits]);
    assert_eq!(h.mode(), (Mode::BlocksOnly, true));
    assert_eq!(h.eval(0, 10), vec![StartBlocks]);
}

#[test]
fn falling_behind_while_paused_does_not_stop_blocks_twice() {
    let mut h = Harness::new();
    h.eval(0, 600);
    assert_eq!(h.eval(60, 600), vec![StartCommits]);
    assert_eq!(h.mode(), (Mode::CommitsOnly, false));
    let mut h = Harness::new();
    h.eval(500, 0);
    h.eval(10, 0);
    assert_eq!(h.eval(5, 800), vec![StopBlocks]);
    // Blocks are already stopped by the pause: no second Stop.
    assert_eq!(h.eval(60, 800), Vec::<Command>::new());
    assert_eq!(h.mode(), (Mode::CommitsOnly, false));
}

#[test]
fn no_flapping_at_any_threshold() {
    // Hovering around each threshold gives exactly one transition.
    let mut h = Harness::new();
    let mut commands = Vec::new();
    for i in 0..40 {
        commands.extend(h.eval(if i % 2 == 0 { 49 } else { 50 }, 0));
    }
    assert_eq!(commands, vec![StartCommits, StopBlocks]);

    let mut commands = Vec::new();
    for i in 0..40 {
        commands.extend(h.eval(if i % 2 == 0 { 11 } else { 10 }, 0));
    }
    assert_eq!(commands, vec![StartBlocks]);

    let mut commands = Vec::new();
    for i in 0..40 {
        commands.extend(h.eval(if i % 2 == 0 { 1 } else { 0 }, 0));
    }
    assert_eq!(commands, vec![StopCommits]);

    let mut commands = Vec::new();
    for i in 0..40 {
        commands.extend(h.eval(0, if i % 2 == 0 { 499 } else { 500 }));
    }
    assert_eq!(commands, vec![StopBlocks]);
    let mut commands = Vec::new();
    for i in 0..40 {
        commands.extend(h.eval(0, if i % 2 == 0 { 51 } else { 50 }));
    }
    assert_eq!(commands, vec![StartBlocks]);
}

#[test]
fn a_whole_catch_up_follows_the_design_table() {
    let mut h = Harness::new();
    let mut trace = vec![h.mode().0];
    let mut lag = 5_000u64;
    while lag > 0 {
        h.eval(lag, 0);
        if trace.last() != Some(&h.mode().0) {
            trace.push(h.mode().0);
        }
        lag = lag.saturating_sub(97);
    }
    for _ in 0..3 {
        h.eval(0, 0);
        if trace.last() != Some(&h.mode().0) {
            trace.push(h.mode().0);
        }
    }
    assert_eq!(
        trace,
        vec![
            Mode::BlocksOnly,
            Mode::CommitsOnly,
            Mode::Overlap,
            Mode::BlocksOnly
        ]
    );
}

#[test]
fn config_is_validated() {
    let bad = [
        SubscriberConfig {
            resume_blocks_queue_size: 500,
            ..SubscriberConfig::default()
        },
        SubscriberConfig {
            resume_blocks_lag: 50,
            ..SubscriberConfig::default()
        },
        SubscriberConfig {
            stop_commit_sync_lag: 11,
            ..SubscriberConfig::default()
        },
        SubscriberConfig {
            evaluation_interval_ms: 0,
            ..SubscriberConfig::default()
        },
    ];
    let fields = [
        "subscriber.resume_blocks_queue_size",
        "subscriber.resume_blocks_lag",
        "subscriber.stop_commit_sync_lag",
        "subscriber.evaluation_interval_ms",
    ];
    for (config, expected) in bad.into_iter().zip(fields) {
        let err = SubscriberStateMachine::new(config.clone()).unwrap_err();
        let ObserverError::InvalidConfig { field, reason } = err else {
            panic!("{err:?}");
        };
        assert_eq!(field, expected, "{config:?}");
        assert!(!reason.is_empty(), "{config:?}");
    }
    let err = SubscriberConfig {
        resume_blocks_queue_size: 600,
        ..SubscriberConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(
        matches!(&err, ObserverError::InvalidConfig { reason, .. }
            if reason.contains("resume_blocks_queue_size (600)")),
        "{err}"
    );
}

#[test]
fn degradation_is_a_commits_only_lag_that_stops_improving() {
    let mut d = Degradation::new(1_000);
    assert!(!d.observe(0, Mode::CommitsOnly, Some(500)));
    assert!(!d.observe(400, Mode::CommitsOnly, Some(450)), "improving");
    assert!(!d.observe(1_300, Mode::CommitsOnly, Some(470)));
    assert!(
        d.observe(1_400, Mode::CommitsOnly, Some(520)),
        "no better than 450 for 1 s"
    );
    // Leaving CommitsOnly resets the watch.
    assert!(!d.observe(1_500, Mode::Overlap, Some(5)));
    assert!(!d.observe(1_600, Mode::CommitsOnly, Some(900)));
    assert!(!d.observe(2_500, Mode::CommitsOnly, Some(900)));
    assert!(d.observe(2_600, Mode::CommitsOnly, Some(901)));
    // An unknown lag is no evidence.
    assert!(!d.observe(9_000, Mode::CommitsOnly, None));
}

/// A change of default shows up here in review.
#[test]
fn defaults_snapshot() {
    assert_eq!(
        serde_json::to_string(&SubscriberConfig::default()).unwrap(),
        r#"{"start_commit_sync_lag":50,"resume_blocks_lag":10,"stop_commit_sync_lag":0,"pause_blocks_queue_size":500,"resume_blocks_queue_size":50,"evaluation_interval_ms":100}"#
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the lags, queue sizes and timing, the commands form a valid
    /// sequence for both streams: a Start only for a stopped stream, a Stop
    /// only for a started one, and the machine's view matches the streams.
    #[test]
    fn random_inputs_never_produce_an_invalid_command_sequence(
        steps in proptest::collection::vec(
            (0u64..250, prop::option::of(0u64..120), 0usize..800, 0u64..300),
            1..300,
        ),
        restart_at in prop::option::of(0usize..300),
    ) {
        let mut machine = SubscriberStateMachine::new(SubscriberConfig::default()).unwrap();
        let (mut blocks_on, mut commits_on) = (false, false);
        let mut now = 0;
        let apply = |commands: Vec<Command>, blocks_on: &mut bool, commits_on: &mut bool| {
            for command in commands {
                match command {
                    StartBlocks => { prop_assert!(!*blocks_on, "StartBlocks while started"); *blocks_on = true; }
                    StopBlocks => { prop_assert!(*blocks_on, "StopBlocks while stopped"); *blocks_on = false; }
                    StartCommits => { prop_assert!(!*commits_on, "StartCommits while started"); *commits_on = true; }
                    StopCommits => { prop_assert!(*commits_on, "StopCommits while stopped"); *commits_on = false; }
                }
            }
            Ok(())
        };
        apply(machine.start(now), &mut blocks_on, &mut commits_on)?;
        for (i, (local, lag, queue, advance)) in steps.into_iter().enumerate() {
            if restart_at == Some(i) {
                // A new upstream connection: both streams start fresh.
                blocks_on = false;
                commits_on = false;
                apply(machine.start(now), &mut blocks_on, &mut commits_on)?;
            }
            now += advance;
            let observation = Observation {
                upstream_highest_commit: lag.map(|lag| local + lag),
                local_highest_commit: local,
                block_queue_len: queue,
            };
            let commands = machine.evaluate(now, observation);
            prop_assert!(commands.len() <= 2);
            apply(commands, &mut blocks_on, &mut commits_on)?;
            prop_assert_eq!(blocks_on, machine.blocks_active());
            prop_assert_eq!(commits_on, machine.commits_active());
            prop_assert!(blocks_on || commits_on || machine.paused(), "neither stream flows");
        }
    }
}
