"""Faults survived: a killed trial worker, a hung trial, a diverging trial — with a real local Ray."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tuning.report.results import load_experiment
from tuning.tune import driver as search

HERE = Path(__file__).parent


def _rows(exp: Path) -> list[dict]:
    out = []
    for f in exp.glob("*/result.json"):
        for line in f.read_text().splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


@pytest.mark.usefixtures("ray_session")
def test_killed_worker_restarts_from_its_checkpoint(tmp_path: Path) -> None:
    exp = tmp_path / "kill"
    killed: dict[str, object] = {}

    def killer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for row in _rows(exp):
                if row.get("iteration") == 2 and row.get("trial_status") == "running":
                    os.kill(int(row["pid"]), signal.SIGKILL)
                    killed.update(trial_id=row["trial_id"], pid=row["pid"])
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    code = search.main(["--space", str(HERE / "spaces" / "faults.yaml"), "--storage-path", str(tmp_path),
                        "--name", "kill", "--quiet", "--gpus-per-trial", "0", "--max-failures", "2"])
    thread.join(timeout=5)
    assert killed, "no trial was killed: the test proves nothing"
    assert code == 0
    _, trials, history = load_experiment(exp)
    assert len(trials) == 2 and trials["trial_id"].is_unique  # every trial exactly once
    assert (trials["status"] == "completed").all()
    victim = killed["trial_id"]
    curve = history[history["trial_id"] == victim]
    assert list(curve["iteration"]) == list(range(1, 9))
    # It resumed from a checkpoint, not from scratch: iteration 1 was reported once, and the rows after the kill
    # come from a new process that continued past the checkpointed iteration.
    rows = [r for r in _rows(exp) if r["trial_id"] == victim]
    assert [r["iteration"] for r in rows].count(1) == 1
    after = [r for r in rows if r["pid"] != killed["pid"]]
    assert after and min(r["iteration"] for r in after) >= 2
    assert trials.loc[trials["trial_id"] == victim, "chars_trained"].item() == 8 * trials["chars_trained"].iloc[0] // 8


@pytest.mark.usefixtures("ray_session")
def test_hung_trial_is_ended_by_the_watchdog(tmp_path: Path) -> None:
    code = search.main(["--space", str(HERE / "spaces" / "hang.yaml"), "--storage-path", str(tmp_path),
                        "--name", "hang", "--quiet", "--gpus-per-trial", "0", "--max-failures", "0",
                        "--trial-timeout-s", "20"])
    assert code == 0  # one trial finished, so the search succeeded
    _, trials, _ = load_experiment(tmp_path / "hang")
    by_size = trials.set_index("hidden_size")
    assert by_size.loc[8, "status"] == "completed"
    assert by_size.loc[2048, "status"] == "errored"
    assert "watchdog" in by_size.loc[2048, "error"]


@pytest.mark.usefixtures("ray_session")
def test_diverged_trial_never_wins_and_never_stalls(tmp_path: Path) -> None:
    import pandas as pd

    code = search.main(["--space", str(HERE / "spaces" / "diverge.yaml"), "--storage-path", str(tmp_path),
                        "--name", "div", "--quiet", "--gpus-per-trial", "0"])
    assert code == 0
    trials = pd.read_parquet(tmp_path / "div" / "report" / "trials.parquet").set_index("lr")
    assert trials.loc[1e10, "status"] == "diverged" and trials.loc[1e10, "iteration"] == 1
    assert trials.loc[0.01, "status"] == "completed"
    report = (tmp_path / "div" / "report" / "report.md").read_text()
    best = report.split("## Best trial per cell type", 1)[1].split("##", 1)[0]
    assert trials.loc[0.01, "trial_id"] in best and trials.loc[1e10, "trial_id"] not in best


def test_gpus_requested_but_none_fails_fast(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tuning.search", "--space", "smoke", "--gpus-per-trial", "0.5",
                           "--storage-path", str(tmp_path / "runs")], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --gpus-per-trial=0.5 is invalid: the cluster has no GPU")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
