"""The report's tables, built by plain functions of an experiment's DataFrames: fronts, hypervolumes, counts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tuning.report.fronts import (
    ACCURACY,
    COSTS,
    FLOPS,
    best_per_cell,
    build_fronts,
    full_budget,
    rung_tables,
    searched_objectives,
)
from tuning.spec import pareto

FRONT_HPARAMS = ("cell", "seq_len", "embed_dim", "hidden_size", "num_layers", "dropout", "head_depth", "head_width",
                 "head_dropout", "lr", "batch_size")
# Minimised costs that span orders of magnitude across a search (50 k to 16 M training FLOPs per character in the
# 12-minute multi-objective benchmark): hypervolumes measure them on a log10 axis (see on_log_axes).
LOG_METRICS = frozenset({*COSTS, "flops", "macs", "calflops_flops", "calflops_macs", "flops_per_char",
                         "macs_per_char"})


@dataclass
class Tables:
    meta: dict[str, Any]
    trials: pd.DataFrame
    history: pd.DataFrame
    pareto: pd.DataFrame  # one row per (front, trial on it)
    hypervolume: float
    hv_reference: dict[str, float]
    hv_trace: pd.DataFrame | None = None  # multi-objective searches: hypervolume as trials complete
    at_rung: dict[int, pd.DataFrame] = field(default_factory=dict)  # rung -> the trials measured there


def hv_reference(done: pd.DataFrame, objectives: dict[str, str]) -> dict[str, float]:
    """A reference point 10% beyond the worst completed trial in each objective (0 for a maximised share)."""
    ref = {}
    for metric, mode in objectives.items():
        values = done[metric].astype("float64")
        if mode == "max":
            ref[metric] = 0.0 if values.min() >= 0 else float(values.min() * 1.1)
        else:
            ref[metric] = float(values.max() * 1.1)
    return ref


def log_axes(objectives: Mapping[str, str]) -> list[str]:
    """The objectives a hypervolume measures in decades: minimised costs named in :data:`LOG_METRICS`."""
    return [m for m, mode in objectives.items() if mode == "min" and m in LOG_METRICS]


def on_log_axes(df: pd.DataFrame, reference: Mapping[str, float],
                objectives: Mapping[str, str]) -> tuple[pd.DataFrame, dict[str, float]]:
    """The rows and the reference point with every :func:`log_axes` objective as its log10.

    A model's cost is judged by ratios (half the FLOPs is as good a saving at 100 k as at 10 M), and the costs of
    the models in one search span decades. On a linear axis the strip between the most accurate model and the
    reference holds nearly all the area (94% of a 12-minute search's accuracy/FLOPs hypervolume), so the
    hypervolume ranks searches by their best accuracy alone; on a log axis every halving of the cost adds the same
    area wherever it happens. Fronts do not change (log10 is monotone); only areas do. A cost ≤ 0 becomes NaN, and
    :mod:`tuning.spec.pareto` leaves such rows out of the hypervolume.
    """
    logged = log_axes(objectives)
    if not logged:
        return df, dict(reference)
    costs = {m: df[m].astype("float64") for m in logged}
    out = df.assign(**{m: np.log10(c.where(c > 0)) for m, c in costs.items()})
    return out, {**reference, **{m: math.log10(reference[m]) for m in logged}}


def hypervolume_trace(trials: pd.DataFrame, history: pd.DataFrame, objectives: dict[str, str],
                      started_at: float) -> pd.DataFrame:
    """Hypervolume of the searched objectives' front as trials complete, against wall time and compute.

    Compute at a moment is every character trained by any trial up to then (early-stopped trials included:
    they were paid for). The reference point is fixed from all completed trials, so the curve is monotone. Cost
    objectives count in decades (:func:`on_log_axes`).
    """
    done = full_budget(trials).dropna(subset=[*objectives, "ended_at"]).sort_values("ended_at")
    columns = ["trial_id", "wall_s", "chars_trained", "hypervolume"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    logged, ref = on_log_axes(done, hv_reference(done, objectives), objectives)
    stamps = history["timestamp"].astype("float64")
    rows = []
    for k in range(1, len(done) + 1):
        seen = done.iloc[:k]
        end = float(seen["ended_at"].iloc[-1])
        points = pareto.to_minimisation(logged.iloc[:k], objectives)
        ref_min = [(-ref[m] if mode == "max" else ref[m]) for m, mode in objectives.items()]
        rows.append({"trial_id": seen["trial_id"].iloc[-1], "wall_s": end - started_at,
                     "chars_trained": int(history.loc[stamps <= end, "chars_trained"].groupby(
                         history.loc[stamps <= end, "trial_id"]).max().sum()),
                     "hypervolume": pareto.hypervolume(points, ref_min)})
    return pd.DataFrame(rows, columns=columns)


def accuracy_hypervolume(trials: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """Hypervolume of the full-budget accuracy / training-FLOPs front (over log10 FLOPs: :func:`on_log_axes`) and
    its reference point (in FLOPs): accuracy 0 and 10% above the most expensive completed trial."""
    done = full_budget(trials)
    flops = done[FLOPS].astype("float64")
    reference = {ACCURACY: 0.0, FLOPS: float(flops.max() * 1.1) if flops.notna().any() else 1.0}
    objectives = {ACCURACY: "max", FLOPS: "min"}
    logged, logged_ref = on_log_axes(done, reference, objectives)
    hv = pareto.hypervolume_2d(logged, objectives, logged_ref) if len(done) else 0.0
    return float(hv), reference


def build_tables(meta: dict[str, Any], trials: pd.DataFrame, history: pd.DataFrame) -> Tables:
    hv, reference = accuracy_hypervolume(trials)
    trace = None
    objectives = searched_objectives(meta)
    if len(objectives) > 1:
        started = pd.Timestamp(meta["started_at"]).timestamp() if meta.get("started_at") else 0.0
        trace = hypervolume_trace(trials, history, objectives, started)
    return Tables(meta, trials, history, build_fronts(trials, history, meta), hv, reference, trace,
                  rung_tables(trials, history, meta))


def trials_to_evaluate(trials: pd.DataFrame, history: pd.DataFrame, meta: dict[str, Any]) -> list[str]:
    """The trials worth evaluating on the whole validation split: every one on a front the report shows (full
    budget and per rung) and the best of each cell type by the searched objective, sorted by id.

    A rung-front trial may have trained past its rung; its checkpoint is its last one, and the evaluation records
    that iteration, so the report shows the whole-split figure only where the iterations agree.
    """
    on_fronts = set(build_fronts(trials, history, meta)["trial_id"])
    return sorted(on_fronts | set(best_per_cell(trials, meta)["trial_id"]))


def early_stopping_saving(trials: pd.DataFrame, max_iters: int) -> tuple[int, int]:
    """(iterations the scheduler saved, full budget in iterations) over the completed and early-stopped trials.

    Only the scheduler's decisions count: a trial paused, unfinished or never started was cut off by the end of
    the search, not saved by early stopping. Counted in iterations, since characters round up to whole batches.
    """
    judged = trials[trials["status"].isin(["completed", "early_stopped"])]
    stopped = judged.loc[judged["status"] == "early_stopped", "iteration"].astype("float64").fillna(0)
    saved = int((max_iters - stopped).clip(lower=0).sum())
    return saved, len(judged) * max_iters


def wilson_interval(share: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``share`` of ``n`` trials (Wilson 1927, JASA 22:209-212).

    Unlike share ± z·se it stays within [0, 1] and keeps a useful width at the small counts a smoke search has.
    """
    if n <= 0 or not math.isfinite(share):
        return math.nan, math.nan
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
