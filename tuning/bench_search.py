"""Search benchmarks: what the search machinery buys, and what it costs.

``python -m tuning.bench_search {efficiency,overhead,multiobjective} ...``

- ``efficiency --budget-s S --seeds 0,1,2 [--space shakespeare]``: per seed, three searches under the same wall
  budget, each a ``python -m tuning.search`` subprocess: (a) the space as given (TPE + ASHA, the default),
  (b) random search at full budget (``sampler: random``, ``scheduler: none``), (c) the homework's way: the Problem 2
  grid (cell lstm/gru × seq_len 20/30/50 × head_depth 0/1; embed = hidden = 128, one layer, batch 128, lr 0.002)
  at full budget. Best-so-far validation loss against wall time and against characters trained; the compute the
  default needs to reach random search's final best loss (goal: at most a fifth of what random search needed).
- ``overhead EXPERIMENT_DIR ...``: the share of trial-slot time spent training and evaluating (goal ≥ 90%), and
  where the rest went: per-trial startup, per-iteration reporting/checkpointing, idle slots.
- ``multiobjective --budget-s S --seeds 0,1,2``: hypervolume of the accuracy/FLOPs front reached by (a) Pareto-aware
  MO-ASHA, (b) Ray's ASHA on the first objective, (c) random search at full budget; goal: (a) best, and reaching
  (c)'s final hypervolume with at most a third of the compute (c) needed.

Benchmarks, not tests: nothing here asserts a speed. Each prints a Markdown report, writes it atomically into
``--out`` (default ``benchmarks/``) beside a PNG plot, and keeps the maths in small pure functions of DataFrames
(tested without Ray in ``tests/test_bench_search.py``). ``--quick`` shrinks everything (smoke space, ~40 s budget,
one seed) for a smoke run; its numbers mean nothing. Experiments go to ``--out/runs/<method>-s<seed>``; a finished
one is reused on a rerun (``--fresh`` reruns it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tuning import pareto
from tuning.errors import UserError
from tuning.files import EXPERIMENT_META, atomic_write_text
from tuning.machine import cpu_model, library_versions
from tuning.report import full_budget, save_png
from tuning.results import load_experiment, read_meta
from tuning.spaces import find_space, load_space

DEFAULT_OUT = Path("benchmarks")
QUICK_SPACE, QUICK_BUDGET_S, QUICK_SEEDS = "smoke", 40.0, (0,)
GOAL_COMPUTE_RATIO = 0.2  # efficiency: default's compute to reach random's final best ≤ a fifth of random's
GOAL_TRAIN_SHARE = 0.90  # overhead: share of trial-slot time spent training and evaluating
GOAL_HV_RATIO = 1 / 3  # multiobjective: MO-ASHA reaches random's final hypervolume with ≤ a third of its compute
DEFAULT_TARGETS = (1.60, 1.50)

# The homework's Problem 2 study (search_spaces/hw3-p2.yaml): the grid and what it kept fixed. head_width and
# head_dropout describe its adjusted head (head_depth 1); depth 0 ignores them.
HOMEWORK_GRID: dict[str, list[Any]] = {"cell": ["lstm", "gru"], "seq_len": [20, 30, 50], "head_depth": [0, 1]}
HOMEWORK_FIXED: dict[str, Any] = {"embed_dim": 128, "hidden_size": 128, "num_layers": 1, "dropout": 0.0,
                                  "batch_size": 128, "lr": 0.002, "head_width": 128, "head_dropout": 0.5}
# --quick: the same shape of grid, sized for the smoke corpus (2.4 kB: seq_len 50 and batch 128 do not fit).
QUICK_GRID: dict[str, list[Any]] = {"cell": ["lstm", "gru"], "seq_len": [10, 20], "head_depth": [0, 1]}
QUICK_FIXED: dict[str, Any] = {"embed_dim": 16, "hidden_size": 32, "num_layers": 1, "dropout": 0.0,
                               "batch_size": 16, "lr": 0.01, "head_width": 32, "head_dropout": 0.5}

ACCURACY, FLOPS = "val_acc_last", "train_flops_per_char"
MO_OBJECTIVES: dict[str, str] = {ACCURACY: "max", FLOPS: "min"}

EFFICIENCY_METHODS = {  # method: what the report calls it
    "default": "TPE + ASHA (the space as given)",
    "random": "random search, full budget",
    "grid": "homework grid, full budget",
}
MO_METHODS = {
    "mo-asha": "MO sampler + Pareto-aware MO-ASHA",
    "asha-first": "MO sampler + Ray's ASHA on accuracy",
    "mo-random": "random search, full budget",
}


# --- the machine and the header ----------------------------------------------------------------------------------


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **library_versions(("torch", "ray", "optuna"))}

def header(title: str, argv: Sequence[str], prog: str = "python -m tuning.bench_search") -> list[str]:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    libs = " · ".join(f"{k} {v}" for k, v in versions().items())
    command = " ".join([prog, *map(shlex.quote, argv)])
    return [f"# {title}", "", f"{stamp} · CPU: {cpu_model()} ({core_count()} cores) · {libs}", "",
            f"Command: `{command}`", ""]


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table; NaN (a target never reached) reads "never"."""
    if value is None:
        return "–"
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        return "never"
    return f"{v:.{digits}g}"


def fmt_si(value: Any) -> str:
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        return "never"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g}"


def pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}%"


def md_table(head: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(head) - 1)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    return ["| " + " | ".join(head) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows)]


# --- pure maths: curves over an experiment's history --------------------------------------------------------------


def median_never_late(values: Iterable[float]) -> float:
    """Median where NaN means "never reached" (later than any number); NaN when at least half never did."""
    finite = [math.inf if math.isnan(v) else float(v) for v in values]
    if not finite:
        return math.nan
    m = statistics.median(finite)
    return math.nan if math.isinf(m) else m


def median(values: Iterable[float]) -> float:
    """Median of the values that are numbers (NaN when none is)."""
    known = [float(v) for v in values if not math.isnan(float(v))]
    return statistics.median(known) if known else math.nan


def progress_curve(history: pd.DataFrame, metric: str = "val_loss", mode: str = "min") -> pd.DataFrame:
    """One row per report of any trial, in report order: wall time, compute so far, best ``metric`` so far.

    ``history`` is :func:`tuning.results.load_experiment`'s (trial_id, iteration, chars_trained, ``metric``,
    timestamp). ``wall_s`` counts from the experiment's first report. ``chars_trained`` is cumulative over all trials:
    each report adds what its trial trained since its previous report, so early-stopped trials count (they were paid
    for). ``best`` is the best finite ``metric`` reported up to and including the row (NaN before the first).
    """
    columns = ["trial_id", "timestamp", "wall_s", "chars_trained", "value", "best"]
    h = history[history["timestamp"].notna()]
    if h.empty:
        return pd.DataFrame(columns=columns)
    h = h.sort_values(["timestamp", "trial_id", "iteration"], kind="stable").reset_index(drop=True)
    chars = pd.to_numeric(h["chars_trained"], errors="coerce").astype("float64")
    # Each trial's rows keep their order under the sort (a trial's timestamps only grow), so the previous row of
    # the same trial is the previous report. A restored trial may report fewer characters again: adds nothing.
    previous = chars.groupby(h["trial_id"]).shift(1).fillna(0.0)
    added = (chars - previous).fillna(0.0).clip(lower=0.0)
    value = pd.to_numeric(h[metric], errors="coerce").astype("float64")
    value = value.where(np.isfinite(value))
    best = (value.cummin() if mode == "min" else value.cummax()).ffill()
    stamps = h["timestamp"].astype("float64")
    return pd.DataFrame({
        "trial_id": h["trial_id"].astype("string"),
        "timestamp": stamps,
        "wall_s": stamps - stamps.iloc[0],
        "chars_trained": added.cumsum(),
        "value": value,
        "best": best,
    }, columns=columns)


def first_reach(curve: pd.DataFrame, target: float, x: str, column: str = "best", mode: str = "min") -> float:
    """``x`` (``wall_s`` or ``chars_trained``) at the first row where ``column`` reaches ``target``; NaN if never."""
    if curve.empty or math.isnan(target):
        return math.nan
    values = curve[column].astype("float64").to_numpy()
    with np.errstate(invalid="ignore"):
        reached = values <= target if mode == "min" else values >= target
    hits = np.flatnonzero(reached)
    return float(curve[x].iloc[hits[0]]) if hits.size else math.nan


def final(curve: pd.DataFrame, column: str = "best") -> float:
    return float(curve[column].iloc[-1]) if len(curve) else math.nan


def chars_at(curve: pd.DataFrame, timestamp: float) -> float:
    """Characters trained by all trials up to and including ``timestamp``."""
    seen = curve.loc[curve["timestamp"] <= timestamp, "chars_trained"]
    return float(seen.max()) if len(seen) else 0.0


def common_reference(trial_tables: Iterable[pd.DataFrame]) -> dict[str, float]:
    """One hypervolume reference for every run compared: accuracy 0, 1.1 × the largest training FLOPs per character
    of any completed trial of any run (the report's rule, pooled, so that hypervolumes are comparable)."""
    done = [full_budget(t)[FLOPS].astype("float64") for t in trial_tables]
    flops = pd.concat(done) if done else pd.Series(dtype="float64")
    flops = flops[np.isfinite(flops)]
    return {ACCURACY: 0.0, FLOPS: float(flops.max() * 1.1) if len(flops) else 1.0}


def hypervolume_curve(trials: pd.DataFrame, curve: pd.DataFrame, reference: Mapping[str, float]) -> pd.DataFrame:
    """Hypervolume of the accuracy/FLOPs front of the completed trials as they complete, against compute and wall.

    ``curve`` is the run's :func:`progress_curve` (it maps a moment to the compute spent by then and holds the run's
    first report). Starts at (0, 0, 0) and ends at the run's last report. Only full-budget, feasible trials enter
    (:func:`tuning.report.full_budget`).
    """
    rows = [{"wall_s": 0.0, "chars_trained": 0.0, "hypervolume": 0.0}]
    done = full_budget(trials).dropna(subset=[ACCURACY, FLOPS, "ended_at"]).sort_values("ended_at", kind="stable")
    start = float(curve["timestamp"].iloc[0]) if len(curve) else 0.0
    for k in range(1, len(done) + 1):
        end = float(done["ended_at"].iloc[k - 1])
        rows.append({"wall_s": end - start, "chars_trained": chars_at(curve, end),
                     "hypervolume": pareto.hypervolume_2d(done.iloc[:k], MO_OBJECTIVES, reference)})
    if len(curve):  # flat to the run's last report, so a plateau shows for as long as it lasted
        rows.append({"wall_s": float(curve["wall_s"].iloc[-1]), "chars_trained": final(curve, "chars_trained"),
                     "hypervolume": rows[-1]["hypervolume"]})
    return pd.DataFrame(rows, columns=["wall_s", "chars_trained", "hypervolume"])


# --- pure maths: where a trial slot's time goes -------------------------------------------------------------------


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


# --- space files for the compared methods -------------------------------------------------------------------------


def read_space_yaml(space: str) -> tuple[str, dict[str, Any]]:
    """(name, raw mapping) of a built-in space or a YAML file, validated first."""
    load_space(space)
    path = find_space(space)
    return path.stem, yaml.safe_load(path.read_text(encoding="utf-8"))


def random_space(data: Mapping[str, Any]) -> dict[str, Any]:
    """The same space, sampled at random, every trial at full budget."""
    return {**data, "sampler": "random", "scheduler": "none"}


def grid_space(data: Mapping[str, Any], quick: bool = False) -> dict[str, Any]:
    """The homework's Problem 2 grid on the space's corpus and budget; the space's other fixed values stay (e.g.
    ``val_max_chars``, so that every method is validated on the same characters)."""
    grid, fixed = (QUICK_GRID, QUICK_FIXED) if quick else (HOMEWORK_GRID, HOMEWORK_FIXED)
    kept = {k: v for k, v in (data.get("params") or {}).items() if not isinstance(v, dict)}
    params = {**kept, **fixed, **{k: {"type": "grid", "values": list(v)} for k, v in grid.items()}}
    out = {k: v for k, v in data.items() if k != "num_samples"}
    return {**out, "sampler": "grid", "scheduler": "none", "params": params}


def mo_space(data: Mapping[str, Any], sampler: str, scheduler: str) -> dict[str, Any]:
    """The space with the accuracy/FLOPs objectives, a sampler and a scheduler."""
    out = {k: v for k, v in data.items() if k not in ("objective", "objectives")}
    return {**out, "sampler": sampler, "scheduler": scheduler,
            "objectives": [{"metric": m, "mode": d} for m, d in MO_OBJECTIVES.items()]}


def write_space(out: Path, name: str, data: Mapping[str, Any]) -> Path:
    """Write a space copy under ``out/spaces/`` and check that it loads."""
    path = out / "spaces" / f"{name}.yaml"
    body = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
    atomic_write_text(path, f"# written by tuning.bench_search\n{body}")
    load_space(str(path))
    return path


# --- running searches ---------------------------------------------------------------------------------------------


class BenchError(RuntimeError):
    """A search the benchmark started failed; the message names its log."""


def run_search(space: str, storage: Path, name: str, budget_s: float, seed: int | None = None,
               extra: Sequence[str] = (), fresh: bool = False, log: Callable[[str], None] = print) -> Path:
    """Run ``python -m tuning.search`` in a subprocess and return its experiment directory.

    A finished experiment of that name is reused (``fresh``: removed and run again); an unfinished one is an error.
    The search's output goes to ``storage/<name>.log``.
    """
    storage = Path(storage).resolve()
    experiment = storage / name
    if experiment.exists():
        meta_file = experiment / EXPERIMENT_META
        finished = meta_file.is_file() and json.loads(meta_file.read_text()).get("finished_at")
        if finished and not fresh:
            log(f"reusing finished experiment {experiment}")
            return experiment
        if not fresh:
            raise BenchError(f"{experiment} exists but is unfinished: remove it or pass --fresh")
        shutil.rmtree(experiment)
    storage.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tuning.search", "--space", space, "--quiet", "--time-budget-s", f"{budget_s:g}",
               "--storage-path", str(storage), "--name", name]
    if seed is not None:
        command += ["--seed", str(seed)]
    command += list(extra)
    log_file = storage / f"{name}.log"
    log(f"search {name}: {' '.join(map(shlex.quote, command[1:]))} (log: {log_file})")
    started = time.perf_counter()
    with log_file.open("w", encoding="utf-8") as handle:
        proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=budget_s + 900)
    log(f"search {name}: exit {proc.returncode} after {time.perf_counter() - started:.0f} s")
    if proc.returncode != 0 or not (experiment / EXPERIMENT_META).is_file():
        tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"search {name} failed (exit {proc.returncode}); see {log_file}: " + " / ".join(tail))
    return experiment


def best_val_loss(experiment_dir: Path) -> tuple[float, int, int]:
    """(best finite val_loss any trial reported, trials, completed trials) of an experiment directory."""
    _, trials, history = load_experiment(Path(experiment_dir))
    losses = history["val_loss"].astype("float64")
    losses = losses[np.isfinite(losses)]
    return (float(losses.min()) if len(losses) else math.nan, len(trials),
            int((trials["status"] == "completed").sum()))


# --- efficiency ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EfficiencyRow:
    method: str
    seed: int
    trials: int
    chars_total: float
    final_best: float
    reach_wall_s: float  # to random search's final best loss (same seed)
    reach_chars: float
    target_wall_s: tuple[float, ...]  # to each absolute target loss


def efficiency_rows(curves: Mapping[tuple[str, int], pd.DataFrame], trial_counts: Mapping[tuple[str, int], int],
                    targets: Sequence[float]) -> list[EfficiencyRow]:
    """Per (method, seed): the figures of the report, each seed measured against that seed's random search."""
    rows = []
    for (method, seed), curve in curves.items():
        random_curve = curves.get(("random", seed))
        goal = final(random_curve) if random_curve is not None else math.nan
        rows.append(EfficiencyRow(
            method=method, seed=seed, trials=trial_counts.get((method, seed), 0),
            chars_total=final(curve, "chars_trained"), final_best=final(curve),
            reach_wall_s=first_reach(curve, goal, "wall_s"), reach_chars=first_reach(curve, goal, "chars_trained"),
            target_wall_s=tuple(first_reach(curve, t, "wall_s") for t in targets),
        ))
    return rows


def compute_ratios(rows: Sequence[EfficiencyRow], method: str = "default", baseline: str = "random") -> list[float]:
    """Per seed: ``method``'s compute to reach ``baseline``'s final best over ``baseline``'s own (NaN: never)."""
    base = {r.seed: r.reach_chars for r in rows if r.method == baseline}
    out = []
    for r in rows:
        if r.method == method and r.seed in base:
            b = base[r.seed]
            out.append(r.reach_chars / b if b > 0 and not math.isnan(r.reach_chars) else math.nan)
    return out


def render_efficiency(rows: Sequence[EfficiencyRow], targets: Sequence[float], argv: Sequence[str], space: str,
                      budget_s: float, seeds: Sequence[int], plot_name: str, quick: bool) -> str:
    lines = header("Search efficiency: TPE + ASHA against random search and the homework's grid", argv)
    if quick:
        lines += ["**--quick**: smoke space, one seed, a short budget: a smoke run, the numbers mean nothing.", ""]
    lines += [
        f"Space `{space}`; each method gets the same wall budget of {budget_s:g} s per seed "
        f"(seeds {', '.join(map(str, seeds))}), one `python -m tuning.search` subprocess each, run one after another. "
        "Best-so-far validation loss is the lowest val_loss any trial reported at any iteration; wall time counts "
        "from the experiment's first report; compute is every character trained by any trial by then (early-stopped "
        "trials included). \"To random's best\" is the first moment a method's best-so-far reached the final best of "
        "random search with the same seed. Medians over seeds; \"never\" where at least half the seeds never got "
        "there.",
        "",
    ]
    head = ["method", "final best val_loss", "wall s to random's best", "chars to random's best",
            *(f"wall s to {t:g}" for t in targets), "trials", "chars trained"]
    body = []
    for method, label in EFFICIENCY_METHODS.items():
        mine = [r for r in rows if r.method == method]
        if not mine:
            continue
        body.append([f"{method}: {label}", fmt(median(r.final_best for r in mine)),
                     fmt(median_never_late(r.reach_wall_s for r in mine), 3),
                     fmt_si(median_never_late(r.reach_chars for r in mine)),
                     *(fmt(median_never_late(r.target_wall_s[i] for r in mine), 3) for i in range(len(targets))),
                     fmt(median(r.trials for r in mine), 3), fmt_si(median(r.chars_total for r in mine))])
    lines += md_table(head, body)
    ratios = compute_ratios(rows)
    ratio = median_never_late(ratios)
    met = not math.isnan(ratio) and ratio <= GOAL_COMPUTE_RATIO
    lines += [
        "",
        f"Compute ratio default/random to reach random search's final best loss (median over seeds): "
        f"**{fmt(ratio, 3)}** (per seed: {', '.join(fmt(r, 3) for r in ratios) or '–'}); "
        f"goal ≤ {GOAL_COMPUTE_RATIO:g}: **{'met' if met else 'not met'}**",
        "",
        "Per seed:",
        "",
    ]
    per_seed = [[r.method, str(r.seed), fmt(r.final_best), fmt(r.reach_wall_s, 3), fmt_si(r.reach_chars),
                 *(fmt(t, 3) for t in r.target_wall_s), str(r.trials), fmt_si(r.chars_total)]
                for r in sorted(rows, key=lambda r: (r.seed, list(EFFICIENCY_METHODS).index(r.method)))]
    lines += md_table(["method", "seed", *head[1:]], per_seed, "ll" + "r" * (len(head) - 1))
    lines += ["", f"![best validation loss against compute and wall time]({plot_name})", ""]
    return "\n".join(lines)


def _finish_pair(fig: Any, ax_c: Any, ax_w: Any, ylabel: str, path: Path) -> None:
    """The two panels every search plot has: against characters trained (log) and against wall time."""
    ax_c.set_xscale("log")
    ax_c.set_xlabel("characters trained, all trials")
    ax_w.set_xlabel("wall time since first report (s)")
    for ax in (ax_c, ax_w):
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax_w.legend(fontsize=7)
    save_png(fig, path)


def plot_efficiency(curves: Mapping[tuple[str, int], pd.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_c, ax_w) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = dict(zip(EFFICIENCY_METHODS, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    styles = ("-", "--", ":", "-.")
    for (method, seed), curve in sorted(curves.items()):
        shown = curve[curve["best"].notna()]
        label = f"{method} s{seed}"
        style = styles[seed % len(styles)]
        ax_c.plot(shown["chars_trained"].clip(lower=1), shown["best"], drawstyle="steps-post",
                  color=colors.get(method), ls=style, label=label)
        ax_w.plot(shown["wall_s"], shown["best"], drawstyle="steps-post", color=colors.get(method), ls=style,
                  label=label)
    _finish_pair(fig, ax_c, ax_w, "best validation loss so far (nats/char)", path)


def cmd_efficiency(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out: Path = args.out
    space, budget, seeds = (QUICK_SPACE, QUICK_BUDGET_S, QUICK_SEEDS) if args.quick else \
        (args.space, args.budget_s, args.seeds)
    budget = args.budget_s if args.quick and args.budget_given else budget
    prefix = "quick-" if args.quick else ""
    name, data = read_space_yaml(space)
    spaces = {
        "default": space,
        "random": str(write_space(out, f"{prefix}{name}-random", random_space(data))),
        "grid": str(write_space(out, f"{prefix}{name}-grid", grid_space(data, quick=args.quick))),
    }
    curves: dict[tuple[str, int], pd.DataFrame] = {}
    counts: dict[tuple[str, int], int] = {}
    for seed in seeds:
        for method in args.methods:
            experiment = run_search(spaces[method], out / "runs", f"{prefix}{method}-s{seed}", budget, seed,
                                    args.search_args, args.fresh, log=_log)
            _, trials, history = load_experiment(experiment)
            curves[(method, seed)] = progress_curve(history)
            counts[(method, seed)] = len(trials)
    rows = efficiency_rows(curves, counts, args.targets)
    stem = f"efficiency{'-quick' if args.quick else ''}"
    plot_efficiency(curves, out / f"{stem}.png")
    text = render_efficiency(rows, args.targets, argv, space, budget, seeds, f"{stem}.png", args.quick)
    atomic_write_text(out / f"{stem}.md", text)
    print(text)
    _log(f"written: {out / f'{stem}.md'}")
    return 0


# --- overhead -----------------------------------------------------------------------------------------------------


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
    _log(f"written: {out / 'overhead.md'}")
    return 0


# --- multiobjective -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoRow:
    method: str
    seed: int
    trials: int
    completed: int
    final_hv: float
    reach_chars: float  # to the random search's final hypervolume (same seed)
    chars_total: float


def mo_rows(hv_curves: Mapping[tuple[str, int], pd.DataFrame], counts: Mapping[tuple[str, int], tuple[int, int]],
            totals: Mapping[tuple[str, int], float], baseline: str = "mo-random") -> list[MoRow]:
    rows = []
    for (method, seed), curve in hv_curves.items():
        base = hv_curves.get((baseline, seed))
        goal = final(base, "hypervolume") if base is not None else math.nan
        # a random search with no completed trial sets no goal (hypervolume 0 is reached by anything)
        goal = goal if goal > 0 else math.nan
        rows.append(MoRow(method=method, seed=seed, trials=counts.get((method, seed), (0, 0))[0],
                          completed=counts.get((method, seed), (0, 0))[1], final_hv=final(curve, "hypervolume"),
                          reach_chars=first_reach(curve, goal, "chars_trained", "hypervolume", "max"),
                          chars_total=totals.get((method, seed), math.nan)))
    return rows


def render_mo(rows: Sequence[MoRow], reference: Mapping[str, float], argv: Sequence[str], space: str,
              budget_s: float, seeds: Sequence[int], sampler: str, plot_name: str, quick: bool) -> str:
    lines = header("Multi-objective search: hypervolume of the accuracy/FLOPs front", argv)
    if quick:
        lines += ["**--quick**: smoke space, one seed, a short budget: a smoke run, the numbers mean nothing.", ""]
    lines += [
        f"Space `{space}` with objectives {ACCURACY} (max) and {FLOPS} (min); sampler `{sampler}` for the first two "
        f"methods; the same wall budget of {budget_s:g} s per method and seed (seeds {', '.join(map(str, seeds))}). "
        "Hypervolume of the completed (full-budget, feasible) trials, as they complete, against every character "
        f"trained by any trial by then. One reference point for every run: accuracy {reference[ACCURACY]:g}, "
        f"{FLOPS} {fmt_si(reference[FLOPS])} (1.1 × the largest of any completed trial of any run). "
        "\"To random's HV\" is the compute at which a method's hypervolume first reached the final hypervolume of "
        "random search with the same seed. Medians over seeds; \"never\" where at least half never got there.",
        "",
    ]
    head = ["method", "final HV (median)", "chars to random's HV", "trials", "completed", "chars trained"]
    body = []
    for method, label in MO_METHODS.items():
        mine = [r for r in rows if r.method == method]
        if mine:
            body.append([f"{method}: {label}", fmt(median(r.final_hv for r in mine)),
                         fmt_si(median_never_late(r.reach_chars for r in mine)),
                         fmt(median(r.trials for r in mine), 3), fmt(median(r.completed for r in mine), 3),
                         fmt_si(median(r.chars_total for r in mine))])
    lines += md_table(head, body)
    finals = {m: median(r.final_hv for r in rows if r.method == m) for m in MO_METHODS}
    best_method = max((m for m in finals if not math.isnan(finals[m])), key=lambda m: finals[m], default=None)
    base = {r.seed: r.reach_chars for r in rows if r.method == "mo-random"}
    ratios = [r.reach_chars / base[r.seed] if base.get(r.seed, 0) > 0 else math.nan
              for r in rows if r.method == "mo-asha" and r.seed in base]
    ratio = median_never_late(ratios)
    met = best_method == "mo-asha" and not math.isnan(ratio) and ratio <= GOAL_HV_RATIO
    lines += [
        "",
        f"Best final hypervolume (median): **{best_method or '–'}**. Compute ratio mo-asha/random to reach random "
        f"search's final hypervolume (median over seeds): **{fmt(ratio, 3)}** "
        f"(per seed: {', '.join(fmt(r, 3) for r in ratios) or '–'}); goal: mo-asha best and ratio ≤ 1/3: "
        f"**{'met' if met else 'not met'}**",
        "",
        "Per seed:",
        "",
    ]
    per_seed = [[r.method, str(r.seed), fmt(r.final_hv), fmt_si(r.reach_chars), str(r.trials), str(r.completed),
                 fmt_si(r.chars_total)]
                for r in sorted(rows, key=lambda r: (r.seed, list(MO_METHODS).index(r.method)))]
    lines += md_table(["method", "seed", "final HV", *head[2:]], per_seed, "llrrrrr")
    lines += ["", f"![hypervolume against compute]({plot_name})", ""]
    return "\n".join(lines)


def plot_mo(hv_curves: Mapping[tuple[str, int], pd.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_c, ax_w) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = dict(zip(MO_METHODS, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    styles = ("-", "--", ":", "-.")
    for (method, seed), curve in sorted(hv_curves.items()):
        style = styles[seed % len(styles)]
        spent = curve[curve["chars_trained"] > 0]  # log axis: from the first completion on
        ax_c.plot(spent["chars_trained"], spent["hypervolume"], drawstyle="steps-post",
                  color=colors.get(method), ls=style, label=f"{method} s{seed}")
        ax_w.plot(curve["wall_s"], curve["hypervolume"], drawstyle="steps-post", color=colors.get(method), ls=style,
                  label=f"{method} s{seed}")
    _finish_pair(fig, ax_c, ax_w, "hypervolume (accuracy × train FLOPs/char)", path)


def cmd_multiobjective(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out: Path = args.out
    space, budget, seeds = (QUICK_SPACE, QUICK_BUDGET_S, QUICK_SEEDS) if args.quick else \
        (args.space, args.budget_s, args.seeds)
    budget = args.budget_s if args.quick and args.budget_given else budget
    prefix = "quick-" if args.quick else ""
    name, data = read_space_yaml(space)
    spaces = {
        "mo-asha": mo_space(data, args.sampler, "asha"),
        "asha-first": mo_space(data, args.sampler, "asha_first"),
        "mo-random": mo_space(data, "random", "none"),
    }
    files = {m: str(write_space(out, f"{prefix}{name}-{m}", d)) for m, d in spaces.items()}
    loaded: dict[tuple[str, int], tuple[pd.DataFrame, pd.DataFrame]] = {}
    for seed in seeds:
        for method in MO_METHODS:
            experiment = run_search(files[method], out / "runs", f"{prefix}{method}-s{seed}", budget, seed,
                                    args.search_args, args.fresh, log=_log)
            _, trials, history = load_experiment(experiment)
            loaded[(method, seed)] = (trials, history)
    reference = common_reference(t for t, _ in loaded.values())
    hv_curves, counts, totals = {}, {}, {}
    for key, (trials, history) in loaded.items():
        curve = progress_curve(history)
        hv_curves[key] = hypervolume_curve(trials, curve, reference)
        counts[key] = (len(trials), len(full_budget(trials)))
        totals[key] = final(curve, "chars_trained")
    rows = mo_rows(hv_curves, counts, totals)
    stem = f"multiobjective{'-quick' if args.quick else ''}"
    plot_mo(hv_curves, out / f"{stem}.png")
    text = render_mo(rows, reference, argv, space, budget, seeds, args.sampler, f"{stem}.png", args.quick)
    atomic_write_text(out / f"{stem}.md", text)
    print(text)
    _log(f"written: {out / f'{stem}.md'}")
    return 0


# --- command line -------------------------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds={text!r}: comma-separated integers >= 0, e.g. 0,1,2") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"--seeds={text!r}: comma-separated integers >= 0, e.g. 0,1,2")
    return seeds


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    allowed = ",".join(EFFICIENCY_METHODS)
    if not methods or any(m not in EFFICIENCY_METHODS for m in methods):
        raise argparse.ArgumentTypeError(f"--methods={text!r}: a comma-separated subset of {allowed}")
    if "random" not in methods:  # every figure of the report is measured against random search
        raise argparse.ArgumentTypeError(f"--methods={text!r}: must include random (the baseline of the ratio)")
    return tuple(m for m in EFFICIENCY_METHODS if m in methods)


def _targets(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--targets={text!r}: comma-separated losses, e.g. 1.6,1.5") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tuning.bench_search", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")

    def searches(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("--budget-s", type=_positive, default=600.0,
                       help="wall budget of each search in seconds (default 600)")
        p.add_argument("--seeds", type=_seeds, default=(0, 1, 2), help="comma-separated seeds (default 0,1,2)")
        p.add_argument("--space", default="shakespeare", help="built-in space or YAML file (default shakespeare)")
        p.add_argument("--search-args", type=shlex.split, default=[],
                       help="more flags for every tuning.search run, e.g. \"--gpus-per-trial 0.25\"")
        p.add_argument("--fresh", action="store_true", help="rerun searches whose experiment folders exist")
        p.add_argument("--quick", action="store_true",
                       help=f"smoke run: space {QUICK_SPACE}, {QUICK_BUDGET_S:g} s, seed 0 (numbers mean nothing)")

    eff = sub.add_parser("efficiency", help="TPE + ASHA against random search and the homework's grid")
    searches(eff)
    eff.add_argument("--targets", type=_targets, default=DEFAULT_TARGETS,
                     help="validation losses to time the methods to (default 1.6,1.5)")
    eff.add_argument("--methods", type=_methods, default=tuple(EFFICIENCY_METHODS),
                     help="comma-separated methods to run, random included (default default,random,grid; "
                          "drop grid to spend a long budget on the ratio)")
    ovh = sub.add_parser("overhead", help="share of trial-slot time spent training and evaluating")
    common(ovh)
    ovh.add_argument("experiments", nargs="+", help="experiment directories")
    mo = sub.add_parser("multiobjective", help="hypervolume: MO-ASHA against ASHA on one objective and random")
    searches(mo)
    mo.add_argument("--sampler", choices=("nsga2", "tpe"), default="nsga2",
                    help="sampler of the two ASHA methods (default nsga2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.budget_given = any(a == "--budget-s" or a.startswith("--budget-s=") for a in argv)
    commands = {"efficiency": cmd_efficiency, "overhead": cmd_overhead, "multiobjective": cmd_multiobjective}
    try:
        return commands[args.command](args, argv)
    except (UserError, BenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, UserError) else 1


if __name__ == "__main__":
    sys.exit(main())
