"""Hand-made experiment data for the benchmark tests: histories as load_experiment returns them, and raw Ray
``result.json`` rows written into experiment folders."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from tuning.files import EXPERIMENT_META
from tuning.report.results import history_frame


def history(rows: list[tuple[str, int, int, float, float]]) -> pd.DataFrame:
    """(trial_id, iteration, chars_trained, val_loss, timestamp) rows as load_experiment's history."""
    return history_frame([{"trial_id": t, "iteration": i, "chars_trained": c, "val_loss": v, "timestamp": ts}
                          for t, i, c, v, ts in rows])


# Two trials interleaved, listed out of order: a reports at 100, 110, 130; b at 105, 120 (and diverges).
HISTORY = [
    ("a", 2, 200, 2.0, 110.0),
    ("b", 1, 50, 2.5, 105.0),
    ("a", 1, 100, 2.2, 100.0),
    ("b", 2, 100, math.nan, 120.0),
    ("a", 3, 300, 1.9, 130.0),
]


def row(iteration: int, train: float, evaluation: float, took: float, timestamp: float,
        since_restore: int | None = None) -> dict[str, Any]:
    return {"iteration": iteration, "train_time_s": train, "eval_time_s": evaluation, "time_this_iter_s": took,
            "timestamp": timestamp, "iterations_since_restore": since_restore or iteration}


def write_experiment(path: Path, trials: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> Path:
    path.mkdir()
    (path / EXPERIMENT_META).write_text(json.dumps(meta))
    for trial_id, rows in trials.items():
        (path / trial_id).mkdir()
        (path / trial_id / "params.json").write_text("{}")
        (path / trial_id / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut sho')
    return path


# a: startup 14 − 11 = 3; second report 12 − (22 − 11) = 1. b: startup 35 − 33 = 2. Useful 22 + 33 = 55.
TRIALS = {"a1": [row(1, 10, 1, 14, 1014), row(2, 20, 2, 12, 1026)], "b2": [row(1, 30, 3, 35, 1040)]}

