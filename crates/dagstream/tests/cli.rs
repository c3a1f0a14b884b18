//! The real `dagstream` binary, run as processes on loopback ports.

use dagstream_test_utils::store::damage_pages;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dagstream");
/// Long enough for anything that must happen; reaching it is a failure.
const PATIENCE: Duration = Duration::from_secs(60);

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A child process, killed if the test fails before it ends.
struct Node(Option<Child>);

impl Node {
    fn spawn(args: &[&str]) -> Node {
        let child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Node(Some(child))
    }

    /// SIGTERM, then the exit code and stderr.
    fn terminate(self) -> (i32, String) {
        let pid = self.0.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        self.wait_exit()
    }

    /// Waits for the process to exit: its exit code and stderr.
    fn wait_exit(mut self) -> (i32, String) {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + PATIENCE;
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code().expect("exited, not killed");
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (code, stderr)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A plain HTTP GET: the body, or `None` while nothing listens.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Polls `/status` until `condition` holds.
fn wait_status(
    addr: &str,
    what: &str,
    condition: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(body) = get(addr, "/status") {
            let status: serde_json::Value = serde_json::from_str(&body).unwrap();
            if condition(&status) {
                return status;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of an unlabelled metric on a node's `/metrics`; 0 while it is
/// not served.
fn metric(addr: &str, name: &str) -> f64 {
    get(addr, "/metrics")
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        })
        .unwrap_or(0.0)
}

/// The JSON document at `path`.
fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The metric names the Grafana dashboard's queries use.
fn dashboard_metrics() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/dagstream.json"
    );
    let dashboard = json(Path::new(path));
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let mut rest = target["expr"].as_str().unwrap();
            while let Some(at) = rest.find("dagstream_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    assert!(names.len() >= 15, "{names:?}");
    names
}

#[test]
fn genesis_writes_public_and_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("chain");
    let output = run(&[
        "genesis",
        "--out",
        out.to_str().unwrap(),
        "--authorities",
        "7",
        "--seed",
        "3",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let genesis = json(&out.join("genesis.json"));
    assert_eq!(genesis["authorities"].as_array().unwrap().len(), 7);
    // A group key and one share key per unit of stake, by default.
    assert_eq!(
        genesis["randomness"]["share_keys"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("committee-keys.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // An existing chain is never overwritten.
    let again = run(&["genesis", "--out", out.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    // A chain without randomness has no group key.
    let plain = dir.path().join("plain");
    let output = run(&[
        "genesis",
        "--out",
        plain.to_str().unwrap(),
        "--no-randomness",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let genesis = json(&plain.join("genesis.json"));
    assert!(genesis["randomness"].is_null(), "{}", genesis["randomness"]);
}

#[test]
fn a_bad_config_is_rejected_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[publisher]\nheartbeat_interval = 5\n").unwrap();
    let output = run(&[
        "validator",
        "--data-dir",
        dir.path().join("v").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("heartbeat_interval"), "{stderr}");
    // The printed defaults are a valid config.
    let defaults = run(&["config", "print-default"]);
    std::fs::write(&config, &defaults.stdout).unwrap();
    let missing = dir.path().join("missing.json");
    let output = run(&[
        "observer",
        "--data-dir",
        dir.path().join("o").to_str().unwrap(),
        "--genesis",
        missing.to_str().unwrap(),
        "--upstream",
        "http://127.0.0.1:1",
        "--config",
        config.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read genesis"),
        "the config parsed, the genesis is missing: {stderr}"
    );
}

#[test]
fn validator_and_observer_processes_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let validator_dir = dir.path().join("validator");
    let observer_dir = dir.path().join("observer");
    let output_file = dir.path().join("commits.jsonl");
    let (listen, v_metrics, o_metrics) = (free_port(), free_port(), free_port());
    let upstream = format!("http://{listen}");

    let validator = Node::spawn(&[
        "validator",
        "--data-dir",
        validator_dir.to_str().unwrap(),
        "--listen",
        &listen,
        "--history-rounds",
        "300",
        // Epochs of 60 rounds: the history holds four hand-offs.
        "--epoch-rounds",
        "60",
        "--metrics-listen",
        &v_metrics,
    ]);
    wait_status(&v_metrics, "the validator", |s| {
        s["highest_round"].as_u64() >= Some(300)
    });
    let observe = |node_output: &Path| {
        Node::spawn(&[
            "observer",
            "--data-dir",
            observer_dir.to_str().unwrap(),
            "--genesis",
            validator_dir.to_str().unwrap(),
            "--upstream",
            &upstream,
            "--metrics-listen",
            &o_metrics,
            "--output",
            node_output.to_str().unwrap(),
        ])
    };
    let observer = observe(&output_file);
    let status = wait_status(&o_metrics, "the observer to catch up", |s| {
        s["highest_local_commit"].as_u64() >= Some(300)
    });
    assert_eq!(status["role"], "observer");
    assert_eq!(status["active_upstream"], upstream.as_str());
    assert!(status["epoch"].as_u64() >= Some(4), "{status}");
    assert_eq!(get(&o_metrics, "/healthz").as_deref(), Some("ok\n"));
    let metrics = get(&o_metrics, "/metrics").unwrap();
    assert!(
        metrics.contains("dagstream_observer_highest_commit"),
        "{metrics}"
    );
    let metrics = get(&v_metrics, "/metrics").unwrap();
    assert!(
        metrics.contains("dagstream_publisher_active_streams"),
        "{metrics}"
    );
    // Every metric the Grafana dashboard queries exists on a running node.
    let exported = format!("{metrics}\n{}", get(&o_metrics, "/metrics").unwrap());
    for metric in dashboard_metrics() {
        assert!(
            exported.contains(&metric),
            "the dashboard uses {metric}, which no node exports"
        );
    }

    // SIGTERM: exit 0, with everything written so far consistent.
    let (code, stderr) = observer.terminate();
    assert_eq!(code, 0, "{stderr}");
    // The file may trail the store: persisted commits not yet written are
    // written after the restart, from the store.
    let written = lines(&output_file);
    assert!(!written.is_empty());
    // A crash mid-write leaves a torn last line: the restart drops it.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&output_file)
        .unwrap();
    file.write_all(br#"{"index": 99999, "dig"#).unwrap();
    drop(file);
    // The validator restarts on its data dir and continues the same chain.
    let (code, stderr) = validator.terminate();
    assert_eq!(code, 0, "{stderr}");
    let validator = Node::spawn(&[
        "validator",
        "--data-dir",
        validator_dir.to_str().unwrap(),
        "--listen",
        &listen,
        "--metrics-listen",
        &v_metrics,
    ]);
    // A restart continues the file: no gap, no duplicate.
    let observer = observe(&output_file);
    let persisted = status["highest_local_commit"].as_u64().unwrap();
    wait_status(&o_metrics, "progress after restart", |s| {
        s["highest_local_commit"].as_u64() > Some(persisted + 20)
    });
    let (code, stderr) = observer.terminate();
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = validator.terminate();
    assert_eq!(code, 0, "{stderr}");

    let mut written = lines(&output_file);
    let indexes: Vec<u64> = written
        .iter()
        .map(|l| l["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (1..=written.len() as u64).collect::<Vec<_>>());
    let inspect = run(&["inspect", "--data-dir", observer_dir.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success() && report.contains("chain verified"),
        "{report}"
    );
    assert!(report.contains("signatures checked"), "{report}");
    // Each line says how far the chain was certified when it was written:
    // never back, and soon somewhere.
    let certified: Vec<Option<u64>> = written
        .iter_mut()
        .map(|line| {
            let value = line.as_object_mut().unwrap().remove("certified_checkpoint");
            serde_json::from_value(value.expect("every line says")).unwrap()
        })
        .collect();
    assert!(certified.windows(2).all(|w| w[0] <= w[1]), "{certified:?}");
    assert!(certified.last().unwrap().is_some(), "{certified:?}");
    // Nearly every commit generates a randomness round (the first ones and
    // a few others none, some two); the rounds never repeat or go back.
    let rounds: Vec<u64> = written
        .iter()
        .filter_map(|line| line.get("randomness"))
        .flat_map(|r| r.as_array().unwrap().clone())
        .map(|r| {
            assert_eq!(r["value"].as_str().unwrap().len(), 64, "{r}");
            r["round"].as_u64().unwrap()
        })
        .collect();
    assert!(
        rounds.len() * 10 > written.len() * 8,
        "{} rounds",
        rounds.len()
    );
    assert!(rounds.windows(2).all(|w| w[0] != w[1]), "{rounds:?}");
    for index in [1, written.len() as u64 / 2, written.len() as u64] {
        let shown = run(&[
            "inspect",
            "--data-dir",
            observer_dir.to_str().unwrap(),
            "--commit",
            &index.to_string(),
            "--json",
        ]);
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        assert_eq!(shown, written[index as usize - 1], "commit {index}");
    }
    // The validator's own chain agrees with the observer's file.
    let last = written.len().to_string();
    let validator_view = run(&[
        "inspect",
        "--data-dir",
        validator_dir.to_str().unwrap(),
        "--commit",
        &last,
        "--json",
    ]);
    let validator_view: serde_json::Value = serde_json::from_slice(&validator_view.stdout).unwrap();
    assert_eq!(validator_view, written[written.len() - 1]);
    // Epochs go up one at a time along the file, and both data dirs list
    // the same epochs, each handed over by the same checkpoint.
    let epochs: Vec<u64> = written
        .iter()
        .map(|l| l["epoch"].as_u64().unwrap())
        .collect();
    assert!(epochs.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1));
    assert!(*epochs.last().unwrap() >= 4, "{epochs:?}");
    let listed = |data_dir: &Path| {
        let shown = run(&[
            "inspect",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--epochs",
            "--json",
        ]);
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        shown["epochs"].as_array().unwrap().clone()
    };
    let observed = listed(&observer_dir);
    let validated = listed(&validator_dir);
    assert!(observed.len() >= 5, "{observed:?}");
    assert_eq!(observed[..], validated[..observed.len()]);
    for (epoch, row) in observed.iter().enumerate().skip(1) {
        let before = &observed[epoch - 1];
        assert_eq!(row["epoch"], epoch as u64);
        assert_eq!(
            row["first_commit"],
            before["last_commit"].as_u64().unwrap() + 1
        );
        assert_eq!(row["handed_over_by"]["last_commit"], before["last_commit"]);
        assert!(!row["committee"].as_array().unwrap().is_empty());
    }
}

#[test]
fn startup_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let chain_a = dir.path().join("a");
    let chain_b = dir.path().join("b");
    assert!(
        run(&["genesis", "--out", chain_a.to_str().unwrap(), "--seed", "1"])
            .status
            .success()
    );
    assert!(
        run(&["genesis", "--out", chain_b.to_str().unwrap(), "--seed", "2"])
            .status
            .success()
    );
    let observer_dir = dir.path().join("observer");
    let port = free_port();
    let upstream = format!("http://{port}");

    // A data dir made for chain A refuses chain B's genesis.
    let first = Node::spawn(&[
        "observer",
        "--data-dir",
        observer_dir.to_str().unwrap(),
        "--genesis",
        chain_a.to_str().unwrap(),
        "--upstream",
        &upstream,
    ]);
    let deadline = Instant::now() + PATIENCE;
    while !observer_dir.join("genesis.json").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _) = first.terminate();
    assert_eq!(code, 0);
    let output = run(&[
        "observer",
        "--data-dir",
        observer_dir.to_str().unwrap(),
        "--genesis",
        chain_b.to_str().unwrap(),
        "--upstream",
        &upstream,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("holds chain"), "{stderr}");

    // An upstream of another chain is refused, saying so.
    let v_port = free_port();
    let validator = Node::spawn(&[
        "validator",
        "--data-dir",
        dir.path().join("va").to_str().unwrap(),
        "--genesis",
        chain_a.to_str().unwrap(),
        "--listen",
        &v_port,
    ]);
    let output = run(&[
        "observer",
        "--data-dir",
        dir.path().join("ob").to_str().unwrap(),
        "--genesis",
        chain_b.to_str().unwrap(),
        "--upstream",
        &format!("http://{v_port}"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("serves chain") && stderr.contains("refusing"),
        "{stderr}"
    );
    let (code, _) = validator.terminate();
    assert_eq!(code, 0);

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(&[
        "validator",
        "--data-dir",
        dir.path().join("v").to_str().unwrap(),
        "--listen",
        &addr,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("port in use"), "{stderr}");

    // A retention window too small to serve, and an archive URL of no
    // known kind, each named before anything starts.
    let v_dir = dir.path().join("vr");
    for (flag, value, expected) in [
        ("--retain-commits", "50", "retain_commits is 50"),
        ("--history-archive", "ftp://host/x", "unknown scheme"),
    ] {
        let output = run(&[
            "validator",
            "--data-dir",
            v_dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            flag,
            value,
        ]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
    assert!(!v_dir.exists(), "nothing is made for a refused start");
}

/// The demo in its short mode: it must pass its own checks and write its
/// report.
#[test]
fn the_demo_passes_its_own_checks() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let output = run(&[
        "demo",
        "--duration-secs",
        "15",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    let summary = json(&report.join("summary.json"));
    assert_eq!(summary["passed"], true);
    assert_eq!(summary["observers"].as_array().unwrap().len(), 3);
    assert!(std::fs::read_to_string(report.join("timeline.svg"))
        .unwrap()
        .starts_with("<svg"));
    assert_eq!(
        &std::fs::read(report.join("timeline.png")).unwrap()[..4],
        b"\x89PNG"
    );
}

/// The README's TLS example: `dagstream tls`, a validator requiring mutual
/// TLS and a token, an observer presenting both, and one without a token,
/// which is refused and gets nothing.
#[test]
fn mutual_tls_and_tokens_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = run(&["tls", "--out", certs.to_str().unwrap()]);
    assert!(made.status.success(), "{made:?}");
    // Twice into one directory: refused, nothing overwritten.
    let again = run(&["tls", "--out", certs.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is owner-only");
    }
    let cert = |name: &str| certs.join(name).to_str().unwrap().to_string();
    let validator_dir = dir.path().join("validator");
    let (listen, v_metrics) = (free_port(), free_port());
    let port = listen.rsplit(':').next().unwrap().to_string();
    let upstream = format!("https://localhost:{port}");
    let _validator = Node::spawn(&[
        "validator",
        "--data-dir",
        validator_dir.to_str().unwrap(),
        "--listen",
        &listen,
        "--history-rounds",
        "100",
        "--metrics-listen",
        &v_metrics,
        "--tls-cert",
        &cert("server.pem"),
        "--tls-key",
        &cert("server.key"),
        "--tls-client-ca",
        &cert("ca.pem"),
        "--auth-tokens",
        &cert("tokens"),
    ]);
    wait_status(&v_metrics, "the validator", |s| {
        s["highest_round"].as_u64() >= Some(100)
    });
    let observe = |name: &str, token: bool| {
        let data_dir = dir.path().join(name);
        let metrics = free_port();
        let mut args = vec![
            "observer".to_string(),
            "--data-dir".into(),
            data_dir.to_str().unwrap().into(),
            "--genesis".into(),
            validator_dir.to_str().unwrap().into(),
            "--upstream".into(),
            upstream.clone(),
            "--metrics-listen".into(),
            metrics.clone(),
            "--tls-ca".into(),
            cert("ca.pem"),
            "--tls-client-cert".into(),
            cert("client.pem"),
            "--tls-client-key".into(),
            cert("client.key"),
        ];
        if token {
            args.extend(["--auth-token-file".into(), cert("token")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (Node::spawn(&args), metrics)
    };
    let (observer, o_metrics) = observe("observer", true);
    let (intruder, i_metrics) = observe("intruder", false);
    wait_status(&o_metrics, "the observer to catch up over TLS", |s| {
        s["highest_local_commit"].as_u64() >= Some(80)
    });
    let deadline = Instant::now() + PATIENCE;
    while metric(&i_metrics, "dagstream_observer_connect_failures_total") < 1.0 {
        assert!(Instant::now() < deadline, "the intruder never tried");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = wait_status(&i_metrics, "the intruder's status", |_| true);
    assert_eq!(status["highest_local_commit"].as_u64(), Some(0));
    assert_eq!(
        metric(&i_metrics, "dagstream_observer_connections_total"),
        0.0
    );
    let (code, stderr) = intruder.terminate();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("bearer token is required"), "{stderr}");
    let (code, stderr) = observer.terminate();
    assert_eq!(code, 0, "{stderr}");
}

/// An observer's index damaged while it was stopped: `inspect` and the
/// observer refuse it with the way out, `store repair` moves it aside, and
/// the observer re-syncs with its output file gap-free and duplicate-free.
#[test]
fn a_damaged_store_is_refused_then_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let validator_dir = dir.path().join("validator");
    let observer_dir = dir.path().join("observer");
    let output_file = dir.path().join("commits.jsonl");
    let (listen, v_metrics, o_metrics) = (free_port(), free_port(), free_port());
    let _validator = Node::spawn(&[
        "validator",
        "--data-dir",
        validator_dir.to_str().unwrap(),
        "--listen",
        &listen,
        "--history-rounds",
        "150",
        "--metrics-listen",
        &v_metrics,
    ]);
    wait_status(&v_metrics, "the validator", |s| {
        s["highest_round"].as_u64() >= Some(150)
    });
    let upstream = format!("http://{listen}");
    let observer_args = [
        "observer",
        "--data-dir",
        observer_dir.to_str().unwrap(),
        "--genesis",
        validator_dir.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--metrics-listen",
        &o_metrics,
        "--output",
        output_file.to_str().unwrap(),
    ];
    let observer = Node::spawn(&observer_args);
    wait_status(&o_metrics, "the observer to catch up", |s| {
        s["highest_local_commit"].as_u64() >= Some(100)
    });
    let (code, stderr) = observer.terminate();
    assert_eq!(code, 0, "{stderr}");
    let before = lines(&output_file).len() as u64;

    damage_pages(&observer_dir.join("store/index.redb"));
    let inspect = run(&["inspect", "--data-dir", observer_dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&inspect.stderr);
    assert_eq!(inspect.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(stderr.contains("dagstream store repair"), "{stderr}");
    let (code, stderr) = Node::spawn(&observer_args).wait_exit();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");

    let repair = || {
        run(&[
            "store",
            "repair",
            "--data-dir",
            observer_dir.to_str().unwrap(),
        ])
    };
    let repaired = repair();
    assert!(repaired.status.success(), "{repaired:?}");
    assert!(String::from_utf8_lossy(&repaired.stdout).contains("was damaged"));
    let aside: Vec<_> = std::fs::read_dir(&observer_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("store.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");

    let observer = Node::spawn(&observer_args);
    wait_status(&o_metrics, "the observer to re-sync", |s| {
        s["highest_local_commit"].as_u64() >= Some(before + 20)
    });
    let (code, stderr) = observer.terminate();
    assert_eq!(code, 0, "{stderr}");
    let indexes: Vec<u64> = lines(&output_file)
        .iter()
        .map(|l| l["index"].as_u64().unwrap())
        .collect();
    assert!(indexes.len() as u64 > before);
    assert_eq!(indexes, (1..=indexes.len() as u64).collect::<Vec<_>>());
    // The new store is sound.
    assert!(String::from_utf8_lossy(&repair().stdout).contains("is sound"));

    // Once the store has passed the file, the re-sync mark is cleared, and
    // an output file ahead of the store is refused again.
    let observer = Node::spawn(&observer_args);
    wait_status(&o_metrics, "the observer to restart", |s| {
        s["highest_local_commit"].as_u64() >= Some(indexes.len() as u64)
    });
    let (code, stderr) = observer.terminate();
    assert_eq!(code, 0, "{stderr}");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&output_file)
        .unwrap();
    file.write_all(b"{\"index\": 99999}\n").unwrap();
    drop(file);
    let (code, stderr) = Node::spawn(&observer_args).wait_exit();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("belongs to another data dir"), "{stderr}");
}

/// Runs `scripts/kill_loop.py` with `args` (and `DAGSTREAM_TEST_SEED`, if
/// set), which must pass; returns its output and its JSON summary.
fn kill_loop(args: &[&str]) -> (String, serde_json::Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kill_loop.py");
    let mut command = Command::new("python3");
    command.args([script, "--bin", BIN]).args(args);
    if let Ok(seed) = std::env::var("DAGSTREAM_TEST_SEED") {
        command.args(["--seed", &seed]);
    }
    let output = command.output().expect("python3 runs the kill loop");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let summary = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    (stdout, summary)
}

/// The short version of `scripts/kill_loop.py`: validator and observers
/// SIGKILLed at random and restarted; every observer's store verifies and
/// its output is the validator's chain, each commit once.
#[test]
fn a_short_kill_loop_loses_nothing() {
    let (stdout, summary) = kill_loop(&[
        "--kills",
        "6",
        "--observers",
        "2",
        // A hand-off every 40 rounds: kills land on both sides of them,
        // the validator's included.
        "--epoch-rounds",
        "40",
        "--min-interval",
        "0.2",
        "--max-interval",
        "0.8",
    ]);
    assert_eq!(summary["survived"], 6, "{stdout}");
    assert_eq!(summary["kills"], 6);
}

/// The kill loop with each observer publishing to NATS JetStream (a real
/// `nats-server`, itself SIGKILLed and restarted halfway): 20 kills, and
/// each stream holds its observer's commits 1..N once, in order, each
/// message its output line.
#[test]
fn a_kill_loop_with_sinks_publishes_each_commit_once() {
    let (stdout, summary) = kill_loop(&[
        "--kills",
        "20",
        "--observers",
        "2",
        "--sink",
        "--min-interval",
        "0.2",
        "--max-interval",
        "0.6",
    ]);
    assert_eq!(summary["survived"], 20, "{stdout}");
    let published = summary["commits_published_per_observer"]
        .as_array()
        .unwrap();
    assert_eq!(published.len(), 2);
    assert!(
        published.iter().all(|n| n.as_u64().unwrap() > 0),
        "{stdout}"
    );
}

#[test]
fn an_archive_survives_sigkills_of_its_writer_and_bootstraps_an_observer() {
    let dir = tempfile::tempdir().unwrap();
    let validator_dir = dir.path().join("validator");
    let writer_dir = dir.path().join("writer");
    let archive = format!("file://{}", dir.path().join("archive").display());
    let (listen, v_metrics, w_metrics) = (free_port(), free_port(), free_port());
    let upstream = format!("http://{listen}");
    let _validator = Node::spawn(&[
        "validator",
        "--data-dir",
        validator_dir.to_str().unwrap(),
        "--listen",
        &listen,
        "--history-rounds",
        "400",
        "--epoch-rounds",
        "100",
        "--metrics-listen",
        &v_metrics,
    ]);
    wait_status(&v_metrics, "the validator", |s| {
        s["highest_round"].as_u64() >= Some(400)
    });
    let genesis = validator_dir.join("genesis.json");
    let writer = || {
        Node::spawn(&[
            "observer",
            "--data-dir",
            writer_dir.to_str().unwrap(),
            "--genesis",
            genesis.to_str().unwrap(),
            "--upstream",
            &upstream,
            "--metrics-listen",
            &w_metrics,
            "--archive",
            &archive,
        ])
    };
    // SIGKILL the writer while it uploads, three times, each once the
    // archive has moved on since the last.
    let mut archived = 0;
    for _ in 0..3 {
        let node = writer();
        let status = wait_status(&w_metrics, "the archive to advance", |s| {
            s["archived_checkpoint"]
                .as_u64()
                .is_some_and(|c| c > archived)
        });
        archived = status["archived_checkpoint"].as_u64().unwrap();
        drop(node);
    }
    let node = writer();
    let tip = metric(&v_metrics, "dagstream_validator_highest_commit") as u64;
    wait_status(&w_metrics, "the archive to pass the tip", |s| {
        s["archived_checkpoint"].as_u64() > Some(archived)
            && s["highest_local_commit"].as_u64() >= Some(tip)
    });
    while (metric(&w_metrics, "dagstream_archive_commit") as u64) < tip {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, stderr) = node.terminate();
    assert_eq!(code, 0, "{stderr}");

    // Offline, from genesis alone: complete, no gap, the watermark right.
    let inspected = run(&[
        "inspect",
        "--archive",
        &archive,
        "--genesis",
        genesis.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let last = report["last_commit"].as_u64().unwrap();
    assert!(last >= tip, "{report}");
    assert!(report["hand_offs"].as_u64() >= Some(4), "{report}");
    assert_eq!(report["verified"], true);

    // A new observer takes all of it from the archive, then the tail from
    // the validator: its --output has every commit once, in order.
    let (b_metrics, output) = (free_port(), dir.path().join("commits.jsonl"));
    let bootstrapped = Node::spawn(&[
        "observer",
        "--data-dir",
        dir.path().join("new").to_str().unwrap(),
        "--genesis",
        genesis.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--metrics-listen",
        &b_metrics,
        "--output",
        output.to_str().unwrap(),
        "--bootstrap-from",
        &archive,
    ]);
    let status = wait_status(&b_metrics, "the new observer past the archive", |s| {
        s["highest_local_commit"].as_u64() > Some(last + 10)
    });
    assert_eq!(status["bootstrapped_commit"].as_u64(), Some(last));
    // The file trails the store by what the consumer has not taken yet.
    let deadline = Instant::now() + PATIENCE;
    let complete_lines =
        || std::fs::read_to_string(&output).map_or(0, |text| text.matches('\n').count() as u64);
    while complete_lines() <= last {
        assert!(
            Instant::now() < deadline,
            "the --output file stopped growing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, stderr) = bootstrapped.terminate();
    assert_eq!(code, 0, "{stderr}");
    let written: Vec<u64> = lines(&output)
        .iter()
        .map(|l| l["index"].as_u64().unwrap())
        .collect();
    assert_eq!(written, (1..=written.len() as u64).collect::<Vec<_>>());
    assert!(written.len() as u64 > last);

    // An archive that is not one is refused with the reason.
    let refused = run(&[
        "inspect",
        "--archive",
        &format!("file://{}", dir.path().join("nothing").display()),
        "--genesis",
        genesis.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("manifest.json is missing"), "{stderr}");
}
