//! The simulation's seeds: a fixed set that CI runs, a replay of one, and
//! any number on request.
//!
//! - `cargo test -p dagstream-chaos --test seeds`: seeds 0 to 49, in
//!   groups that the test harness runs in parallel.
//! - `DAGSTREAM_SIM_SEED=N cargo test -p dagstream-chaos --test seeds replay -- --ignored --nocapture`:
//!   seed N, with its plan and report printed.
//! - `DAGSTREAM_SIM_SEEDS=FROM..TO` (or a count, from 0) with `many -- --ignored`: more seeds.

use dagstream_chaos::{
    replay_command, run, run_with, Fault, Options, Plan, Report, Shape, SEEDS_ENV, SEED_ENV,
};
use std::ops::Range;

/// Runs `seeds`, panicking on the first failure with its replay command.
fn run_all(seeds: Range<u64>) -> Vec<Report> {
    seeds
        .map(|seed| run(seed).unwrap_or_else(|failure| panic!("{failure}")))
        .collect()
}

/// Checks what every report must show beyond the invariants `run` checks
/// as it goes.
fn check(reports: &[Report]) {
    for report in reports {
        assert!(
            report.target > 0,
            "seed {}: no chain to follow",
            report.seed
        );
        assert!(
            report.delivered.iter().all(|&n| n >= report.target),
            "{report:?}"
        );
        // A chain whose epochs end has handed over, under the faults, by
        // the time the observers caught up: 12 s and more of 100 ms rounds
        // hold two epochs of the longest length drawn, and every observer
        // delivered commits past both hand-offs.
        if report.epoch_rounds > 0 {
            assert!(report.epochs.iter().all(|&e| e >= 2), "{report:?}");
        }
    }
}

#[test]
fn seeds_0_to_9() {
    check(&run_all(0..10));
}

#[test]
fn seeds_10_to_19() {
    check(&run_all(10..20));
}

#[test]
fn seeds_20_to_29() {
    check(&run_all(20..30));
}

#[test]
fn seeds_30_to_39() {
    check(&run_all(30..40));
}

#[test]
fn seeds_40_to_49() {
    check(&run_all(40..50));
}

/// A seed's run is the same run every time, whatever ran before it in the
/// process and beside it on other threads: the same report, down to the
/// trace of every delivery and status with its simulated time.
#[test]
fn a_seed_replays_the_same_run() {
    let forwards = run_all(0..4);
    assert_eq!(run_all(0..4), forwards);
    let mut backwards: Vec<Report> = (0..4)
        .rev()
        .flat_map(|seed| run_all(seed..seed + 1))
        .collect();
    backwards.reverse();
    assert_eq!(backwards, forwards);
}

/// The checks catch what they are there for: a consumer that resumes one
/// commit early after its observer crashed is handed that commit again.
#[test]
fn a_repeat_after_a_crash_is_caught() {
    // Seed 3 crashes observer 1 at 4,367 ms.
    let plan = Plan::generate(3, &Shape::default());
    assert!(plan
        .events
        .iter()
        .any(|e| e.fault == Fault::CrashObserver { observer: 1 }));
    let options = Options {
        resume_behind: 1,
        ..Options::default()
    };
    let failure = run_with(3, &options).expect_err("the repeat is caught");
    assert!(
        failure.reason.starts_with("at ")
            && failure.reason.contains("observer 1: commit ")
            && failure.reason.ends_with(" delivered again"),
        "{failure}"
    );
    assert!(
        failure.to_string().ends_with(&replay_command(3)),
        "{failure}"
    );
}

/// The Byzantine upstream is found out: with it the only upstream that
/// claims a higher tip, every observer tries it and blames it for a bad
/// block, and still follows the honest chain.
#[test]
fn the_byzantine_upstream_is_blamed() {
    let options = Options {
        shape: Shape {
            faults: (0, 0),
            ..Shape::default()
        },
        ..Options::default()
    };
    let report = run_with(100, &options).unwrap_or_else(|f| panic!("{f}"));
    for fault in &report.last_fault {
        let fault = fault.as_deref().unwrap_or("none");
        assert!(
            fault.starts_with("bad_block: http://byzantine:9000")
                || fault.starts_with("bad_certifier: http://byzantine:9000"),
            "{fault}"
        );
    }
}

#[test]
#[ignore = "replays the seed in DAGSTREAM_SIM_SEED"]
fn replay() {
    let seed: u64 = std::env::var(SEED_ENV)
        .unwrap_or_else(|_| panic!("set {SEED_ENV}"))
        .parse()
        .unwrap_or_else(|_| panic!("{SEED_ENV} is not a u64"));
    print!("{}", Plan::generate(seed, &Shape::default()));
    let report = run(seed).unwrap_or_else(|failure| panic!("{failure}"));
    println!("{report:#?}");
}

#[test]
#[ignore = "runs the seeds in DAGSTREAM_SIM_SEEDS (FROM..TO, or a count)"]
fn many() {
    let text = std::env::var(SEEDS_ENV).unwrap_or_else(|_| "200".into());
    let seeds = match text.split_once("..") {
        Some((from, to)) => from.parse().expect("FROM is a u64")..to.parse().expect("TO is a u64"),
        None => 0..text.parse().expect("a count of seeds"),
    };
    let started = std::time::Instant::now();
    let reports = run_all(seeds.clone());
    check(&reports);
    let faults: usize = reports.iter().map(|r| r.faults).sum();
    println!(
        "{} seeds ({seeds:?}), {faults} faults, all invariants held, in {:.1} s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
}
