//! CPU time per runtime: the sum over this process's threads whose name
//! starts with the runtime's thread name, from `/proc/self/task`.
//!
//! Runtimes whose CPU is measured keep their blocking threads alive for
//! the whole run (`thread_keep_alive`), since a thread that exits takes its
//! CPU time with it.

use std::path::Path;

/// Clock ticks per second of `/proc`'s times: `USER_HZ`, 100 on every
/// Linux architecture that dagstream runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// Longest thread name Linux keeps (`comm`, without its NUL).
const COMM_LEN: usize = 15;

/// CPU seconds (user and system) used so far by the threads named
/// `name…` (compared on the first 15 bytes, all that Linux keeps); 0 where
/// `/proc` is not there.
pub fn thread_cpu_seconds(name: &str) -> f64 {
    let name = name.get(..COMM_LEN).unwrap_or(name);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(name))
        })
        .map(|task| ticks(&task.path().join("stat")))
        .sum::<u64>() as f64
        / TICKS_PER_SECOND
}

/// utime + stime of one `stat` file, in ticks.
fn ticks(stat: &Path) -> u64 {
    let Ok(stat) = std::fs::read_to_string(stat) else {
        return 0;
    };
    // The command name, in parentheses, may hold spaces: fields are
    // counted after its closing parenthesis. utime and stime are fields
    // 14 and 15 of the line, so the 12th and 13th after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_named_thread_is_counted_and_others_are_not() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let busy = std::thread::Builder::new()
            .name("cpu-test-busy-thread".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box((0..10_000u64).sum::<u64>());
                    }
                }
            })
            .unwrap();
        // The spinning thread's CPU shows up under its name: waits for
        // 30 ms of it, however loaded the machine, up to a minute.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // Named longer than Linux keeps: still found.
        while thread_cpu_seconds("cpu-test-busy-thread") < 0.03 {
            assert!(std::time::Instant::now() < deadline, "no CPU counted");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        busy.join().unwrap();
        assert_eq!(thread_cpu_seconds("no-such-thread"), 0.0);
    }

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        // A command name with spaces and a parenthesis; utime 7, stime 5.
        let line = "42 (we ird) name) S 1 2 3 4 5 6 7 8 9 10 7 5 0 0 20 0 1 0 100";
        std::fs::write(&path, line).unwrap();
        assert_eq!(ticks(&path), 12);
    }
}
