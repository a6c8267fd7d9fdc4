"""Replay recorded learning curves through scheduler rules: what early stopping alone buys, in seconds, not hours.

``python -m benchmarks.replay EXPERIMENT_DIR ... [--wall-s 720] [--replays 100] [--reduction-factor 3]
[--rung-max-iters N] [--out DIR]``

A live benchmark (``benchmarks.search multiobjective``) costs 12 minutes per method and seed on 2 cores, and
mixes the scheduler's effect with the sampler's and with the machine's noise. This replays instead: the pool is every
full-budget trial of the given experiments (random searches, so the pool is an unbiased sample of the space), each
with its recorded metric per iteration and its recorded seconds per iteration. One replay draws trials from the pool
at random, with replacement, and runs them on ``--slots`` workers, one iteration at a time, for ``--wall-s`` seconds;
at each rung the rule says whether a trial goes on. The rules are the real schedulers' decisions, without Ray:
``mo-asha`` is :class:`tuning.tune.schedulers.mo_asha.ParetoASHA` on accuracy and FLOPs, ``asha-first`` the same class
on accuracy alone (Ray's ASHA ranks by a percentile; this ranks the top ``ceil(n / rf)``), ``random`` stops nothing.
Every rule sees the same draws. The measure is the multi-objective benchmark's: hypervolume of the completed trials'
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
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import DEFAULT_OUT, header, md_table
from benchmarks.search import ACCURACY, FLOPS, GOAL_HV_RATIO, MO_OBJECTIVES, log_cost
from benchmarks.search import GOAL_COMPUTE_RATIO as GOAL_LOSS_RATIO
from tuning.errors import ArgumentParser, UserError
from tuning.files import atomic_write_text
from tuning.report.results import load_experiment
from tuning.spec import pareto
from tuning.spec.rungs import asha_rungs
from tuning.tune.schedulers.mo_asha import ParetoASHA

RULES = ("random", "asha-first", "mo-asha")
# --objective val_loss: no stopping, Ray's own ASHAScheduler on val_loss (a trial goes on or stops at each rung),
# and the promotion variant of ASHA (a trial pauses at each rung until it ranks in the top 1/rf there).
LOSS_RULES = ("random", "asha", "asha-promotion")
OBJECTIVES = ("hypervolume", "val_loss")
# decide(trial key, iteration, the rule's metric at that iteration, FLOPs per character) -> stop?
Decide = Callable[[str, int, float, float], bool]


@dataclass(frozen=True)
class Curve:
    """One full-budget trial as recorded: its accuracy (and validation loss) after each iteration, its cost, its
    seconds per iteration."""

    trial_id: str
    accuracy: tuple[float, ...]
    flops: float
    seconds: tuple[float, ...]
    loss: tuple[float, ...] = ()


@dataclass(frozen=True)
class Replay:
    completed: list[tuple[float, float]]  # (accuracy, FLOPs) in order of completion
    chars_at_completion: list[float]  # characters trained by all trials when each completed
    chars_total: float
    started: int
    reports: list[tuple[float, float]] = field(default_factory=list)  # (characters by then, val_loss): every iteration


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
            loss = tuple(rows["val_loss"].astype(float)) if "val_loss" in rows else ()
            curves.append(Curve(str(trial_id), tuple(rows[ACCURACY].astype(float)), float(flops[trial_id]),
                                tuple(float(s) for s in seconds), loss))
    if len(per_iter) > 1:
        raise UserError(f"the experiments' chars_per_iter differ ({sorted(per_iter)}): replay one budget at a time")
    if len({len(c.accuracy) for c in curves}) > 1:
        raise UserError("the experiments' max_iters differ: replay one budget at a time")
    return curves, per_iter.pop() if per_iter else 0


def make_rule(rule: str, max_t: int, reduction_factor: int, grace: int = 1) -> Decide | None:
    """The scheduler behind a rule name, as a decision function (None: never stop).

    ``asha`` is Ray's own ``ASHAScheduler`` built as ``tuning.search`` builds it for a one-objective space (metric
    val_loss, min), fed the recorded rows; the others are :class:`ParetoASHA` (accuracy, max; with FLOPs, min).
    """
    if rule in ("random", "asha-promotion"):  # the promotion variant is its own simulation: simulate_promotion
        return None
    if rule == "asha":
        from ray.tune.schedulers import ASHAScheduler, TrialScheduler

        ray_asha = ASHAScheduler(time_attr="iteration", metric="val_loss", mode="min", max_t=max_t,
                                 grace_period=grace, reduction_factor=reduction_factor)
        added: set[str] = set()

        def decide_ray(key: str, iteration: int, loss: float, flops: float) -> bool:
            trial: Any = SimpleNamespace(trial_id=key)  # all Ray's ASHA reads of a trial
            if key not in added:
                added.add(key)
                ray_asha.on_trial_add(None, trial)  # type: ignore[arg-type]
            action = ray_asha.on_trial_result(None, trial, {"iteration": iteration, "val_loss": loss})  # type: ignore[arg-type]
            return bool(action == TrialScheduler.STOP)

        return decide_ray
    objectives = {ACCURACY: "max"} if rule == "asha-first" else {ACCURACY: "max", FLOPS: "min"}
    scheduler = ParetoASHA(objectives, max_t=max_t, grace_period=grace, reduction_factor=reduction_factor)

    def decide(key: str, iteration: int, accuracy: float, flops: float) -> bool:
        return scheduler.decide(key, iteration, {ACCURACY: accuracy, FLOPS: flops}) == ParetoASHA.STOP

    return decide


Job = tuple[int, int]  # (position of the trial in the draw order, iterations it has done)


def _run_slots(curves: Sequence[Curve], order: Sequence[int], wall_s: float, slots: int, chars_per_iter: float,
               next_job: Callable[[], Job | None], goes_on: Callable[[int, int, Curve], bool]) -> Replay:
    """The event loop of both simulations: ``slots`` workers, each running its job an iteration at a time, each
    iteration taking its recorded seconds. After an iteration that does not complete the trial, ``goes_on(position,
    done, curve)`` says whether the trial keeps its slot; a freed slot takes ``next_job()`` at once (None: it idles
    for good). An iteration that would end after ``wall_s`` does not count. Pure if the two callables are."""
    budget = len(curves[0].accuracy)
    chars, started = 0.0, 0
    completed: list[tuple[float, float]] = []
    chars_at: list[float] = []
    reports: list[tuple[float, float]] = []
    running: list[list[float]] = []  # per slot: [position in order, iterations done, time its iteration ends]

    def take(slot: list[float], now: float) -> bool:
        nonlocal started
        job = next_job()
        if job is None:
            return False
        started += job[1] == 0
        slot[:] = [job[0], job[1], now + curves[order[job[0]]].seconds[job[1]]]
        return True

    for _ in range(slots):
        slot: list[float] = []
        if not take(slot, 0.0):
            break
        running.append(slot)
    while running:
        slot = min(running, key=lambda s: s[2])
        if slot[2] > wall_s:
            break
        position, done, now = int(slot[0]), int(slot[1]) + 1, slot[2]
        curve = curves[order[position]]
        chars += chars_per_iter
        if curve.loss:
            reports.append((chars, curve.loss[done - 1]))
        if done == budget:
            completed.append((curve.accuracy[-1], curve.flops))
            chars_at.append(chars)
        elif goes_on(position, done, curve):
            slot[1], slot[2] = done, now + curve.seconds[done]
            continue
        if not take(slot, now):
            running.remove(slot)
    return Replay(completed, chars_at, chars, started, reports)


def simulate(curves: Sequence[Curve], order: Sequence[int], decide: Decide | None, wall_s: float,
             slots: int = 2, chars_per_iter: float = 1.0, metric: str = "accuracy") -> Replay:
    """Run ``curves[order[0]], curves[order[1]], …`` on ``slots`` workers until ``wall_s``.

    Each slot runs its trial an iteration at a time, each taking the recorded seconds; after iteration ``i`` the rule
    may stop it (the last iteration completes it); a freed slot starts the next trial at once. An iteration that
    would end after ``wall_s`` does not count. The rule sees ``metric`` (``accuracy`` or ``loss``) of the iteration.
    Pure: the same arguments give the same replay.
    """
    if not curves or slots < 1:
        return Replay([], [], 0.0, 0)
    drawn = iter(range(len(order)))

    def next_trial() -> Job | None:
        position = next(drawn, None)
        return None if position is None else (position, 0)

    def goes_on(position: int, done: int, curve: Curve) -> bool:
        return decide is None or not decide(f"{position}", done, getattr(curve, metric)[done - 1], curve.flops)

    return _run_slots(curves, order, wall_s, slots, chars_per_iter, next_trial, goes_on)


def simulate_promotion(curves: Sequence[Curve], order: Sequence[int], wall_s: float, slots: int, max_t: int,
                       grace: int, reduction_factor: int, chars_per_iter: float = 1.0) -> Replay:
    """ASHA as Li et al. (2020, "A System for Massively Parallel Hyperparameter Tuning", Algorithm 2) state it, on
    val_loss: a trial runs to its next rung and pauses there; a free slot resumes the best paused trial of the
    highest rung whose top ``floor(n / rf)`` holds one not yet promoted, else starts the next trial of ``order``.
    Unlike Ray's stopping variant, no trial passes a rung before ``rf`` trials have been recorded there.

    The same conventions as :func:`simulate` (recorded seconds, iterations past ``wall_s`` do not count; a trial's
    last iteration completes it). Pure.
    """
    if not curves or slots < 1:
        return Replay([], [], 0.0, 0)
    stops = asha_rungs(max_t, grace, reduction_factor)  # iterations at which a trial pauses
    rungs: list[dict[int, float]] = [{} for _ in stops]  # per rung: trial position -> val_loss there
    promoted: list[set[int]] = [set() for _ in stops]
    drawn = iter(range(len(order)))

    def next_job() -> Job | None:
        for k in reversed(range(len(rungs))):
            top = sorted(rungs[k], key=lambda i: rungs[k][i])[:len(rungs[k]) // reduction_factor]
            ready = [i for i in top if i not in promoted[k]]
            if ready:
                promoted[k].add(ready[0])
                return ready[0], stops[k]
        position = next(drawn, None)
        return None if position is None else (position, 0)

    def goes_on(position: int, done: int, curve: Curve) -> bool:
        if done not in stops:
            return True
        rungs[stops.index(done)][position] = curve.loss[done - 1]
        return False

    return _run_slots(curves, order, wall_s, slots, chars_per_iter, next_job, goes_on)


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


def best_loss_trace(replay: Replay) -> list[tuple[float, float]]:
    """(characters by then, minus the best val_loss so far) after each iteration: the live efficiency benchmark's
    best-so-far (any trial, any iteration), negated so that :func:`first_reach` reads it as it reads hypervolume."""
    trace, best = [], math.inf
    for chars, loss in replay.reports:
        if math.isfinite(loss) and loss < best:
            best = loss
        trace.append((chars, -best))
    return trace


@dataclass(frozen=True)
class RuleRow:
    rule: str
    final_hv: float  # --objective val_loss: the final best val_loss
    ratio: float  # median over replays of (chars to random's final HV or best) / (random's chars to it)
    share_third: float  # share of replays with ratio ≤ the goal (1/3 for hypervolume, 1/5 for val_loss)
    share_never: float
    completed: float
    started: float
    chars: float


def run_replays(curves: Sequence[Curve], rules: Sequence[str], replays: int, wall_s: float, slots: int,
                max_t: int, reduction_factor: int, chars_per_iter: float, seed: int = 0, grace: int = 1,
                objective: str = "hypervolume") -> list[RuleRow]:
    reference = max(c.flops for c in curves) * 1.1
    rng = np.random.default_rng(seed)
    draws = max(1000, int(wall_s))  # more trials than any rule can start
    loss = objective == "val_loss"
    goal_ratio = GOAL_LOSS_RATIO if loss else GOAL_HV_RATIO

    def trace_of(replay: Replay) -> list[tuple[float, float]]:
        return best_loss_trace(replay) if loss else hypervolume_trace(replay, reference)

    results: dict[str, list[tuple[float, float, int, int, float]]] = {r: [] for r in rules}
    for _ in range(replays):
        order = rng.integers(0, len(curves), size=draws).tolist()
        runs = {r: simulate_promotion(curves, order, wall_s, slots, max_t, grace, reduction_factor, chars_per_iter)
                if r == "asha-promotion" else
                simulate(curves, order, make_rule(r, max_t, reduction_factor, grace), wall_s, slots, chars_per_iter,
                         "loss" if loss else "accuracy")
                for r in dict.fromkeys(["random", *rules])}
        base_trace = trace_of(runs["random"])
        goal = base_trace[-1][1] if base_trace else math.nan
        base = first_reach(base_trace, goal) if base_trace else math.nan
        for rule in rules:
            trace = trace_of(runs[rule])
            final = (-trace[-1][1] if loss else trace[-1][1]) if trace else (math.inf if loss else 0.0)
            ratio = first_reach(trace, goal) / base if base and math.isfinite(base) else math.nan
            results[rule].append((final, ratio, len(runs[rule].completed), runs[rule].started, runs[rule].chars_total))
    rows = []
    for rule in rules:
        a = np.array(results[rule], dtype=float)
        ratios = a[:, 1][~np.isnan(a[:, 1])]
        rows.append(RuleRow(rule, float(np.median(a[:, 0])), float(np.median(ratios)) if len(ratios) else math.nan,
                            float(np.mean(ratios <= goal_ratio)) if len(ratios) else math.nan,
                            float(np.mean(np.isinf(ratios))) if len(ratios) else math.nan,
                            float(np.median(a[:, 2])), float(np.median(a[:, 3])), float(np.median(a[:, 4]))))
    return rows


def render(rows: Sequence[RuleRow], argv: Sequence[str], pool: Sequence[Curve], experiments: Sequence[Path],
           args: argparse.Namespace, budget: int) -> str:
    lines = header("Replay: scheduler rules on recorded learning curves", argv, prog="python -m benchmarks.replay")
    rungs = ", ".join(map(str, asha_rungs(args.rung_max_iters or budget, args.grace_iters, args.reduction_factor)))
    if args.objective == "val_loss":
        floor = min(min(c.loss) for c in pool)
        lines += [
            f"Pool: {len(pool)} full-budget trials of {len(experiments)} experiment(s) "
            f"({', '.join(str(p) for p in experiments)}), {budget} iterations each; the pool's lowest validation "
            f"loss is {floor:.4g}. {args.replays} replays of {args.wall_s:g} s on {args.slots} slots, trials drawn at "
            f"random with replacement, the same draws for every rule; rungs at iteration(s) {rungs or 'none'} (grace "
            f"{args.grace_iters}, reduction factor {args.reduction_factor}). Best-so-far: the lowest val_loss any "
            "trial reported at any iteration, as in the live efficiency benchmark. Ratio: characters a rule needed to "
            "reach random's final best over those random needed, median over replays (\"inf\" when the median "
            f"replay never got there); share ≤ {GOAL_LOSS_RATIO:g}: the issue's goal, per replay.",
            "",
        ]
        body = [[r.rule, f"{r.final_hv:.4g}", f"{r.ratio:.3g}", f"{r.share_third:.2f}", f"{r.share_never:.2f}",
                 f"{r.started:g}", f"{r.completed:g}", f"{r.chars / 1e6:.1f} M"] for r in rows]
        lines += md_table(["rule", "final best val_loss (median)", "ratio to random's best",
                           f"share ≤ {GOAL_LOSS_RATIO:g}", "share never", "trials started", "completed",
                           "chars trained"], body, "lrrrrrrr")
        return "\n".join(lines) + "\n"
    reference = max(c.flops for c in pool) * 1.1
    ceiling = log_hypervolume([(c.accuracy[-1], c.flops) for c in pool], reference)
    lines += [
        f"Pool: {len(pool)} full-budget trials of {len(experiments)} experiment(s) "
        f"({', '.join(str(p) for p in experiments)}), {budget} iterations each; the pool's own front has hypervolume "
        f"{ceiling:.4g}. {args.replays} replays of {args.wall_s:g} s on {args.slots} slots, trials drawn at random "
        f"with replacement, the same draws for every rule; rungs at iteration(s) {rungs or 'none'} "
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
    p = ArgumentParser(prog="python -m benchmarks.replay", description=__doc__.split("\n\n")[0])
    p.add_argument("experiments", nargs="+", type=Path, help="experiment folders whose completed trials form the pool")
    p.add_argument("--wall-s", type=float, default=720.0, help="seconds per replay (default 720)")
    p.add_argument("--replays", type=int, default=100, help="replays per rule (default 100)")
    p.add_argument("--slots", type=int, default=2, help="trials at once (default 2: a 2-core machine)")
    p.add_argument("--reduction-factor", type=int, default=3, help="ASHA's reduction factor (default 3)")
    p.add_argument("--grace-iters", type=int, default=1, help="ASHA's first rung (default 1)")
    p.add_argument("--objective", choices=OBJECTIVES, default="hypervolume",
                   help="hypervolume of the accuracy/FLOPs front (default; rules random, asha-first, mo-asha) or "
                        "the best val_loss (rules random, asha: Ray's ASHAScheduler)")
    p.add_argument("--rung-max-iters", type=int, default=None,
                   help="the scheduler's max_iters, whose rungs lie below it (default: the recorded budget)")
    p.add_argument("--rules", default=None,
                   help=f"comma-separated, of {', '.join(RULES)} (hypervolume) or {', '.join(LOSS_RULES)} "
                        "(val_loss); default all of the objective's")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    p.add_argument("--name", default="replay", help="output file stem (default replay)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        allowed = LOSS_RULES if args.objective == "val_loss" else RULES
        rules = [r.strip() for r in (args.rules or ",".join(allowed)).split(",") if r.strip()]
        bad = [r for r in rules if r not in allowed]
        if bad or not rules:
            raise UserError(f"--rules={args.rules!r} is invalid for --objective {args.objective}: a comma-separated "
                            f"list of {', '.join(allowed)}")
        if not (math.isfinite(args.wall_s) and args.wall_s > 0):
            raise UserError(f"--wall-s={args.wall_s} is invalid: seconds > 0")
        for flag, value, low in (("--replays", args.replays, 1), ("--slots", args.slots, 1),
                                 ("--reduction-factor", args.reduction_factor, 2),
                                 ("--grace-iters", args.grace_iters, 1)):
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
        if args.objective == "val_loss":
            curves = [c for c in curves if c.loss and all(math.isfinite(v) for v in c.loss)]
            if not curves:
                raise UserError("the experiments' completed trials recorded no finite val_loss: nothing to replay")
        if not args.grace_iters <= max_t:
            raise UserError(f"--grace-iters={args.grace_iters} is invalid: at most the scheduler's max_iters ({max_t})")
        rows = run_replays(curves, rules, args.replays, args.wall_s, args.slots, max_t, args.reduction_factor,
                           chars_per_iter, args.seed, args.grace_iters, args.objective)
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
