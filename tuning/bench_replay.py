"""Replay recorded learning curves through scheduler rules: what early stopping alone buys, in seconds, not hours.

``python -m tuning.bench_replay EXPERIMENT_DIR ... [--wall-s 720] [--replays 100] [--reduction-factor 3]
[--rung-max-iters N] [--out DIR]``

A live benchmark (``tuning.bench_search multiobjective``) costs 12 minutes per method and seed on 2 cores, and
mixes the scheduler's effect with the sampler's and with the machine's noise. This replays instead: the pool is every
full-budget trial of the given experiments (random searches, so the pool is an unbiased sample of the space), each
with its recorded metric per iteration and its recorded seconds per iteration. One replay draws trials from the pool
at random, with replacement, and runs them on ``--slots`` workers, one iteration at a time, for ``--wall-s`` seconds;
at each rung the rule says whether a trial goes on. The rules are the real schedulers' decisions, without Ray:
``mo-asha`` is :class:`tuning.mo_asha.ParetoASHA` on accuracy and FLOPs, ``asha-first`` the same class on accuracy
alone (Ray's ASHA ranks by a percentile; this ranks the top ``ceil(n / rf)``), ``random`` stops nothing. Every rule
sees the same draws. The measure is the multi-objective benchmark's: hypervolume of the completed trials'
accuracy/FLOPs front over log10 FLOPs, and the compute (characters) at which a rule first reaches random's final
hypervolume, as a ratio to what random needed.

What a replay cannot see: a sampler that learns from results (the draws are random), and trials longer than the
recorded budget. The pool bounds the hypervolume (its own front's is printed), so a small pool flatters random search.
Like every benchmark here it prints a Markdown table and writes it atomically into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tuning import pareto
from tuning.bench_common import DEFAULT_OUT, header, md_table
from tuning.bench_search import ACCURACY, FLOPS, MO_OBJECTIVES, log_cost
from tuning.errors import ArgumentParser, UserError
from tuning.files import atomic_write_text
from tuning.mo_asha import ParetoASHA
from tuning.results import load_experiment
from tuning.spaces import asha_rungs

RULES = ("random", "asha-first", "mo-asha")
# decide(trial key, iteration, accuracy at that iteration, FLOPs per character) -> stop?
Decide = Callable[[str, int, float, float], bool]


@dataclass(frozen=True)
class Curve:
    """One full-budget trial as recorded: its accuracy after each iteration, its cost, its seconds per iteration."""

    trial_id: str
    accuracy: tuple[float, ...]
    flops: float
    seconds: tuple[float, ...]


@dataclass(frozen=True)
class Replay:
    completed: list[tuple[float, float]]  # (accuracy, FLOPs) in order of completion
    chars_at_completion: list[float]  # characters trained by all trials when each completed
    chars_total: float
    started: int


def load_curves(experiments: Sequence[Path]) -> tuple[list[Curve], int]:
    """The completed trials of the experiments that reported every iteration once, and their characters per
    iteration (which must agree)."""
    curves, per_iter = [], set()
    for experiment in experiments:
        meta, trials, history = load_experiment(experiment)
        budget = meta.get("budget", {})
        max_iters = int(budget.get("max_iters", 0))
        per_iter.add(int(budget.get("chars_per_iter", 0)))
        flops = trials.set_index("trial_id")[FLOPS]
        for trial_id in trials.loc[trials["status"] == "completed", "trial_id"]:
            rows = history[history["trial_id"] == trial_id].sort_values("iteration")
            if list(rows["iteration"]) != list(range(1, max_iters + 1)) or not math.isfinite(float(flops[trial_id])):
                continue
            train = np.diff(np.r_[0.0, rows["train_time_s"].to_numpy(dtype=float)])
            seconds = np.maximum(train + rows["eval_time_s"].fillna(0.0).to_numpy(dtype=float), 1e-3)
            curves.append(Curve(str(trial_id), tuple(rows[ACCURACY].astype(float)), float(flops[trial_id]),
                                tuple(float(s) for s in seconds)))
    if len(per_iter) > 1:
        raise UserError(f"the experiments' chars_per_iter differ ({sorted(per_iter)}): replay one budget at a time")
    if len({len(c.accuracy) for c in curves}) > 1:
        raise UserError("the experiments' max_iters differ: replay one budget at a time")
    return curves, per_iter.pop() if per_iter else 0


def make_rule(rule: str, max_t: int, reduction_factor: int) -> Decide | None:
    """The scheduler behind a rule name, as a decision function (None: never stop)."""
    if rule == "random":
        return None
    objectives = {ACCURACY: "max"} if rule == "asha-first" else {ACCURACY: "max", FLOPS: "min"}
    scheduler = ParetoASHA(objectives, max_t=max_t, grace_period=1, reduction_factor=reduction_factor)

    def decide(key: str, iteration: int, accuracy: float, flops: float) -> bool:
        return scheduler.decide(key, iteration, {ACCURACY: accuracy, FLOPS: flops}) == ParetoASHA.STOP

    return decide


def simulate(curves: Sequence[Curve], order: Sequence[int], decide: Decide | None, wall_s: float,
             slots: int = 2, chars_per_iter: float = 1.0) -> Replay:
    """Run ``curves[order[0]], curves[order[1]], …`` on ``slots`` workers until ``wall_s``.

    Each slot runs its trial an iteration at a time, each taking the recorded seconds; after iteration ``i`` the rule
    may stop it (the last iteration completes it); a freed slot starts the next trial at once. An iteration that
    would end after ``wall_s`` does not count. Pure: the same arguments give the same replay.
    """
    if not curves or slots < 1:
        return Replay([], [], 0.0, 0)
    budget = len(curves[0].accuracy)
    next_trial, chars = 0, 0.0
    completed: list[tuple[float, float]] = []
    chars_at: list[float] = []
    # per slot: [position in order, iterations done, time its running iteration ends]
    running: list[list[float]] = []
    for _ in range(min(slots, len(order))):
        running.append([next_trial, 0, curves[order[next_trial]].seconds[0]])
        next_trial += 1
    while running:
        slot = min(running, key=lambda s: s[2])
        if slot[2] > wall_s:
            break
        position, done, now = int(slot[0]), int(slot[1]) + 1, slot[2]
        curve = curves[order[position]]
        chars += chars_per_iter
        finished = done == budget
        if finished:
            completed.append((curve.accuracy[-1], curve.flops))
            chars_at.append(chars)
        elif decide is None or not decide(f"{position}", done, curve.accuracy[done - 1], curve.flops):
            slot[1], slot[2] = done, now + curve.seconds[done]
            continue
        if next_trial >= len(order):
            running.remove(slot)
            continue
        slot[0], slot[1], slot[2] = next_trial, 0, now + curves[order[next_trial]].seconds[0]
        next_trial += 1
    return Replay(completed, chars_at, chars, next_trial)


def log_hypervolume(points: Sequence[tuple[float, float]], reference_flops: float) -> float:
    """Hypervolume of (accuracy, FLOPs) points over log10 FLOPs, from accuracy 0 (as the live benchmark)."""
    if not points:
        return 0.0
    table, reference = log_cost(pd.DataFrame(points, columns=[ACCURACY, FLOPS]),
                                {ACCURACY: 0.0, FLOPS: reference_flops})
    return pareto.hypervolume_2d(table, MO_OBJECTIVES, reference)


def hypervolume_trace(replay: Replay, reference_flops: float) -> list[tuple[float, float]]:
    """(characters by then, hypervolume) after each completion."""
    return [(replay.chars_at_completion[k], log_hypervolume(replay.completed[:k + 1], reference_flops))
            for k in range(len(replay.completed))]


def first_reach(trace: Sequence[tuple[float, float]], goal: float) -> float:
    return next((chars for chars, hv in trace if hv >= goal - 1e-12), math.inf)


@dataclass(frozen=True)
class RuleRow:
    rule: str
    final_hv: float
    ratio: float  # median over replays of (chars to random's final HV) / (random's chars to it)
    share_third: float  # share of replays with ratio ≤ 1/3
    share_never: float
    completed: float
    started: float
    chars: float


def run_replays(curves: Sequence[Curve], rules: Sequence[str], replays: int, wall_s: float, slots: int,
                max_t: int, reduction_factor: int, chars_per_iter: float, seed: int = 0) -> list[RuleRow]:
    reference = max(c.flops for c in curves) * 1.1
    rng = np.random.default_rng(seed)
    draws = max(1000, int(wall_s))  # more trials than any rule can start
    results: dict[str, list[tuple[float, float, int, int, float]]] = {r: [] for r in rules}
    for _ in range(replays):
        order = rng.integers(0, len(curves), size=draws).tolist()
        runs = {r: simulate(curves, order, make_rule(r, max_t, reduction_factor), wall_s, slots, chars_per_iter)
                for r in dict.fromkeys(["random", *rules])}
        base_trace = hypervolume_trace(runs["random"], reference)
        goal = base_trace[-1][1] if base_trace else math.nan
        base = first_reach(base_trace, goal) if base_trace else math.nan
        for rule in rules:
            trace = hypervolume_trace(runs[rule], reference)
            final = trace[-1][1] if trace else 0.0
            ratio = first_reach(trace, goal) / base if base and math.isfinite(base) else math.nan
            results[rule].append((final, ratio, len(runs[rule].completed), runs[rule].started, runs[rule].chars_total))
    rows = []
    for rule in rules:
        a = np.array(results[rule], dtype=float)
        ratios = a[:, 1][~np.isnan(a[:, 1])]
        rows.append(RuleRow(rule, float(np.median(a[:, 0])), float(np.median(ratios)) if len(ratios) else math.nan,
                            float(np.mean(ratios <= 1 / 3)) if len(ratios) else math.nan,
                            float(np.mean(np.isinf(ratios))) if len(ratios) else math.nan,
                            float(np.median(a[:, 2])), float(np.median(a[:, 3])), float(np.median(a[:, 4]))))
    return rows


def render(rows: Sequence[RuleRow], argv: Sequence[str], pool: Sequence[Curve], experiments: Sequence[Path],
           args: argparse.Namespace, budget: int) -> str:
    reference = max(c.flops for c in pool) * 1.1
    ceiling = log_hypervolume([(c.accuracy[-1], c.flops) for c in pool], reference)
    lines = header("Replay: scheduler rules on recorded learning curves", argv, prog="python -m tuning.bench_replay")
    lines += [
        f"Pool: {len(pool)} full-budget trials of {len(experiments)} experiment(s) "
        f"({', '.join(str(p) for p in experiments)}), {budget} iterations each; the pool's own front has hypervolume "
        f"{ceiling:.4g}. {args.replays} replays of {args.wall_s:g} s on {args.slots} slots, trials drawn at random "
        f"with replacement, the same draws for every rule; rungs at iteration(s) "
        f"{', '.join(map(str, asha_rungs(args.rung_max_iters or budget, 1, args.reduction_factor))) or 'none'} "
        f"(reduction factor {args.reduction_factor}). Hypervolume over log10 FLOPs, reference accuracy 0 and "
        f"1.1 × the pool's largest FLOPs. Ratio: characters a rule needed to reach random's final hypervolume over "
        "those random needed, median over replays (\"inf\" when the median replay never got there).",
        "",
    ]
    body = [[r.rule, f"{r.final_hv:.4g}", f"{r.ratio:.3g}", f"{r.share_third:.2f}", f"{r.share_never:.2f}",
             f"{r.started:g}", f"{r.completed:g}", f"{r.chars / 1e6:.1f} M"] for r in rows]
    lines += md_table(["rule", "final HV (median)", "ratio to random's HV", "share ≤ 1/3", "share never",
                       "trials started", "completed", "chars trained"], body, "lrrrrrrr")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m tuning.bench_replay", description=__doc__.split("\n\n")[0])
    p.add_argument("experiments", nargs="+", type=Path, help="experiment folders whose completed trials form the pool")
    p.add_argument("--wall-s", type=float, default=720.0, help="seconds per replay (default 720)")
    p.add_argument("--replays", type=int, default=100, help="replays per rule (default 100)")
    p.add_argument("--slots", type=int, default=2, help="trials at once (default 2: a 2-core machine)")
    p.add_argument("--reduction-factor", type=int, default=3, help="ASHA's reduction factor (default 3)")
    p.add_argument("--rung-max-iters", type=int, default=None,
                   help="the scheduler's max_iters, whose rungs lie below it (default: the recorded budget)")
    p.add_argument("--rules", default=",".join(RULES), help=f"comma-separated, of {', '.join(RULES)} (default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    p.add_argument("--name", default="replay", help="output file stem (default replay)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        rules = [r.strip() for r in args.rules.split(",") if r.strip()]
        bad = [r for r in rules if r not in RULES]
        if bad or not rules:
            raise UserError(f"--rules={args.rules!r} is invalid: a comma-separated list of {', '.join(RULES)}")
        if not (math.isfinite(args.wall_s) and args.wall_s > 0):
            raise UserError(f"--wall-s={args.wall_s} is invalid: seconds > 0")
        for flag, value, low in (("--replays", args.replays, 1), ("--slots", args.slots, 1),
                                 ("--reduction-factor", args.reduction_factor, 2)):
            if value < low:
                raise UserError(f"{flag}={value} is invalid: an integer >= {low}")
        for experiment in args.experiments:
            if not experiment.is_dir():
                raise UserError(f"{experiment}: no such experiment folder")
        curves, chars_per_iter = load_curves(args.experiments)
        if not curves:
            raise UserError("the experiments hold no completed trial that reported every iteration: nothing to replay")
        budget = len(curves[0].accuracy)
        max_t = args.rung_max_iters or budget
        if not 1 <= max_t <= budget:
            raise UserError(f"--rung-max-iters={max_t} is invalid: between 1 and the recorded budget ({budget})")
        rows = run_replays(curves, rules, args.replays, args.wall_s, args.slots, max_t, args.reduction_factor,
                           chars_per_iter, args.seed)
        text = render(rows, argv, curves, args.experiments, args, budget)
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / f"{args.name}.md", text)
        print(text)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
