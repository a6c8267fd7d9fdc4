"""The search's terminal output: the progress line, the short-budget warning and Ray's hidden lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ray.tune.experiment import Trial

from tuning.engine.train import STATUS_COMPLETED, STATUS_DIVERGED, STATUS_RUNNING
from tuning.tune.progress import (
    FETCH_LOGGER,
    Best,
    SearchProgress,
    count_statuses,
    hide_misleading_ray_warnings,
    progress_line,
    seconds_per_iter,
    short_budget_warning,
)


@pytest.mark.parametrize(("ray_status", "last", "ours"), [
    (Trial.PENDING, None, "pending"),
    (Trial.RUNNING, STATUS_RUNNING, "running"),
    (Trial.PAUSED, STATUS_RUNNING, "paused"),  # waiting at a rung
    (Trial.TERMINATED, STATUS_COMPLETED, "completed"),
    (Trial.TERMINATED, STATUS_RUNNING, "stopped"),  # ASHA or the time budget stopped it
    (Trial.TERMINATED, STATUS_DIVERGED, "stopped"),
    (Trial.TERMINATED, None, "never reported"),  # still pending when the budget ran out
    (Trial.ERROR, STATUS_RUNNING, "errored"),
])
def test_each_ray_status_counts_once(ray_status: str, last: str | None, ours: str) -> None:
    counts = count_statuses([(ray_status, last)])
    assert counts[ours] == 1 and sum(counts.values()) == 1


def test_progress_line_with_a_budget() -> None:
    statuses = count_statuses([(Trial.RUNNING, STATUS_RUNNING)] * 2 + [(Trial.PAUSED, STATUS_RUNNING)]
                              + [(Trial.TERMINATED, STATUS_COMPLETED)] + [(Trial.TERMINATED, STATUS_RUNNING)] * 3)
    line = progress_line("val_loss", Best(1.23456, "ab12cd34", "gru"), statuses, 4_560_000, 100.0, 480.0)
    assert line == ("progress: best val_loss 1.235 (ab12cd34, gru) | trials 2 running, 1 paused, 1 completed, "
                    "3 stopped, 0 errored | 4.56 M chars trained | 6 min 20 s left of 8 min")


def test_progress_line_before_any_result_and_without_a_budget() -> None:
    line = progress_line("val_acc", None, count_statuses([(Trial.PENDING, None)] * 2), 0, 3725.0, None)
    assert line == ("progress: best val_acc: none yet | trials 0 running, 0 paused, 0 completed, 0 stopped, "
                    "0 errored, 2 pending | 0 chars trained | 1 h 02 min elapsed")


def test_progress_line_never_shows_negative_time_left() -> None:
    assert progress_line("val_loss", None, count_statuses([]), 950, 500.0, 480.0).endswith(
        "| 950 chars trained | 0 s left of 8 min")


def test_short_budget_warning_when_no_trial_can_finish() -> None:
    # the case: 27 iterations at ~30 s each need ~13.5 min; the budget is 8 min
    warning = short_budget_warning(30.0, 27, 480.0)
    assert warning == ("warning: at the measured ~30 s per iteration a full-budget trial (27 iterations) needs "
                       "~13 min 30 s but the budget is 8 min; no trial will finish: raise --time-budget-s, lower "
                       "--max-iters, or read the report's fronts at equal budget")


@pytest.mark.parametrize(("per_iter", "budget"), [(10.0, 480.0), (30.0, 810.0), (30.0, None)])
def test_no_short_budget_warning_when_a_trial_fits_or_there_is_no_budget(per_iter: float,
                                                                         budget: float | None) -> None:
    assert short_budget_warning(per_iter, 27, budget) is None


def test_seconds_per_iter_counts_training_and_validation() -> None:
    assert seconds_per_iter({"iteration": 4, "train_time_s": 6.0, "eval_time_s": 2.0}) == 2.0
    assert seconds_per_iter({"trial_id": "x"}) is None  # Ray's placeholder before a trial's first result


def _trial(trial_id: str, cell: str, status: str) -> Trial:
    trial = Trial("trainable", config={"cell": cell}, trial_id=trial_id, stub=True)
    trial.set_status(status)
    return trial


def _result(iteration: int, val_loss: float, per_iter: float, status: str = STATUS_RUNNING) -> dict[str, object]:
    return {"iteration": iteration, "val_loss": val_loss, "train_time_s": per_iter * iteration, "eval_time_s": 0.0,
            "chars_trained": 1000 * iteration, "trial_status": status}


def test_budget_is_judged_once_every_running_trial_reported_by_the_fastest(capsys: pytest.CaptureFixture[str]) -> None:
    slow, fast = _trial("slow0001", "lstm", Trial.RUNNING), _trial("fast0001", "gru", Trial.RUNNING)
    progress = SearchProgress("val_loss", "min", max_iters=27, budget_s=480.0)
    progress.on_trial_result(1, [slow, fast], slow, _result(1, 3.0, 60.0))
    assert capsys.readouterr().err == ""  # the fast trial has not reported yet
    progress.on_trial_result(2, [slow, fast], fast, _result(1, float("nan"), 20.0))
    assert "~20 s per iteration" in capsys.readouterr().err  # the fastest: 27 × 20 s > 8 min
    progress.on_trial_result(3, [slow, fast], fast, _result(2, 2.5, 20.0))
    assert capsys.readouterr().err == ""  # once
    assert progress.best == Best(2.5, "fast0001", "gru")  # the NaN row never counted


def test_no_budget_warning_once_a_trial_completed(capsys: pytest.CaptureFixture[str]) -> None:
    trial = _trial("done0001", "rnn", Trial.RUNNING)
    progress = SearchProgress("val_loss", "min", max_iters=2, budget_s=1.0)
    progress.on_trial_result(1, [trial], trial, _result(2, 2.0, 5.0, STATUS_COMPLETED))
    assert capsys.readouterr().err == ""


def test_fetch_warning_of_never_started_trials_is_hidden_and_others_stay(caplog: pytest.LogCaptureFixture) -> None:
    hide_misleading_ray_warnings()
    hide_misleading_ray_warnings()  # a second search in the same process adds no second filter
    logger = logging.getLogger(FETCH_LOGGER)
    missing = "FileNotFoundError('Could not fetch metrics for trainable_a: both result.json and progress.csv')"
    unreadable = "JSONDecodeError('Expecting value: line 1 column 1 (char 0)')"
    with caplog.at_level(logging.WARNING, logger=FETCH_LOGGER):
        logger.warning(f"Failed to fetch metrics for 1 trial(s):\n- trainable_a: {missing}")
        assert caplog.records == []
        logger.warning(f"Failed to fetch metrics for 2 trial(s):\n- trainable_a: {missing}\n"
                       f"- trainable_b: {unreadable}")
        logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == [
        f"Failed to fetch metrics for 1 trial(s):\n- trainable_b: {unreadable}", "something else"]


def test_real_short_search_prints_progress_and_warns_without_ray_noise(tmp_path: Path) -> None:
    """A real search in its own process and Ray, on one logical CPU: the first trial runs throughout the 40 s budget
    (4096 iterations), so the second never starts and Ray would warn that it cannot fetch its metrics. The budget
    ends the search the way Ctrl-C does (tuning.tune.resume), so --resume can continue both."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_OVERRIDE_RESOURCES='{"CPU": 1}')
    proc = subprocess.run([sys.executable, "-m", "tuning.search", "--space", "smoke", "--gpus-per-trial", "0",
                           "--storage-path", str(tmp_path / "runs"), "--name", "short", "--max-iters", "4096",
                           "--time-budget-s", "40", "--max-concurrent", "2", "--num-samples", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Result logdir" not in out and "Failed to fetch metrics" not in out, out[-3000:]
    lines = proc.stdout.splitlines()
    progress = [line for line in lines if line.startswith("progress: best val_loss")]
    assert progress and "left of 40 s" in progress[-1], out[-3000:]
    # the budget stops the search with both trials resumable: the first still running, the second never started
    assert "1 running" in progress[-1] and "0 completed" in progress[-1] and "1 pending" in progress[-1]
    warnings = [line for line in proc.stderr.splitlines() if "no trial will finish" in line]
    assert len(warnings) == 1 and "full-budget trial (4096 iterations)" in warnings[0], proc.stderr[-3000:]
