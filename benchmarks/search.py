"""Search benchmarks: what the search machinery buys, and what it costs.

``python -m benchmarks.search {efficiency,overhead,multiobjective} ...``

- ``efficiency --budget-s S --seeds 0,1,2 [--space shakespeare]``: per seed, three searches under the same wall
  budget, each a ``python -m tuning.search`` subprocess: (a) the space as given (TPE + ASHA, the default),
  (b) random search at full budget (``sampler: random``, ``scheduler: none``), (c) the homework's way: the Problem 2
  grid (cell lstm/gru × seq_len 20/30/50 × head_depth 0/1; embed = hidden = 128, one layer, batch 128, lr 0.002)
  at full budget. Best-so-far validation loss against wall time and against characters trained; the compute the
  default needs to reach random search's final best loss (goal: at most a fifth of random search's compute, judged
  on two readings of "its compute": what random search had trained when it first reached that loss, and everything
  it trained in its budget).
- ``overhead EXPERIMENT_DIR ...``: the share of trial-slot time spent training and evaluating (goal ≥ 90%), and
  where the rest went: per-trial startup, per-iteration reporting/checkpointing, idle slots.
- ``multiobjective --budget-s S --seeds 0,1,2``: hypervolume (over log10 FLOPs unless ``--flops-axis linear``; the
  linear figure is a column either way) of the accuracy/FLOPs front reached by (a) Pareto-aware
  MO-ASHA, (b) Ray's single-objective ASHA on val_loss (``asha-loss``), (c) random search at full budget; goal: (a)
  best, and reaching (c)'s final hypervolume with at most a third of the compute (c) needed. ``--methods`` adds
  ``mo-promotion``, MO-ASHA of the promotion type (:mod:`tuning.tune.schedulers.promotion_asha`), a second form of (a)
  judged on its own line, and ``asha-first``, Ray's ASHA on the first objective (accuracy).

Benchmarks, not tests: nothing here asserts a speed. Each prints a Markdown report, writes it atomically into
``--out`` (default ``benchmarks/``) beside a PNG plot, and keeps the maths in small pure functions of DataFrames
(tested without Ray in ``tests/test_bench_search.py``; shared pieces in :mod:`benchmarks.common`, the
overhead split in :mod:`benchmarks.overhead`). ``--quick`` shrinks everything (smoke space, ~40 s budget,
one seed) for a smoke run; its numbers mean nothing. Experiments go to ``--out/runs/<method>-s<seed>``; a finished
one is reused on a rerun (``--fresh`` reruns it). Each finished search is also recorded (its trials and history,
:mod:`benchmarks.records`) into ``--records`` (default ``benchmarks/records/``, committed), and a search whose
folder is gone but whose record matches is read from the record instead of run again: seeds measured on one
machine count on the next. ``--recorded-only`` runs nothing and reports what is there, leaving out the rest.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from benchmarks.common import (
    DEFAULT_OUT,
    BenchError,
    NotMeasured,
    chars_at,
    final,
    finish_pair,
    first_reach,
    fmt,
    fmt_si,
    header,
    log,
    md_table,
    median,
    median_never_late,
    pct,
    progress_curve,
    read_space_yaml,
    search_tables,
    value_at,
    write_space,
)
from benchmarks.overhead import cmd_overhead
from tuning.errors import UserError
from tuning.files import atomic_write_text
from tuning.report.fronts import full_budget
from tuning.report.tables import on_log_axes
from tuning.spec import pareto
from tuning.spec.space import ANCHORS

QUICK_SPACE, QUICK_BUDGET_S, QUICK_SEEDS = "smoke", 40.0, (0,)
GOAL_COMPUTE_RATIO = 0.2  # efficiency: default's compute to reach random's final best ≤ a fifth of random's
GOAL_HV_RATIO = 1 / 3  # multiobjective: MO-ASHA reaches random's final hypervolume with ≤ a third of its compute
DEFAULT_TARGETS = (1.60, 1.50)
DEFAULT_RECORDS = DEFAULT_OUT / "records"  # committed: see benchmarks.records

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
PARETO_METHODS = ("mo-asha", "mo-promotion")  # the (a): the Pareto-aware scheduler, stopping or promotion type
MO_OBJECTIVES: dict[str, str] = {ACCURACY: "max", FLOPS: "min"}

EFFICIENCY_METHODS = {  # method: what the report calls it
    "default": "TPE + ASHA (the space as given)",
    "random": "random search, full budget",
    "grid": "homework grid, full budget",
}
MO_METHODS = {
    "mo-asha": "MO sampler + Pareto-aware MO-ASHA",
    "mo-promotion": "MO sampler + Pareto-aware MO-ASHA, promotion type (pauses at rungs)",
    "asha-loss": "MO sampler + Ray's ASHA on val_loss",
    "asha-first": "MO sampler + Ray's ASHA on accuracy",
    "mo-random": "random search, full budget",
}


# --- the machine and the header ----------------------------------------------------------------------------------


def opening_lines(title: str, argv: Sequence[str], quick: bool, sources: Mapping[str, str] | None) -> list[str]:
    """A search benchmark's heading and header, the --quick warning, and the searches read from records rather
    than run for it (with when and at which revision)."""
    lines = header(title, argv)
    if quick:
        lines += ["**--quick**: smoke space, one seed, a short budget: a smoke run, the numbers mean nothing.", ""]
    if sources:
        items = "; ".join(f"{name} ({what})" for name, what in sorted(sources.items()))
        lines += [f"Taken from benchmark records, not run again: {items}.", ""]
    return lines


def run_methods(args: argparse.Namespace, spaces: Mapping[str, str], methods: Sequence[str], seeds: Sequence[int],
                budget: float, prefix: str) -> tuple[dict[tuple[str, int], tuple[pd.DataFrame, pd.DataFrame]],
                                                     dict[str, str]]:
    """Every (method, seed) search, run one after another (or read back): their (trials, history), and which came
    from records (search name -> the record's description)."""
    tables: dict[tuple[str, int], tuple[pd.DataFrame, pd.DataFrame]] = {}
    sources: dict[str, str] = {}
    for seed in seeds:
        for method in methods:
            name = f"{prefix}{method}-s{seed}"
            try:
                trials, history, source = search_tables(spaces[method], Path(args.out) / "runs", records_dir(args),
                                                        name, budget, seed, args.search_args, args.fresh, log=log,
                                                        run=not args.recorded_only)
            except NotMeasured as exc:
                log(f"{exc}: left out (--recorded-only)")
                continue
            if source:
                sources[name] = source
            tables[(method, seed)] = (trials, history)
    return tables, sources


def records_dir(args: argparse.Namespace) -> Path | None:
    """Where searches are recorded: ``--records``; a ``--quick`` run's records stay in its ``--out``."""
    if args.no_records:
        return None
    if args.records is not None:
        return Path(args.records)
    return Path(args.out) / "records" if args.quick else DEFAULT_RECORDS


# --- pure maths: curves over an experiment's history --------------------------------------------------------------


def common_reference(trial_tables: Iterable[pd.DataFrame]) -> dict[str, float]:
    """One hypervolume reference for every run compared: accuracy 0, 1.1 × the largest training FLOPs per character
    of any completed trial of any run (the report's rule, pooled, so that hypervolumes are comparable)."""
    done = [full_budget(t)[FLOPS].astype("float64") for t in trial_tables]
    flops = pd.concat(done) if done else pd.Series(dtype="float64")
    flops = flops[np.isfinite(flops)]
    return {ACCURACY: 0.0, FLOPS: float(flops.max() * 1.1) if len(flops) else 1.0}


def log_cost(trials: pd.DataFrame, reference: Mapping[str, float]) -> tuple[pd.DataFrame, dict[str, float]]:
    """The trials and the reference with FLOPs on a log10 axis (the benchmark's default hypervolume), as the
    search report measures it (:func:`tuning.report.tables.on_log_axes`, which says why)."""
    return on_log_axes(trials, reference, MO_OBJECTIVES)


def hypervolume_curve(trials: pd.DataFrame, curve: pd.DataFrame, reference: Mapping[str, float],
                      log_flops: bool = True) -> pd.DataFrame:
    """Hypervolume of the accuracy/FLOPs front of the completed trials as they complete, against compute and wall.

    ``curve`` is the run's :func:`progress_curve` (it maps a moment to the compute spent by then and holds the run's
    first report). Starts at (0, 0, 0) and ends at the run's last report. Only full-budget, feasible trials enter
    (:func:`tuning.report.fronts.full_budget`). ``reference`` is in FLOPs either way; ``log_flops`` measures the areas
    over log10 FLOPs (:func:`log_cost`).
    """
    if log_flops:
        trials, reference = log_cost(trials, reference)
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


# --- space files for the compared methods -------------------------------------------------------------------------


RANDOM_SAMPLES = 1000  # random search at full budget is bounded by the wall budget (17 trials in 45 minutes)


def random_space(data: Mapping[str, Any]) -> dict[str, Any]:
    """The same space, sampled at random, every trial at full budget.

    The sample count is fixed, not the default's: a variant of the default space that only changes how trials are
    scheduled (and so how many it starts) has the same random baseline, byte for byte, and reuses its records.
    """
    return {**data, "sampler": "random", "scheduler": "none", "num_samples": RANDOM_SAMPLES}


def grid_space(data: Mapping[str, Any], quick: bool = False) -> dict[str, Any]:
    """The homework's Problem 2 grid on the space's corpus and budget; the space's other fixed values stay (e.g.
    ``val_max_chars``, so that every method is validated on the same characters)."""
    grid, fixed = (QUICK_GRID, QUICK_FIXED) if quick else (HOMEWORK_GRID, HOMEWORK_FIXED)
    kept = {k: v for k, v in (data.get("params") or {}).items() if not isinstance(v, dict)}
    params = {**kept, **fixed, **{k: {"type": "grid", "values": list(v)} for k, v in grid.items()}}
    out = {k: v for k, v in data.items() if k != "num_samples"}
    return {**out, "sampler": "grid", "scheduler": "none", "params": params}


def mo_space(data: Mapping[str, Any], sampler: str, scheduler: str,
             scheduler_metric: Mapping[str, str] | None = None, cost_anchor: str = "off") -> dict[str, Any]:
    """The space with the accuracy/FLOPs objectives, a sampler and a scheduler (ranking by scheduler_metric).

    A model-based sampler's space says ``cost_anchor`` (one of :data:`tuning.spec.space.ANCHORS`) outright, as YAML
    false / true / families, so that records of searches with different anchors have different keys (the space
    text's hash; false and true as they were written before families existed); random search never anchors.
    """
    out = {k: v for k, v in data.items() if k not in ("objective", "objectives", "scheduler_metric", "cost_anchor")}
    extra: dict[str, Any] = {"scheduler_metric": dict(scheduler_metric)} if scheduler_metric else {}
    if sampler != "random":
        extra["cost_anchor"] = {"off": False, "cheapest": True}.get(cost_anchor, cost_anchor)
    return {**out, "sampler": sampler, "scheduler": scheduler, **extra,
            "objectives": [{"metric": m, "mode": d} for m, d in MO_OBJECTIVES.items()]}


# --- running searches ---------------------------------------------------------------------------------------------


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


class _Reached(Protocol):
    """An efficiency or multi-objective row: read-only, as the frozen dataclasses are."""

    @property
    def method(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def reach_chars(self) -> float: ...
    @property
    def chars_total(self) -> float: ...


def compute_ratios(rows: Sequence[_Reached], method: str = "default", baseline: str = "random",
                   of_total: bool = False) -> list[float]:
    """Per seed: ``method``'s compute to reach ``baseline``'s final result over ``baseline``'s (NaN: never).

    Two readings of "with at most a fifth of its compute" (issue #9; a third in #8): by default ``baseline``'s
    compute is what it had trained when it first reached its final result (the stricter reading: a random search
    that finds its best in its first trials makes the ratio large); with ``of_total`` it is everything it trained
    in its budget, the search's whole cost.
    """
    base = {r.seed: r.chars_total if of_total else r.reach_chars for r in rows if r.method == baseline}
    out = []
    for r in rows:
        if r.method == method and r.seed in base:
            b = base[r.seed]
            out.append(r.reach_chars / b if b > 0 and not math.isnan(r.reach_chars) else math.nan)
    return out


def ratio_lines(rows: Sequence[_Reached], method: str, baseline: str, what: str, goal: float,
                goal_text: str = "", eligible: bool = True) -> list[str]:
    """The report's two compute-ratio lines (the two readings of :func:`compute_ratios`), each with the goal
    judged on it; ``eligible`` False (MO: ``method`` was not the best) fails the goal on both."""
    lines = []
    for of_total, over in ((False, "what random search had trained when it first got there"),
                           (True, "everything random search trained in its budget")):
        ratios = compute_ratios(rows, method, baseline, of_total)
        if not ratios:
            continue
        ratio = median_never_late(ratios)
        met = eligible and not math.isnan(ratio) and ratio <= goal
        goal_shown = "1/3" if math.isclose(goal, 1 / 3) else f"{goal:g}"
        lines += ["", f"Compute ratio {method}/random to reach random search's final {what}, over {over} (median "
                      f"over seeds): **{fmt(ratio, 3)}** (per seed: {', '.join(fmt(r, 3) for r in ratios)}); "
                      f"goal{goal_text} ≤ {goal_shown}: **{'met' if met else 'not met'}**"]
    return lines


def render_efficiency(rows: Sequence[EfficiencyRow], targets: Sequence[float], argv: Sequence[str], space: str,
                      budget_s: float, seeds: Sequence[int], plot_name: str, quick: bool,
                      sources: Mapping[str, str] | None = None) -> str:
    lines = opening_lines("Search efficiency: TPE + ASHA against random search and the homework's grid", argv, quick,
                          sources)
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
    lines += ratio_lines(rows, "default", "random", "best loss", GOAL_COMPUTE_RATIO)
    lines += ["", "Per seed:", ""]
    per_seed = [[r.method, str(r.seed), fmt(r.final_best), fmt(r.reach_wall_s, 3), fmt_si(r.reach_chars),
                 *(fmt(t, 3) for t in r.target_wall_s), str(r.trials), fmt_si(r.chars_total)]
                for r in sorted(rows, key=lambda r: (r.seed, list(EFFICIENCY_METHODS).index(r.method)))]
    lines += md_table(["method", "seed", *head[1:]], per_seed, "ll" + "r" * (len(head) - 1))
    lines += ["", f"![best validation loss against compute and wall time]({plot_name})", ""]
    return "\n".join(lines)


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
    finish_pair(fig, ax_c, ax_w, "best validation loss so far (nats/char)", path)


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
    tables, sources = run_methods(args, spaces, args.methods, seeds, budget, prefix)
    curves = {key: progress_curve(history) for key, (_, history) in tables.items()}
    counts = {key: len(trials) for key, (trials, _) in tables.items()}
    rows = efficiency_rows(curves, counts, args.targets)
    stem = f"efficiency{'-quick' if args.quick else ''}"
    plot_efficiency(curves, out / f"{stem}.png")
    text = render_efficiency(rows, args.targets, argv, space, budget, seeds, f"{stem}.png", args.quick, sources)
    atomic_write_text(out / f"{stem}.md", text)
    print(text)
    log(f"written: {out / f'{stem}.md'}")
    return 0


# --- overhead -----------------------------------------------------------------------------------------------------


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
    final_hv_linear: float = math.nan  # the same front's hypervolume over linear FLOPs, for comparison
    share_at_goal: float = math.nan  # its hypervolume at GOAL_HV_RATIO of random's compute, over random's final one
    # its hypervolume once it had trained what random search trained in its whole budget: the fronts at equal
    # compute, which a wall budget gives only on one machine (a faster one, or a search that ended early at its
    # sample cap, trains a different number of characters in the same minutes)
    hv_at_baseline_total: float = math.nan
    # its hypervolume once it had trained what the least-trained method of its seed trained in all: the fronts at
    # equal compute for every method, where a slower method or machine ends below random search's total
    hv_at_least_total: float = math.nan


def hv_share_at(curve: pd.DataFrame, goal: float, chars: float) -> float:
    """The share of ``goal`` (a hypervolume) that ``curve`` held once ``chars`` characters were trained; NaN
    without a goal. Says by how much a method missed (< 1) or beat (≥ 1) the goal at the goal's compute ratio."""
    if math.isnan(goal) or math.isnan(chars):
        return math.nan
    return value_at(curve, "chars_trained", chars, "hypervolume") / goal


def mo_rows(hv_curves: Mapping[tuple[str, int], pd.DataFrame], counts: Mapping[tuple[str, int], tuple[int, int]],
            totals: Mapping[tuple[str, int], float], baseline: str = "mo-random",
            linear: Mapping[tuple[str, int], float] | None = None) -> list[MoRow]:
    # per seed: random's final hypervolume, its compute to get there, and all it trained
    goals: dict[int, tuple[float, float, float]] = {}
    for (method, seed), base in hv_curves.items():
        if method == baseline:
            goal = final(base, "hypervolume")
            # a random search with no completed trial sets no goal (hypervolume 0 is reached by anything)
            goal = goal if goal > 0 else math.nan
            goals[seed] = (goal, first_reach(base, goal, "chars_trained", "hypervolume", "max"),
                           totals.get((method, seed), math.nan))
    least: dict[int, float] = {}  # per seed: the fewest characters any method trained
    for (method, seed) in hv_curves:
        total = totals.get((method, seed), math.nan)
        if not math.isnan(total):
            least[seed] = min(least.get(seed, math.inf), total)
    rows = []
    for (method, seed), curve in hv_curves.items():
        goal, base_reach, base_total = goals.get(seed, (math.nan, math.nan, math.nan))
        rows.append(MoRow(method=method, seed=seed, trials=counts.get((method, seed), (0, 0))[0],
                          completed=counts.get((method, seed), (0, 0))[1], final_hv=final(curve, "hypervolume"),
                          reach_chars=first_reach(curve, goal, "chars_trained", "hypervolume", "max"),
                          chars_total=totals.get((method, seed), math.nan),
                          final_hv_linear=(linear or {}).get((method, seed), math.nan),
                          share_at_goal=hv_share_at(curve, goal, base_reach * GOAL_HV_RATIO),
                          hv_at_baseline_total=(math.nan if math.isnan(base_total)
                                                else value_at(curve, "chars_trained", base_total, "hypervolume")),
                          hv_at_least_total=(value_at(curve, "chars_trained", least[seed], "hypervolume")
                                             if seed in least else math.nan)))
    return rows


def best_by_median(rows: Sequence[MoRow], value: Callable[[MoRow], float]) -> str | None:
    """The method whose median of ``value`` over its seeds is highest; None when no method has a number there."""
    medians = {m: median(value(r) for r in rows if r.method == m) for m in MO_METHODS}
    return max((m for m in medians if not math.isnan(medians[m])), key=lambda m: medians[m], default=None)


def render_mo(rows: Sequence[MoRow], reference: Mapping[str, float], argv: Sequence[str], space: str,
              budget_s: float, seeds: Sequence[int], sampler: str, plot_name: str, quick: bool,
              log_flops: bool = True, sources: Mapping[str, str] | None = None, reference_given: bool = False) -> str:
    lines = opening_lines("Multi-objective search: hypervolume of the accuracy/FLOPs front", argv, quick, sources)
    origin = ("given by --reference-flops, another table's point, so that the two compare; a completed trial above "
              "it adds nothing" if reference_given else "1.1 × the largest of any completed trial of any run")
    lines += [
        f"Space `{space}` with objectives {ACCURACY} (max) and {FLOPS} (min); sampler `{sampler}` for every method but "
        f"mo-random; the same wall budget of {budget_s:g} s per method and seed (seeds {', '.join(map(str, seeds))}). "
        "Hypervolume of the completed (full-budget, feasible) trials, as they complete, against every character "
        f"trained by any trial by then, {'over log10 FLOPs' if log_flops else 'over linear FLOPs'} "
        f"(accuracy × {'decades of FLOPs' if log_flops else 'FLOPs'}"
        f"{'; the linear figure is a column for comparison' if log_flops else ''}). "
        f"One reference point for every run: accuracy {reference[ACCURACY]:g}, "
        f"{FLOPS} {fmt_si(reference[FLOPS])} ({origin}). "
        "\"To random's HV\" is the compute at which a method's hypervolume first reached the final hypervolume of "
        "random search with the same seed; \"random's HV at ⅓ its compute\" is the share of that hypervolume a "
        "method's front held once it had trained a third of what random search had trained when it got there (the "
        "goal below: 100% or more means the goal's ratio was reached); \"HV at random's compute\" is a method's "
        "hypervolume once it had trained as many characters as random search trained in its whole budget, or at its "
        "end where it trained fewer in the same wall budget; \"HV at the least compute\" is a method's hypervolume "
        "once it had trained as many characters as the method that trained fewest on its seed (the fronts at equal "
        "compute for every method, whatever the machine's speed). Medians over seeds; \"never\" where at least half "
        "never got there.",
        "",
    ]
    head = ["method", "final HV (median)", "chars to random's HV", "trials", "completed", "chars trained",
            "final HV, linear FLOPs", "random's HV at ⅓ its compute", "HV at random's compute",
            "HV at the least compute"]
    body = []
    for method, label in MO_METHODS.items():
        mine = [r for r in rows if r.method == method]
        if mine:
            body.append([f"{method}: {label}", fmt(median(r.final_hv for r in mine)),
                         fmt_si(median_never_late(r.reach_chars for r in mine)),
                         fmt(median(r.trials for r in mine), 3), fmt(median(r.completed for r in mine), 3),
                         fmt_si(median(r.chars_total for r in mine)), fmt(median(r.final_hv_linear for r in mine)),
                         pct(median(r.share_at_goal for r in mine)), fmt(median(r.hv_at_baseline_total for r in mine)),
                         fmt(median(r.hv_at_least_total for r in mine))])
    lines += md_table(head, body)
    best_method = best_by_median(rows, lambda r: r.final_hv)
    best_equal = best_by_median(rows, lambda r: r.hv_at_baseline_total)
    best_least = best_by_median(rows, lambda r: r.hv_at_least_total)
    read = [r for r in rows if not math.isnan(r.hv_at_least_total)]
    ahead = {seed: max((r for r in read if r.seed == seed), key=lambda r: r.hv_at_least_total).method
             for seed in sorted({r.seed for r in read})}
    lines += ["", f"Best final hypervolume (median): **{best_method or '–'}**; best at random search's compute "
              f"(median): **{best_equal or '–'}**; best at the least compute (median): **{best_least or '–'}** "
              f"(per seed: {', '.join(f'{s}: {m}' for s, m in ahead.items()) or '–'})."]
    for pareto_method in PARETO_METHODS:  # the (a): multi-objective sampling with the Pareto-aware scheduler
        lines += ratio_lines(rows, pareto_method, "mo-random", "hypervolume", GOAL_HV_RATIO,
                             goal_text=f": {pareto_method} best and ratio", eligible=best_method == pareto_method)
    lines += ["", "Per seed:", ""]
    per_seed = [[r.method, str(r.seed), fmt(r.final_hv), fmt_si(r.reach_chars), str(r.trials), str(r.completed),
                 fmt_si(r.chars_total), fmt(r.final_hv_linear), pct(r.share_at_goal), fmt(r.hv_at_baseline_total),
                 fmt(r.hv_at_least_total)]
                for r in sorted(rows, key=lambda r: (r.seed, list(MO_METHODS).index(r.method)))]
    lines += md_table(["method", "seed", "final HV", *head[2:]], per_seed, "llrrrrrrrrr")
    lines += ["", f"![hypervolume against compute]({plot_name})", ""]
    return "\n".join(lines)


def plot_mo(hv_curves: Mapping[tuple[str, int], pd.DataFrame], path: Path, log_flops: bool = True) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_c, ax_w) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = dict(zip(MO_METHODS, ("tab:blue", "tab:purple", "tab:red", "tab:orange", "tab:green"), strict=True))
    styles = ("-", "--", ":", "-.")
    for (method, seed), curve in sorted(hv_curves.items()):
        style = styles[seed % len(styles)]
        spent = curve[curve["chars_trained"] > 0]  # log axis: from the first completion on
        ax_c.plot(spent["chars_trained"], spent["hypervolume"], drawstyle="steps-post",
                  color=colors.get(method), ls=style, label=f"{method} s{seed}")
        ax_w.plot(curve["wall_s"], curve["hypervolume"], drawstyle="steps-post", color=colors.get(method), ls=style,
                  label=f"{method} s{seed}")
    unit = "log10 train FLOPs/char" if log_flops else "train FLOPs/char"
    finish_pair(fig, ax_c, ax_w, f"hypervolume (accuracy × {unit})", path)


def cmd_multiobjective(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out: Path = args.out
    space, budget, seeds = (QUICK_SPACE, QUICK_BUDGET_S, QUICK_SEEDS) if args.quick else \
        (args.space, args.budget_s, args.seeds)
    budget = args.budget_s if args.quick and args.budget_given else budget
    prefix = "quick-" if args.quick else ""
    name, data = read_space_yaml(space)
    spaces = {
        "mo-asha": mo_space(data, args.sampler, "asha", cost_anchor=args.cost_anchor),
        "mo-promotion": mo_space(data, args.sampler, "asha_promotion", cost_anchor=args.cost_anchor),
        "asha-loss": mo_space(data, args.sampler, "asha_first", scheduler_metric={"metric": "val_loss", "mode": "min"},
                              cost_anchor=args.cost_anchor),
        "asha-first": mo_space(data, args.sampler, "asha_first", cost_anchor=args.cost_anchor),
        "mo-random": mo_space(data, "random", "none"),
    }
    files = {m: str(write_space(out, f"{prefix}{name}-{m}", spaces[m])) for m in args.mo_methods}
    loaded, sources = run_methods(args, files, args.mo_methods, seeds, budget, prefix)
    reference = ({ACCURACY: 0.0, FLOPS: args.reference_flops} if args.reference_flops
                 else common_reference(t for t, _ in loaded.values()))
    log_flops = args.flops_axis == "log"
    hv_curves, counts, totals, linear = {}, {}, {}, {}
    for key, (trials, history) in loaded.items():
        curve = progress_curve(history)
        hv_curves[key] = hypervolume_curve(trials, curve, reference, log_flops)
        linear[key] = final(hypervolume_curve(trials, curve, reference, log_flops=False), "hypervolume")
        counts[key] = (len(trials), len(full_budget(trials)))
        totals[key] = final(curve, "chars_trained")
    rows = mo_rows(hv_curves, counts, totals, linear=linear)
    stem = f"multiobjective{'-quick' if args.quick else ''}"
    plot_mo(hv_curves, out / f"{stem}.png", log_flops)
    text = render_mo(rows, reference, argv, space, budget, seeds, args.sampler, f"{stem}.png", args.quick,
                     log_flops, sources, reference_given=bool(args.reference_flops))
    atomic_write_text(out / f"{stem}.md", text)
    print(text)
    log(f"written: {out / f'{stem}.md'}")
    return 0


# --- command line -------------------------------------------------------------------------------------------------


DEFAULT_MO_METHODS = ("mo-asha", "asha-loss", "mo-random")  # the three of the issue (#8: b is ASHA on val_loss)


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


def _mo_methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    if not methods or any(m not in MO_METHODS for m in methods):
        raise argparse.ArgumentTypeError(f"--methods={text!r}: a comma-separated subset of {','.join(MO_METHODS)}")
    if "mo-random" not in methods:
        raise argparse.ArgumentTypeError(f"--methods={text!r}: must include mo-random (the baseline of the ratio)")
    return tuple(m for m in MO_METHODS if m in methods)


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
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__.split("\n\n")[0])
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
        p.add_argument("--fresh", action="store_true",
                       help="rerun searches whose experiment folders or records exist")
        p.add_argument("--records", type=Path, default=None,
                       help=f"folder of benchmark records: a finished search's tables, reused when its folder is "
                            f"gone (default {DEFAULT_RECORDS}/; a --quick run's stay in --out)")
        p.add_argument("--no-records", action="store_true", help="neither read nor write records")
        p.add_argument("--recorded-only", action="store_true",
                       help="run nothing: report the searches that have a finished folder or a record, leave out "
                            "the rest (a table over seeds measured on different days)")
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
    mo.add_argument("--flops-axis", choices=("log", "linear"), default="log",
                    help="FLOPs axis of the hypervolume (default log: each halving of cost counts the same)")
    mo.add_argument("--methods", dest="mo_methods", type=_mo_methods, default=DEFAULT_MO_METHODS,
                    help=f"comma-separated methods to run, mo-random included (default {','.join(DEFAULT_MO_METHODS)}; "
                         f"of {','.join(MO_METHODS)})")
    mo.add_argument("--sampler", choices=("nsga2", "tpe"), default="nsga2",
                    help="sampler of the two ASHA methods (default nsga2)")
    mo.add_argument("--reference-flops", type=_positive, default=None,
                    help="the hypervolume's FLOPs reference point (default 1.1 × the largest completed trial of the "
                         "runs in the table): give another table's to compare the two")
    mo.add_argument("--cost-anchor", nargs="?", const="cheapest", default="off", choices=ANCHORS[1:],
                    help="the methods with a model-based sampler train the cheapest model first (tuning.spec.anchor); "
                         "--cost-anchor families: the cheapest model of each family (each cell type)")
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
