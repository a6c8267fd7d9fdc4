"""Which trials the report compares: Pareto fronts at the full budget and at each ASHA rung, and the best per cell.

Trials are compared only at equal budget. A trial stopped early would look cheap only because it was cut short,
so the full-budget fronts hold completed trials alone; and since a short search may complete none, each ASHA rung
gets a front of every trial measured there (its history row at that iteration), which is an honest comparison even
when no trial finished. Fronts rank by the search's own objective(s) against each cost; the accuracy fronts are a
second view. Pure functions over the trials and history tables (:mod:`tuning.report.results`); the maths is
:mod:`tuning.spec.pareto`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tuning.report.results import HISTORY_METRICS
from tuning.spec import pareto
from tuning.spec.rungs import asha_rungs
from tuning.spec.space import ASHA_SCHEDULERS

ACCURACY = "val_acc_last"
FLOPS = "train_flops_per_char"
COSTS = {
    FLOPS: "training FLOPs per character",
    "params": "parameters",
    "train_time_s": "training time (s)",
    "inference_latency_ms": "inference latency (ms)",
}
# A rung front needs this many trials measured there: fewer say little about a trade-off.
MIN_RUNG_TRIALS = 4
# pareto.parquet: one row per (front, trial on it); budget_iters is the iterations every trial of the front trained.
PARETO_TYPES = {"front": "string", "budget_iters": "Int64", "trial_id": "string", ACCURACY: "float64",
                "val_loss": "float64", **{c: "float64" for c in COSTS}}


def front_name(objectives: dict[str, str]) -> str:
    return " & ".join(f"{k} ({v})" for k, v in objectives.items())


def rung_front_name(objectives: dict[str, str], rung: int) -> str:
    return f"{front_name(objectives)} after {rung} iterations"


def searched_objectives(meta: dict[str, Any]) -> dict[str, str]:
    listed = meta.get("objectives") or [meta.get("objective") or {"metric": "val_loss", "mode": "min"}]
    return {o["metric"]: o["mode"] for o in listed}


def _feasible(trials: pd.DataFrame) -> pd.Series | bool:
    return trials["feasible"].fillna(True).astype(bool) if "feasible" in trials else True


def full_budget(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that may enter a full-budget front: completed their budget and within the experiment's constraints."""
    return trials[(trials["status"] == "completed") & _feasible(trials)]


def objective_fronts(meta: dict[str, Any]) -> list[dict[str, str]]:
    """The searched objectives against each cost, then against all costs at once (a cost searched is not repeated)."""
    searched = searched_objectives(meta)
    fronts = [{**searched, cost: "min"} for cost in COSTS]
    fronts.append({**searched, **{cost: "min" for cost in COSTS}})
    return _distinct(fronts)


def accuracy_fronts() -> list[dict[str, str]]:
    """Accuracy against each cost and against all of them: the second view, in the homework's terms."""
    return [*({ACCURACY: "max", cost: "min"} for cost in COSTS), {ACCURACY: "max", **{c: "min" for c in COSTS}}]


def _distinct(fronts: list[dict[str, str]]) -> list[dict[str, str]]:
    seen, out = set(), []
    for f in fronts:
        if front_name(f) not in seen:
            seen.add(front_name(f))
            out.append(f)
    return out


def rung_objectives(meta: dict[str, Any]) -> dict[str, str]:
    """What a rung front weighs: the searched objective(s) against training FLOPs per character."""
    return {**searched_objectives(meta), FLOPS: "min"}


def rungs_of(meta: dict[str, Any]) -> list[int]:
    """The iterations at which the experiment's ASHA decided, ascending; [] for a search without ASHA."""
    if meta.get("scheduler") not in ASHA_SCHEDULERS:
        return []
    budget = meta.get("budget", {})
    return asha_rungs(int(budget.get("max_iters", 0)), int(budget.get("grace_iters", 1)),
                      int(budget.get("reduction_factor", 3)))


def at_iteration(trials: pd.DataFrame, history: pd.DataFrame, iteration: int) -> pd.DataFrame:
    """One row per trial that reported ``iteration``: its trial row with that iteration's measurements.

    Every trial that reached a rung reported there, so this compares them all at one budget. Diverged trials and
    those outside the constraints are left out, as from the full-budget fronts. Costs that do not change with
    training (parameters, FLOPs) and the whole-split figures stay the trial's own.
    """
    rows = history[history["iteration"] == iteration].drop_duplicates("trial_id", keep="last")
    keep = trials[(trials["status"] != "diverged") & _feasible(trials)]
    measured = [m for m in HISTORY_METRICS if m in rows]
    merged = keep.drop(columns=[m for m in measured if m in keep]).merge(
        rows[["trial_id", *measured]], on="trial_id", how="inner")
    return merged[list(trials.columns)] if set(trials.columns) <= set(merged.columns) else merged


def rung_tables(trials: pd.DataFrame, history: pd.DataFrame, meta: dict[str, Any]) -> dict[int, pd.DataFrame]:
    """{rung: the trials measured there} for every rung where at least :data:`MIN_RUNG_TRIALS` have every
    objective of :func:`rung_objectives` finite."""
    objectives = rung_objectives(meta)
    out = {}
    for rung in rungs_of(meta):
        table = at_iteration(trials, history, rung)
        if not set(objectives) <= set(table.columns):
            continue
        if int(np.isfinite(pareto.to_minimisation(table, objectives)).all(axis=1).sum()) >= MIN_RUNG_TRIALS:
            out[rung] = table
    return out


def _rows(front: pd.DataFrame, name: str, budget: int) -> list[dict[str, Any]]:
    return [{"front": name, "budget_iters": budget, "trial_id": t["trial_id"], ACCURACY: t[ACCURACY],
             "val_loss": t["val_loss"], **{c: t[c] for c in COSTS}} for _, t in front.iterrows()]


def build_fronts(trials: pd.DataFrame, history: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """Every front as :data:`PARETO_TYPES` rows, best first within each: the searched objectives against each cost
    at the full budget, then one front per well-filled rung (:func:`rung_tables`), then the accuracy fronts."""
    max_iters = int(meta.get("budget", {}).get("max_iters", 0))
    done = full_budget(trials)
    rows: list[dict[str, Any]] = []
    for objectives in objective_fronts(meta):
        if len(done):
            rows += _rows(pareto.pareto_front(done, objectives), front_name(objectives), max_iters)
    objectives = rung_objectives(meta)
    for rung, table in rung_tables(trials, history, meta).items():
        rows += _rows(pareto.pareto_front(table, objectives), rung_front_name(objectives, rung), rung)
    seen = {r["front"] for r in rows}
    for objectives in accuracy_fronts():
        if len(done) and front_name(objectives) not in seen:
            rows += _rows(pareto.pareto_front(done, objectives), front_name(objectives), max_iters)
    frame = pd.DataFrame.from_records(rows, columns=list(PARETO_TYPES))
    for column, dtype in PARETO_TYPES.items():  # a cost not measured yet is pd.NA, which astype("float64") refuses
        frame[column] = frame[column].astype("string") if dtype == "string" else pd.to_numeric(
            frame[column], errors="coerce").astype(dtype)
    return frame


def best_per_cell(trials: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """The best trial of each cell type by the first searched objective, whatever budget it reached, best first.

    Diverged trials are left out (their last figures are broken); the caller marks each row's budget and status.
    """
    metric, mode = next(iter(searched_objectives(meta).items()))
    if metric not in trials:
        return trials.iloc[0:0]
    ranked = trials[trials[metric].notna() & (trials["status"] != "diverged")]
    ranked = ranked.sort_values(metric, ascending=mode == "min", kind="stable")
    return ranked.groupby("cell", sort=False).head(1)
