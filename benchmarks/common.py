"""What the search benchmarks share: the report header and table formatting, best-so-far curves over an
experiment's history, space copies, and running ``python -m tuning.search`` as a subprocess.

Used by :mod:`benchmarks.search` (efficiency, multi-objective), :mod:`benchmarks.overhead` and
:mod:`benchmarks.gpu`. The curves are pure functions of DataFrames (tested in ``tests/test_bench_common.py``).
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmarks.records import git_rev, load_record, record_name, save_record, search_key
from tuning.files import EXPERIMENT_META, atomic_write_text
from tuning.machine import cpu_model, library_versions
from tuning.report.plots import save_png
from tuning.report.results import load_experiment
from tuning.spec.space import find_space, load_space

DEFAULT_OUT = Path("benchmarks")


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **library_versions(("torch", "ray", "optuna"))}


def header(title: str, argv: Sequence[str], prog: str = "python -m benchmarks.search") -> list[str]:
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

    ``history`` is :func:`tuning.report.results.load_experiment`'s (trial_id, iteration, chars_trained, ``metric``,
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


def value_at(curve: pd.DataFrame, x: str, at: float, column: str) -> float:
    """A rising step curve read at ``at``: the largest ``column`` over the rows with ``x`` ≤ ``at`` (0 before the
    first row)."""
    seen = curve.loc[curve[x] <= at, column]
    return float(seen.max()) if len(seen) else 0.0


def chars_at(curve: pd.DataFrame, timestamp: float) -> float:
    """Characters trained by all trials up to and including ``timestamp``."""
    return value_at(curve, "timestamp", timestamp, "chars_trained")


def read_space_yaml(space: str) -> tuple[str, dict[str, Any]]:
    """(name, raw mapping) of a built-in space or a YAML file, validated first."""
    load_space(space)
    path = find_space(space)
    return path.stem, yaml.safe_load(path.read_text(encoding="utf-8"))


def write_space(out: Path, name: str, data: Mapping[str, Any]) -> Path:
    """Write a space copy under ``out/spaces/`` and check that it loads."""
    path = out / "spaces" / f"{name}.yaml"
    body = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
    # The old module name stays in this line: the space's bytes are hashed into the key of benchmarks/records/.
    atomic_write_text(path, f"# written by tuning.bench_search\n{body}")
    load_space(str(path))
    return path


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


class NotMeasured(BenchError):
    """A search that has neither a folder nor a record, asked for without running it."""


def search_tables(space: str, storage: Path, records: Path | None, name: str, budget_s: float,
                  seed: int | None = None, extra: Sequence[str] = (), fresh: bool = False,
                  log: Callable[[str], None] = print,
                  run: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """(trials, history, source) of a search: from its finished folder, else from its record, else run now
    (``run=False``: raise :class:`NotMeasured` instead).

    ``source`` describes the record when the tables came from one (None otherwise), for the report. A search run or
    read from its folder is recorded into ``records`` (see :mod:`benchmarks.records`) unless ``records`` is None;
    ``fresh`` ignores both folder and record.
    """
    key = search_key(Path(space), budget_s, seed, extra)
    folder = None if records is None else Path(records) / record_name(name, key)
    experiment = Path(storage).resolve() / name
    if folder is not None and not fresh and not experiment.exists():
        record, why = load_record(folder, key)
        if record is not None:
            log(f"search {name}: reusing its record {folder} ({record.describe()})")
            return record.trials, record.history, record.describe()
        if run:
            log(f"search {name}: {why}; running it")
    if not run and not experiment.exists():
        raise NotMeasured(f"search {name}: neither {experiment} nor a record in {records}")
    experiment = run_search(space, storage, name, budget_s, seed, extra, fresh, log=log)
    meta, trials, history = load_experiment(experiment)
    if folder is not None:
        old, _ = load_record(folder, key)
        if old is None or not (old.trials.equals(trials) and old.history.equals(history)):
            provenance = {"git_rev": git_rev(), "experiment": str(experiment), "started_at": meta.get("started_at"),
                          "finished_at": meta.get("finished_at"), "cpu": cpu_model(), "cores": core_count(),
                          **versions()}
            save_record(folder, key, trials, history, provenance)
            log(f"search {name}: recorded into {folder}")
    return trials, history, None


def best_val_loss(experiment_dir: Path) -> tuple[float, int, int]:
    """(best finite val_loss any trial reported, trials, completed trials) of an experiment directory."""
    _, trials, history = load_experiment(Path(experiment_dir))
    losses = history["val_loss"].astype("float64")
    losses = losses[np.isfinite(losses)]
    return (float(losses.min()) if len(losses) else math.nan, len(trials),
            int((trials["status"] == "completed").sum()))


def compact_count(value: float) -> str:
    """A count as a short axis label: 20000000 -> "20 M", 500000 -> "500 k", 1.5e9 -> "1.5 G"."""
    for factor, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def finish_pair(fig: Any, ax_c: Any, ax_w: Any, ylabel: str, path: Path) -> None:
    """The two panels every search plot has: against characters trained (log) and against wall time."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax_c.set_xscale("log")
    # Over less than two decades matplotlib labels minor ticks too (2, 3, 4, 6 × 10^k) and the labels overlap;
    # label 1, 2 and 5 × 10^k in short form and leave the other ticks bare.
    ax_c.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax_c.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: compact_count(x)))
    ax_c.xaxis.set_minor_formatter(NullFormatter())
    ax_c.set_xlabel("characters trained, all trials")
    ax_w.set_xlabel("wall time since first report (s)")
    for ax in (ax_c, ax_w):
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax_w.legend(fontsize=7)
    save_png(fig, path)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

