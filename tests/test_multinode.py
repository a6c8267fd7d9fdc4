"""The driver joins a real two-node Ray cluster (``--address``) and its trials run on both nodes.

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
from pathlib import Path

import pytest

from tuning.errors import UserError
from tuning.files import REPORT_MD, TRIALS_TABLE
from tuning.results import STATUSES, load_experiment

RAY = Path(sys.executable).with_name("ray")
TERMINAL = set(STATUSES) - {"unfinished"}


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


def _terminate(sessions: set[int], grace_s: float = 2.0) -> set[int]:
    """SIGTERM the processes of ``sessions``, SIGKILL what is left after ``grace_s``; returns survivors.

    Raylets and agents exit on SIGTERM within a second; Ray 2.60's gcs_server ignores it and needs the SIGKILL.
    """
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
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

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.sessions: set[int] = set()
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
        proc = subprocess.Popen([str(RAY), "start", f"--temp-dir={temp_dir}", *args], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.sessions.add(proc.pid)  # before waiting: a start that fails halfway still leaves daemons
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

    def stop(self) -> set[int]:
        return _terminate(self.sessions)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # Short path: Ray's unix sockets live under the temp dir, and a socket path may not exceed 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    c = Cluster(root)
    try:
        c.start()
        yield c
    finally:
        survivors = c.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert not survivors, f"processes of the test cluster still alive: {sorted(survivors)}"


def test_driver_joins_two_node_cluster(cluster: Cluster, tmp_path: Path, data_dir: Path) -> None:
    storage = tmp_path / "runs"
    args = ["--space", "smoke", "--address", cluster.address, "--storage-path", str(storage), "--name", "mn",
            "--quiet", "--gpus-per-trial", "0", "--num-samples", "4", "--max-concurrent", "2"]
    log = tmp_path / "driver.log"
    with open(log, "wb") as out:
        env = dict(cluster.env, TUNING_DATA_DIR=str(data_dir))  # the driver reads the corpus; nodes need no file
        driver = subprocess.Popen([sys.executable, "-m", "tuning.search", *args], cwd=tmp_path, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = driver.wait(timeout=150)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=30)
    assert code == 0, f"driver exit {code}:\n{log.read_text(errors='replace')[-4000:]}"

    exp = storage / "mn"
    for name in (TRIALS_TABLE, REPORT_MD):
        assert (exp / "report" / name).is_file(), name
    _, trials, _ = load_experiment(exp)
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= TERMINAL, trials[["trial_id", "status", "error"]]

    # Which node ran each trial: the trial's reported pid is one of the workers of that node.
    trial_pids = {}
    for result in exp.glob("*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        trial_pids[result.parent.name] = rows[-1]["pid"]
    assert len(trial_pids) == 4
    nodes = {"head": cluster.worker_pids("head"), "worker": cluster.worker_pids("worker")}
    assert not nodes["head"] & nodes["worker"]
    ran_on = {tid: [n for n, pids in nodes.items() if pid in pids] for tid, pid in trial_pids.items()}
    assert all(len(n) == 1 for n in ran_on.values()), ran_on
    assert {n[0] for n in ran_on.values()} == {"head", "worker"}, ran_on


def test_node_local_storage_refused_across_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No second host here: fake the cluster's nodes and the mount table instead."""
    import ray

    from tuning import search

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
