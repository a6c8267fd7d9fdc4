"""The driver joins a real two-node Ray cluster (``--address``), its trials run on both nodes, and a search
survives the loss of its worker node.

Both nodes run on this machine, each started by ``ray start`` in its own temp dir, with one CPU each, so two
concurrent trials must land on different nodes. Everything runs in subprocesses: the in-process Ray of the
other tests (``ray_session``) is never touched, and neither is any other Ray on the machine (no ``ray stop``,
which stops every Ray of the user).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tuning.errors import UserError
from tuning.files import REPORT_MD, TRIALS_TABLE
from tuning.report.results import STATUSES, load_experiment

RAY = Path(sys.executable).with_name("ray")
TERMINAL = set(STATUSES) - {"unfinished", "paused", "not_started"}  # a search that ran to its end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session_pids(sessions: set[int]) -> set[int]:
    """Live processes whose session id is one of ``sessions`` (zombies are dead: not counted).

    The leaders of ``sessions`` (our ``ray start`` processes) have exited and been reaped, so a live process
    whose pid is one of them is a stranger that reused the number, and its session is not ours: skipped.
    """
    sessions = {s for s in sessions if not Path(f"/proc/{s}").exists()}
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        if int(fields[3]) in sessions and fields[0] != "Z" and pid != os.getpid():
            found.add(pid)
    return found


def _terminate(sessions: set[int], grace_s: float = 2.0, gentle: bool = True) -> set[int]:
    """SIGTERM the processes of ``sessions``, SIGKILL what is left after ``grace_s``; returns survivors.

    Raylets and agents exit on SIGTERM within a second; Ray 2.60's gcs_server ignores it and needs the SIGKILL.
    ``gentle=False`` skips the SIGTERM: every process dies at once, as in a crash or a power cut.
    """
    steps = ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)) if gentle else ((signal.SIGKILL, 5.0),)
    for sig, wait_s in steps:
        for pid in _session_pids(sessions):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while _session_pids(sessions) and time.monotonic() < deadline:
            time.sleep(0.2)
    return _session_pids(sessions)


class Cluster:
    """Head and worker node started by ``ray start`` in their own sessions.

    ``ray start`` daemonizes: the GCS, raylets, agents and (later) trial workers are reparented away from
    it, so they cannot be found as its children. But each ``ray start`` runs with ``start_new_session``, and
    Ray does not call setsid for what it spawns (workers get their own process group, not their own session),
    so every process of this cluster keeps the session id of the ``ray start`` that created its node; teardown
    signals exactly those, whatever their command line says (workers rename themselves ``ray::…``).
    """

    def __init__(self, root: Path, head_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.sessions: set[int] = set()
        self.node_session: dict[str, int] = {}  # node -> session id of its processes
        self.head_env = dict(head_env or {})  # extra environment of the head only (its GCS reads RAY_* config)
        # Ray 2.60 turns token authentication on for a head started where ~/.ray/auth_token exists (any local
        # ray.init() writes one), and then refuses a node or driver that has not turned it on too
        # (InvalidAuthToken). We do not depend on that file: every process of this test gets token mode and a
        # fresh token of its own through the environment (RAY_AUTH_TOKEN comes before the file), so the
        # cluster is authenticated, independent of HOME and of the token any other Ray here uses.
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        self.env = dict(env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                        RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")

    def start(self) -> None:
        common = ["--num-cpus=1", "--num-gpus=0", "--object-store-memory=100000000", "--disable-usage-stats"]
        self._ray_start("head", ["--head", f"--port={self.port}", "--include-dashboard=false", *common])
        self._ray_start("worker", [f"--address={self.address}", *common])

    def _ray_start(self, node: str, args: list[str]) -> None:
        temp_dir = self.root / node
        env = dict(self.env, **self.head_env) if node == "head" else self.env
        proc = subprocess.Popen([str(RAY), "start", f"--temp-dir={temp_dir}", *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.sessions.add(proc.pid)  # before waiting: a start that fails halfway still leaves daemons
        self.node_session[node] = proc.pid
        try:
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            out = b"(no answer within 90 s)"
        finally:
            if proc.poll() is None:  # reaped in every case: teardown skips a session whose leader lives
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, f"ray start ({node}) failed:\n{out.decode(errors='replace')[-3000:]}"

    def worker_pids(self, node: str) -> set[int]:
        """Pids of the worker processes a node started, from the names of their log files.

        Ray names a worker's logs ``worker-<id>-<job>-<pid>.out`` and ``python-core-worker-<id>_<pid>.log``
        in the session of the node that started it; each node here has its own temp dir, hence its own logs.
        """
        pids = set()
        for log in (self.root / node).glob("session_latest/logs/*worker-*"):
            m = re.fullmatch(r"(?:worker-\w+-\w+-|python-core-worker-\w+_)(\d+)\.(?:out|err|log)", log.name)
            if m:
                pids.add(int(m.group(1)))
        return pids

    def node_of(self, pid: int) -> str | None:
        """The node whose worker processes included ``pid`` (None: neither, or both, which would be a bug)."""
        found = [node for node in ("head", "worker") if pid in self.worker_pids(node)]
        return found[0] if len(found) == 1 else None

    def kill_node(self, node: str) -> set[int]:
        """SIGKILL every process of ``node`` at once (raylet, agents, trial workers): the node is lost."""
        return _terminate({self.node_session[node]}, gentle=False)

    def stop(self) -> set[int]:
        return _terminate(self.sessions)


@contextmanager
def _running_cluster(head_env: dict[str, str] | None = None) -> Iterator[Cluster]:
    # Short path: Ray's unix sockets live under the temp dir, and a socket path may not exceed 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    c = Cluster(root, head_env)
    try:
        c.start()
        yield c
    finally:
        survivors = c.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert not survivors, f"processes of the test cluster still alive: {sorted(survivors)}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with _running_cluster() as c:
        yield c


# The GCS declares a node dead after health_check_failure_threshold failed checks, one every
# health_check_period_ms (Ray 2.60 defaults: 5 checks 3 s apart, 10 s timeout each), so a lost node costs
# ~15 s before Tune hears of it. Our single-host test cluster can afford to notice within ~2 s.
FAST_NODE_DEATH = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
                   "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "3"}


@pytest.fixture
def fast_failover_cluster() -> Iterator[Cluster]:
    with _running_cluster(FAST_NODE_DEATH) as c:
        yield c


@contextmanager
def _driver(cluster: Cluster, args: list[str], cwd: Path, data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m tuning.search --address …`` in its own session; killed (whole session) if still running."""
    with open(cwd / "driver.log", "wb") as out:
        env = dict(cluster.env, TUNING_DATA_DIR=str(data_dir))  # the driver reads the corpus; nodes need no file
        driver = subprocess.Popen([sys.executable, "-m", "tuning.search", "--address", cluster.address, *args],
                                  cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield driver
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=30)


def _wait(driver: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return driver.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _driver_log(cwd: Path) -> str:
    return (cwd / "driver.log").read_text(errors="replace")[-4000:]


def _rows(result: Path) -> list[dict[str, Any]]:
    """The rows of a trial's result.json; a last line still being written is skipped."""
    rows = []
    for line in result.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def test_driver_joins_two_node_cluster(cluster: Cluster, tmp_path: Path, data_dir: Path) -> None:
    storage = tmp_path / "runs"
    args = ["--space", "smoke", "--storage-path", str(storage), "--name", "mn",
            "--quiet", "--gpus-per-trial", "0", "--num-samples", "4", "--max-concurrent", "2"]
    with _driver(cluster, args, tmp_path, data_dir) as driver:
        code = _wait(driver, 150)
    assert code == 0, f"driver exit {code}:\n{_driver_log(tmp_path)}"

    exp = storage / "mn"
    for name in (TRIALS_TABLE, REPORT_MD):
        assert (exp / "report" / name).is_file(), name
    _, trials, _ = load_experiment(exp)
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= TERMINAL, trials[["trial_id", "status", "error"]]

    # Which node ran each trial: the trial's reported pid is one of the workers of that node.
    trial_pids = {result.parent.name: _rows(result)[-1]["pid"] for result in exp.glob("*/result.json")}
    assert len(trial_pids) == 4
    nodes = {"head": cluster.worker_pids("head"), "worker": cluster.worker_pids("worker")}
    assert not nodes["head"] & nodes["worker"]
    ran_on = {tid: [n for n, pids in nodes.items() if pid in pids] for tid, pid in trial_pids.items()}
    assert all(len(n) == 1 for n in ran_on.values()), ran_on
    assert {n[0] for n in ran_on.values()} == {"head", "worker"}, ran_on


LOSS_SPACE = """\
description: long enough to lose a node halfway through a trial
corpus: nextchar
normalize_whitespace: true
sampler: random
scheduler: none
num_samples: 4
budget: {chars_per_iter: 12000, max_iters: 8}
params:
  cell: {type: categorical, choices: [lstm, gru]}
  hidden_size: {type: int, low: 24, high: 32}
  seq_len: 16
  embed_dim: 16
  batch_size: 16
  sample_chars: 20
"""


def test_search_survives_losing_a_worker_node(fast_failover_cluster: Cluster, tmp_path: Path,
                                              data_dir: Path) -> None:
    """A worker node stops mid-search (every process SIGKILLed): its trial resumes on the head from its checkpoint.

    Two nodes of one CPU each run two trials at once, one on each. Once a trial on the worker node has
    reported iteration 2 (and so saved a checkpoint), the worker node dies. Ray declares the node dead, Tune
    counts the trial's failure (``--max-failures 3``) and restarts it from its last checkpoint on the head,
    the only node left; the search then finishes every trial there.
    """
    cluster = fast_failover_cluster
    space = tmp_path / "loss.yaml"
    space.write_text(LOSS_SPACE)
    storage = tmp_path / "runs"
    exp = storage / "loss"
    args = ["--space", str(space), "--storage-path", str(storage), "--name", "loss",
            "--max-failures", "3", "--gpus-per-trial", "0", "--quiet"]
    with _driver(cluster, args, tmp_path, data_dir) as driver:
        # result.json reaches the experiment dir with each checkpoint (Tune syncs the driver's staging
        # folder after every checkpoint when num_to_keep=1), so its rows lag the trial by about one iteration.
        victim, killed_at, deadline = None, 0, time.monotonic() + 90
        while victim is None and driver.poll() is None and time.monotonic() < deadline:
            for result in exp.glob("*/result.json"):
                rows = _rows(result)
                # at most 5 of 8: the trial cannot finish in the time it takes to kill the node
                if rows and 2 <= rows[-1]["iteration"] <= 5 and cluster.node_of(rows[-1]["pid"]) == "worker":
                    victim, killed_at = result.parent.name, rows[-1]["iteration"]
                    break
            else:
                time.sleep(0.1)
        assert victim, (f"no trial on the worker node reported iteration 2..5 (driver exit {driver.poll()}):\n"
                        f"{_driver_log(tmp_path)}")
        survivors = cluster.kill_node("worker")
        assert not survivors, f"worker node processes survived SIGKILL: {sorted(survivors)}"
        lost = time.monotonic()
        code = _wait(driver, 100)
    assert code == 0, f"driver exit {code}:\n{_driver_log(tmp_path)}"
    print(f"worker node killed at iteration {killed_at} of {victim}; search done {time.monotonic() - lost:.0f} s later")

    trials = pd.read_parquet(exp / "report" / TRIALS_TABLE)
    assert len(trials) == 4 and trials["trial_id"].is_unique, trials[["trial_id", "status"]]
    assert set(trials["status"]) == {"completed"}, trials[["trial_id", "status", "error"]]
    assert victim in set(trials["trial_id"])

    rows = _rows(exp / victim / "result.json")
    iterations = [r["iteration"] for r in rows]
    assert iterations.count(1) == 1, f"trial {victim} restarted from scratch: iterations {iterations}"
    assert set(iterations) == set(range(1, 9)) and iterations[-1] == 8, iterations
    assert rows[-1]["trial_status"] == "completed"
    nodes = [cluster.node_of(r["pid"]) for r in rows]
    history = [(r["iteration"], node) for r, node in zip(rows, nodes, strict=True)]
    assert nodes[-1] == "head", f"trial {victim} did not finish on the head: {history}"
    # It continued from its checkpoint: the worker's rows, then the head's, picking up where the worker left
    # off (the experiment dir lags a row or so behind the trial, so the worker may have got further than
    # killed_at before it died).
    switch = nodes.index("head")
    assert set(nodes[:switch]) == {"worker"} and set(nodes[switch:]) == {"head"}, history
    # The head resumes from the last checkpoint the driver had registered: the worker's last row, or the one
    # before it when the kill fell between that row and its checkpoint's registration (seen in CI: 1 2 3 | 3 4 …).
    # Either way never from scratch, no gap, and at most one iteration trained twice.
    assert killed_at <= iterations[switch - 1], iterations
    assert 1 < iterations[switch] and iterations[switch - 1] <= iterations[switch] <= iterations[switch - 1] + 1, (
        iterations)


def test_node_local_storage_refused_across_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No second host here: fake the cluster's nodes and the mount table instead."""
    import ray

    from tuning.tune import driver as search

    base = tmp_path.resolve()
    mounts = tmp_path / "mounts"
    mounts.write_text("overlay / overlay rw 0 0\n"
                      f"server:/export {base}/nfs nfs4 rw 0 0\n"
                      f"tmpfs {base}/nfs/scratch tmpfs rw 0 0\n")
    real_path = search.Path

    def fake_path(*parts: str | Path) -> Path:  # only the search module's Path, only for /proc/mounts
        return real_path(mounts) if parts == ("/proc/mounts",) else real_path(*parts)

    monkeypatch.setattr(search, "Path", fake_path)
    nodes = [{"Alive": True, "NodeManagerAddress": "10.0.0.1"}, {"Alive": True, "NodeManagerAddress": "10.0.0.2"},
             {"Alive": False, "NodeManagerAddress": "10.0.0.3"}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)

    assert search._on_shared_filesystem(base / "nfs" / "runs")
    assert search._on_shared_filesystem(base / "nfs")
    assert not search._on_shared_filesystem(base / "nfs2" / "runs")  # a prefix of the name is no mount
    assert not search._on_shared_filesystem(base / "nfs" / "scratch" / "runs")  # the deepest mount decides
    assert search.is_uri("s3://bucket/runs") and search.is_uri("gs://b/r") and not search.is_uri("/s3://x")

    search.check_storage_reachable(str(base / "nfs" / "runs"))
    search.check_storage_reachable("s3://bucket/runs")
    with pytest.raises(UserError, match="node-local but the cluster spans 2 hosts"):
        search.check_storage_reachable(str(base / "local" / "runs"))
    nodes[1]["NodeManagerAddress"] = "10.0.0.1"  # several nodes, one host: a local path is fine
    search.check_storage_reachable(str(base / "local" / "runs"))
