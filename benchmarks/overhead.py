"""Orchestration overhead of a finished search: the share of trial-slot time spent training and evaluating
(goal ≥ 90%), and where the rest went: per-trial startup, per-iteration reporting and checkpoints, idle slots.

``python -m benchmarks.search overhead EXPERIMENT_DIR ... [--out benchmarks]``. The split is a pure function of
Ray's raw ``result.json`` rows (tested on hand-made experiments in ``tests/test_bench_overhead.py``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import header, log, md_table, pct
from tuning.files import atomic_write_text
from tuning.report.plots import save_png
from tuning.report.results import read_meta

GOAL_TRAIN_SHARE = 0.90  # share of trial-slot time spent training and evaluating


@dataclass(frozen=True)
class Overhead:
    """Trial-slot time of one experiment (seconds), split four ways; the parts add up to ``capacity_s``."""

    name: str
    slots: int
    wall_s: float
    trials: int
    rows: int
    useful_s: float  # training + evaluation: train_time_s + eval_time_s at each trial's last row
    startup_s: float  # a trial's (or a restored trial's) first report: time_this_iter_s − its train + eval
    per_iter_s: float  # later reports: time_this_iter_s − the train + eval added since the previous iteration

    @property
    def capacity_s(self) -> float:
        return self.slots * self.wall_s

    @property
    def idle_s(self) -> float:
        """Slot time no trial reported on: free slots, worker start, scheduling, and work lost to restarts."""
        return self.capacity_s - self.useful_s - self.startup_s - self.per_iter_s

    def share(self, seconds: float) -> float:
        return seconds / self.capacity_s if self.capacity_s > 0 else math.nan

    @property
    def useful_share(self) -> float:
        return self.share(self.useful_s)


def _te(row: Mapping[str, Any]) -> float:
    return float(row.get("train_time_s") or 0.0) + float(row.get("eval_time_s") or 0.0)


def overhead_from_rows(name: str, rows_by_trial: Mapping[str, Sequence[Mapping[str, Any]]], slots: int,
                       wall_s: float | None) -> Overhead:
    """Split ``slots × wall_s`` by Ray's raw ``result.json`` rows (file order, restored iterations included).

    ``time_this_iter_s`` is the wall time between a trial's consecutive reports (from its start, for its first),
    while ``train_time_s``/``eval_time_s`` are the trainer's cumulative clocks, carried over a restore. A row's
    non-training time is its ``time_this_iter_s`` less the train + eval added since the last row of the iteration
    before. ``wall_s`` None: from the earliest trial start (first timestamp − its ``time_this_iter_s``) to the last
    report.
    """
    useful = startup = per_iter = 0.0
    starts, ends, count = [], [], 0
    for rows in rows_by_trial.values():
        done_at: dict[int, float] = {}  # iteration -> train + eval at its last row so far
        for k, row in enumerate(rows):
            count += 1
            iteration = int(row.get("iteration", row.get("training_iteration", k + 1)))
            took = float(row.get("time_this_iter_s") or 0.0)
            extra = took - (_te(row) - done_at.get(iteration - 1, 0.0))
            if k == 0 or int(row.get("iterations_since_restore", 0)) == 1:
                startup += extra
            else:
                per_iter += extra
            done_at[iteration] = _te(row)
            if row.get("timestamp") is not None:
                starts.append(float(row["timestamp"]) - took)
                ends.append(float(row["timestamp"]))
        if rows:
            useful += _te(rows[-1])
    if wall_s is None or not wall_s > 0:
        wall_s = max(ends) - min(starts) if ends else 0.0
    return Overhead(name=name, slots=slots, wall_s=float(wall_s), trials=sum(1 for r in rows_by_trial.values() if r),
                    rows=count, useful_s=useful, startup_s=startup, per_iter_s=per_iter)


def read_raw_rows(experiment_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial folder's ``result.json`` rows as written (a line cut short by a kill is skipped)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for result in sorted(Path(experiment_dir).glob("*/result.json")):
        rows = []
        for line in result.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
        out[result.parent.name] = rows
    return out


def experiment_overhead(experiment_dir: Path) -> Overhead:
    experiment_dir = Path(experiment_dir)
    meta = read_meta(experiment_dir)
    slots = int((meta.get("resources") or {}).get("slots") or 1)
    wall = meta.get("wall_time_s")
    return overhead_from_rows(experiment_dir.name, read_raw_rows(experiment_dir), slots,
                              float(wall) if wall else None)


def render_overhead(items: Sequence[Overhead], argv: Sequence[str], plot_name: str) -> str:
    lines = header("Search overhead: where trial-slot time goes", argv)
    lines += [
        "Slot time = slots × the experiment's wall time (`wall_time_s` of its metadata, else from the first trial's "
        "start to the last report). Training + evaluation = the trainer's own `train_time_s + eval_time_s` at each "
        "trial's last report, summed. Startup = each trial's first report's `time_this_iter_s` (Ray's wall time "
        "since the trial started) less its training + evaluation: model build, FLOP count, data to device. "
        "Per-iteration = later reports' `time_this_iter_s` less the training + evaluation they added: reporting, "
        "checkpoints, and the last iteration's inference timing and text sample. Idle = the rest: free slots, "
        "worker processes starting, scheduling, and work lost to restarts.",
        "",
    ]
    head = ["experiment", "slots", "wall s", "trials", "training + evaluation", "startup", "per-iteration", "idle",
            f"goal ≥ {GOAL_TRAIN_SHARE:.0%}"]
    body = [[o.name, str(o.slots), f"{o.wall_s:.0f}", str(o.trials), pct(o.useful_share), pct(o.share(o.startup_s)),
             pct(o.share(o.per_iter_s)), pct(o.share(o.idle_s)),
             "**met**" if o.useful_share >= GOAL_TRAIN_SHARE else "**not met**"] for o in items]
    lines += md_table(head, body, "lrrrrrrrl")
    lines += ["", "Seconds of slot time:", ""]
    seconds = [[o.name, f"{o.capacity_s:.0f}", f"{o.useful_s:.0f}", f"{o.startup_s:.1f}",
                f"{o.startup_s / o.trials:.2f}" if o.trials else "–", f"{o.per_iter_s:.1f}",
                f"{o.per_iter_s / max(1, o.rows - o.trials):.3f}", f"{o.idle_s:.0f}"] for o in items]
    lines += md_table(["experiment", "slot s", "training + evaluation s", "startup s", "startup s/trial",
                       "per-iteration s", "per-iteration s/report", "idle s"], seconds)
    lines += ["", f"![trial-slot time by use]({plot_name})", ""]
    return "\n".join(lines)


def plot_overhead(items: Sequence[Overhead], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(items)))
    parts = (("training + evaluation", "useful_s", "tab:green"), ("startup", "startup_s", "tab:orange"),
             ("per-iteration", "per_iter_s", "tab:red"), ("idle", "idle_s", "tab:gray"))
    left = np.zeros(len(items))
    names = [o.name for o in items]
    for label, attr, color in parts:
        widths = np.array([100 * o.share(getattr(o, attr)) for o in items])
        ax.barh(names, widths, left=left, color=color, label=label)
        left += widths
    ax.axvline(100 * GOAL_TRAIN_SHARE, color="black", ls="--", lw=1)
    ax.set_xlabel("share of trial-slot time (%)")
    ax.legend(fontsize=7, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    save_png(fig, path)


def cmd_overhead(args: argparse.Namespace, argv: Sequence[str]) -> int:
    items = [experiment_overhead(Path(d)) for d in args.experiments]
    out: Path = args.out
    plot_overhead(items, out / "overhead.png")
    text = render_overhead(items, argv, "overhead.png")
    atomic_write_text(out / "overhead.md", text)
    print(text)
    log(f"written: {out / 'overhead.md'}")
    return 0

