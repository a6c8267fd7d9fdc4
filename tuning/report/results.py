"""Reading an experiment directory into two tables: one row per trial, one row per trial and iteration.

Ray Tune leaves, under ``<storage>/<name>/``, an ``experiment_state-*.json`` (trial statuses) and one folder
per trial with ``params.json``, ``result.json`` (one JSON object per reported iteration), checkpoints and,
for a failed trial, ``error.txt``. We read these files directly (no Ray import), so a report can be
regenerated from any experiment, finished or interrupted, on a machine without a cluster.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from tuning.engine.config import TrainConfig
from tuning.errors import UserError
from tuning.files import (
    EVALUATION_DIR,
    EXPERIMENT_META,
    FULL_VALIDATION,
    PROMOTION_STATE,
    RESULT_FILE,
    SCHEDULER_DIR,
)
from tuning.spec.rungs import asha_rungs
from tuning.spec.space import ASHA_SCHEDULERS, SEARCHABLE

_DEFAULTS = TrainConfig().to_dict()
# completed: trained its full budget. early_stopped: the scheduler decided to stop it at a rung. paused: waiting at a
# rung for a promotion (promotion-type ASHA) when the search ended. diverged: its loss blew up. errored: it raised.
# unfinished: cut off mid-way by an interrupt or the time budget. not_started: never reported a result.
STATUSES = ("completed", "early_stopped", "paused", "diverged", "errored", "unfinished", "not_started")
HYPERPARAMETERS = SEARCHABLE
HISTORY_METRICS = (
    "iteration", "chars_trained", "train_loss", "train_acc", "val_loss", "val_loss_last", "val_bpc", "val_ppl",
    "val_acc", "val_acc_last", "train_time_s", "eval_time_s",
)
COMPLEXITY = ("params", "calflops_flops", "calflops_macs", "macs", "flops_per_char", "macs_per_char",
              "train_flops_per_char")


def _read_state(experiment_dir: Path) -> dict[str, dict[str, Any]]:
    """Ray's view of each trial: {trial_id: {status, logdir, error_file}} from the newest state file."""
    # Newest by name (Ray stamps it with the session's start, as Ray's own restore picks it), not by mtime: after a
    # restore Ray uploads the earlier sessions' state files again with every save, so their mtimes keep moving.
    files = sorted(experiment_dir.glob("experiment_state-*.json"), key=lambda p: p.name)
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    try:
        for entry in state.get("trial_data", []):
            info, runtime = (json.loads(x) if isinstance(x, str) else x for x in entry[:2])
            out[str(info["trial_id"])] = {
                "ray_status": info.get("status"),
                "logdir": info.get("relative_logdir"),
                "error_file": (runtime or {}).get("error_filename"),
            }
    except (AttributeError, KeyError, TypeError, ValueError):  # a damaged state file: the trial folders still tell
        return {}
    return out


def parse_result_lines(text: str) -> list[dict[str, Any]]:
    """The rows of a ``result.json`` text, in file order; a line cut short by a kill (or blank) is skipped."""
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_rows(trial_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """A trial's rows by iteration, and how many rows were left out for want of an integer iteration."""
    result_file = trial_dir / RESULT_FILE
    text = result_file.read_text(encoding="utf-8", errors="replace") if result_file.is_file() else ""
    # A restored trial can report an iteration again; keep the last row of each iteration.
    by_iter: dict[int, dict[str, Any]] = {}
    skipped = 0
    for row in parse_result_lines(text):
        iteration = row.get("iteration", row.get("training_iteration", 0))
        if not isinstance(iteration, int) or isinstance(iteration, bool):
            skipped += 1
            continue
        by_iter[iteration] = row
    return [by_iter[k] for k in sorted(by_iter)], skipped


def held_at_rungs(state: dict[str, Any]) -> dict[str, int]:
    """Trials that promotion-type ASHA recorded at a rung and never promoted from it: trial id -> that rung.

    ``state`` is the scheduler's record (``scheduler/promotion_asha.json``). Such a trial went no further by the
    scheduler's decision, even where its curve shows one iteration past the rung: after a restore Ray may restart
    a waiting trial from its checkpoint at the rung, and the scheduler pauses it at its first report
    (:meth:`tuning.tune.schedulers.promotion_asha.PromotionASHA.decide`). Whether it was stopped or still waits is
    :func:`waiting_at_rungs`.
    """
    held: dict[str, int] = {}
    promoted = state.get("promoted", {})
    for milestone in sorted(state.get("rungs", {}), key=int):  # the highest rung a trial reached decides
        for trial_id in state["rungs"][milestone]:
            if trial_id in promoted.get(milestone, ()):
                held.pop(trial_id, None)
            else:
                held[trial_id] = int(milestone)
    return held


def waiting_at_rungs(state: dict[str, Any]) -> set[str]:
    """Trials that promotion-type ASHA's record lists as still waiting for a promotion.

    A search that ends by itself stops every waiting trial and removes it from the list
    (:meth:`tuning.tune.schedulers.promotion_asha.PromotionASHA.choose_trial_to_run`), so a trial listed here was
    left waiting by an interrupt or the time budget: paused, not stopped.
    """
    return set(state.get("waiting", {}))


def classify(last: dict[str, Any] | None, ray_status: str | None, error: str | None, max_iters: int,
             rungs: set[int], held: bool = False, waiting: bool = False) -> str:
    """One of :data:`STATUSES`.

    ``held``: promotion-type ASHA kept the trial at a rung (:func:`held_at_rungs`); ``waiting``: its record says the
    trial still waits there (:func:`waiting_at_rungs`). ``early_stopped`` means the scheduler stopped the trial, so
    a trial left waiting at a rung when the search was cut short is ``paused`` instead: it might have gone on.
    """
    reported = (last or {}).get("trial_status")
    if reported == "completed":  # error.txt may remain from a failure that a restart recovered from
        return "completed"
    if reported == "diverged":
        return "diverged"
    if ray_status == "ERROR" or (ray_status is None and error):
        return "errored"
    if last is None:
        return "not_started"
    at_rung = held or int(last.get("iteration", 0)) in rungs
    if not at_rung:
        return "unfinished"
    # Ray leaves a trial PAUSED when the search stops around it; where the scheduler's record is known (held), it
    # decides: a normal end stops the waiting trials and takes them off its waiting list.
    if waiting or (ray_status == "PAUSED" and not held):
        return "paused"
    if ray_status in ("TERMINATED", "PAUSED"):
        return "early_stopped"
    return "unfinished"


def read_full_validation(experiment_dir: Path) -> dict[str, dict[str, Any]]:
    """The end-of-search evaluation on the whole validation split: {trial_id: record}; {} when absent or damaged.

    A report must still come out of an experiment whose evaluation was never run or was killed half-way.
    """
    path = Path(experiment_dir) / EVALUATION_DIR / FULL_VALIDATION
    try:
        trials = json.loads(path.read_text(encoding="utf-8")).get("trials", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): v for k, v in trials.items() if isinstance(v, dict)} if isinstance(trials, dict) else {}


def read_meta(experiment_dir: Path) -> dict[str, Any]:
    """The experiment's record, checked for the shapes the report reads; damage is a :class:`UserError`."""
    meta_file = experiment_dir / EXPERIMENT_META
    if not experiment_dir.is_dir() or not meta_file.is_file():
        raise UserError(f"{experiment_dir} is not an experiment directory of ours (no {EXPERIMENT_META})")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{meta_file}: damaged: not readable JSON ({type(exc).__name__}); the search writes it "
                        "at its start, so a rerun with --resume rewrites it") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_file}: damaged: a JSON object is needed, not {type(meta).__name__}")
    budget = meta.get("budget", {})
    if not isinstance(budget, dict) or not all(isinstance(v, int) for v in budget.values()):
        raise UserError(f"{meta_file}: damaged: budget must be an object of integers")
    for key, kind in (("constraints", dict), ("commands", list), ("hardware", dict), ("versions", dict)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise UserError(f"{meta_file}: damaged: {key} must be a JSON {'object' if kind is dict else 'array'}")
    return meta


def _read_json_object(path: Path) -> tuple[dict[str, Any], str | None]:
    """A JSON object file as (its content, None), or ({}, what is wrong with it)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, f"not readable JSON ({type(exc).__name__})"
    return (value, None) if isinstance(value, dict) else ({}, f"a JSON {type(value).__name__}, not an object")


def trial_dirs(experiment_dir: Path, state: dict[str, dict[str, Any]] | None = None) -> dict[str, Path]:
    """Each trial's folder, by trial id: where Ray's newest state file puts it, else any folder with a
    ``params.json`` (a trial the state file does not know yet). ``state``: :func:`_read_state`'s, if read."""
    experiment_dir = Path(experiment_dir)
    state = _read_state(experiment_dir) if state is None else state
    ids = {}
    for trial_id, info in state.items():
        if info["logdir"] and (experiment_dir / info["logdir"]).is_dir():
            ids[trial_id] = experiment_dir / info["logdir"]
    for d in {p.parent for p in experiment_dir.glob("*/params.json")} - set(ids.values()):
        ids[d.name.split("_")[0]] = d
    return ids


def load_experiment(experiment_dir: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """(meta, trials, history) of an experiment directory."""
    experiment_dir = Path(experiment_dir)
    meta = read_meta(experiment_dir)
    budget = meta.get("budget", {})
    max_iters = int(budget.get("max_iters", 0))
    rungs: set[int] = set()
    if meta.get("scheduler") in ASHA_SCHEDULERS:
        rungs = set(asha_rungs(max_iters, int(budget.get("grace_iters", 1)), int(budget.get("reduction_factor", 3))))
    state = _read_state(experiment_dir)
    promotion_file = experiment_dir / SCHEDULER_DIR / PROMOTION_STATE
    # Files a report can do without, when damaged, are named in meta["damaged"] and the rest reported.
    damaged: list[str] = []
    promotion, problem = _read_json_object(promotion_file) if promotion_file.is_file() else ({}, None)
    try:
        held, waiting = held_at_rungs(promotion), waiting_at_rungs(promotion)
    except (AttributeError, KeyError, TypeError, ValueError):
        held, waiting, problem = {}, set(), "not the scheduler's record of rungs"
    if problem:
        damaged.append(f"{SCHEDULER_DIR}/{PROMOTION_STATE}: {problem}; statuses read without it")
    full_validation = read_full_validation(experiment_dir)
    ids = trial_dirs(experiment_dir, state)
    trials, history = [], []
    for trial_id in sorted(ids):
        trial_dir = ids[trial_id]
        params_file = trial_dir / "params.json"
        params, problem = _read_json_object(params_file) if params_file.is_file() else ({}, None)
        if problem:
            damaged.append(f"{trial_dir.name}/params.json: {problem}; trial {trial_id} left out")
            continue
        rows, skipped = _read_rows(trial_dir)
        if skipped:
            damaged.append(f"{trial_dir.name}/{RESULT_FILE}: {skipped} row(s) without an integer iteration left out")
        info = state.get(trial_id, {})
        error = None
        error_file = trial_dir / "error.txt"
        if error_file.is_file():
            text = error_file.read_text(errors="replace").strip().splitlines()
            error = next((line for line in reversed(text) if line.strip()), "error")
        last = rows[-1] if rows else None
        status = classify(last, info.get("ray_status"), error, max_iters, rungs, trial_id in held,
                          trial_id in waiting)
        valid = [r for r in rows if _finite(r.get("val_loss"))]
        best = min(valid, key=lambda r: r["val_loss"]) if valid else {}
        checkpoints = sorted(trial_dir.glob("checkpoint_*"))
        record: dict[str, Any] = {"trial_id": trial_id, "status": status}
        # A space leaves unsearched options at the trainer's defaults; show those, not blanks.
        record.update({h: params.get(h, _DEFAULTS.get(h)) for h in HYPERPARAMETERS})
        for m in HISTORY_METRICS:
            record[m] = (last or {}).get(m)
        record.update({f"best_{m}": best.get(m) for m in ("val_loss", "val_acc_last", "iteration")})
        record.update({c: (last or {}).get(c) for c in COMPLEXITY})
        for extra in ("inference_latency_ms", "inference_throughput", "sample_prompt", "sample"):
            record[extra] = (last or {}).get(extra)
        record["node_ip"] = (last or {}).get("node_ip")
        record["ended_at"] = (last or {}).get("timestamp")
        constraints = meta.get("constraints") or {}
        record["val_windows"] = (last or {}).get("val_windows")
        whole = full_validation.get(trial_id, {})
        record.update({"full_val_loss": whole.get("val_loss"), "full_val_acc_last": whole.get("val_acc_last"),
                       "full_val_iteration": whole.get("iteration")})
        # A trial that never reported has no cost to judge: neither within the constraints nor outside them.
        record["feasible"] = None if status == "not_started" else all(
            not _finite((last or {}).get(m)) or float((last or {})[m]) <= bound for m, bound in constraints.items())
        record["checkpoint_path"] = str(checkpoints[-1]) if checkpoints else None
        record["error"] = error
        trials.append(record)
        for r in rows:
            history.append({"trial_id": trial_id, **{m: r.get(m) for m in HISTORY_METRICS},
                            "timestamp": r.get("timestamp")})
    if damaged:
        meta = {**meta, "damaged": damaged}
    return meta, trials_frame(trials), history_frame(history)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# Column types, declared once (documented in the README's table of Parquet columns).
TRIAL_TYPES: dict[str, str] = {
    "trial_id": "string", "status": "string", "cell": "string", "lr_schedule": "string", "precision": "string",
    **{h: "Int64" for h in ("seq_len", "embed_dim", "hidden_size", "num_layers", "head_depth", "head_width",
                            "batch_size", "checkpoint_every", "val_max_chars", "sample_chars")},
    **{h: "float64" for h in ("dropout", "head_dropout", "lr", "lr_min_ratio", "weight_decay", "grad_clip",
                              "temperature")},
    "iteration": "Int64", "chars_trained": "Int64",
    **{m: "float64" for m in HISTORY_METRICS if m not in ("iteration", "chars_trained")},
    "best_val_loss": "float64", "best_val_acc_last": "float64", "best_iteration": "Int64",
    "params": "Int64", "calflops_flops": "Int64", "calflops_macs": "Int64", "macs": "Int64",
    "flops_per_char": "float64", "macs_per_char": "float64", "train_flops_per_char": "float64",
    "inference_latency_ms": "float64", "inference_throughput": "float64",
    "sample_prompt": "string", "sample": "string", "node_ip": "string", "checkpoint_path": "string",
    "error": "string",
    "ended_at": "float64",  # Unix time of the trial's last report
    "val_windows": "Int64",  # validation windows behind val_acc_last (one prediction each)
    # the end-of-search evaluation of the trial's last checkpoint on the whole validation split, at that iteration
    "full_val_loss": "float64", "full_val_acc_last": "float64", "full_val_iteration": "Int64",
    # within the experiment's constraints (a cost not reported yet counts as within); NA for a trial never started
    "feasible": "boolean",
}
HISTORY_TYPES: dict[str, str] = {"trial_id": "string", "iteration": "Int64", "chars_trained": "Int64",
                                 **{m: "float64" for m in HISTORY_METRICS[2:]}, "timestamp": "float64"}


def _typed(records: list[dict[str, Any]], types: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=list(types))
    for column, dtype in types.items():
        if dtype == "float64":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        elif dtype == "Int64":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
        elif dtype == "boolean":
            frame[column] = frame[column].astype("boolean")
        else:
            frame[column] = frame[column].astype("string")
    return frame


def trials_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    return _typed(records, TRIAL_TYPES)


def history_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    return _typed(records, HISTORY_TYPES)
