"""ASHA's rung arithmetic: the iterations at which a trial is judged, and a warning when they fit the budget badly.

The one place this arithmetic lives: the driver, the schedulers, the report and the replay benchmark all ask it.
"""

from __future__ import annotations

from tuning.spec.space import ASHA_SCHEDULERS, Budget


def asha_rungs(max_iters: int, grace: int, reduction_factor: int) -> list[int]:
    """Iterations at which ASHA decides, ascending (Li et al. 2020, "A System for Massively Parallel HPO", Alg. 1)."""
    out, t = [], grace
    while t < max_iters:
        out.append(t)
        t *= reduction_factor
    return out


def rung_advice(budget: Budget, scheduler: str) -> str | None:
    """A warning when ASHA's last rung falls late in the budget, else None.

    ASHA decides at ``grace · rf^k`` iterations below ``max_iters`` (Li et al. 2020); the successive-halving
    arithmetic assumes ``max_iters`` is itself one of those points. Otherwise the last rung sits less than a factor
    ``rf`` below the end and stops trials that have already spent most of their budget, to save little: with
    ``max_iters`` 4 and rf 3, the rung at 3 discards 3/4 of each stopped trial's cost to save the last 1/4. (A
    replay of the multi-objective benchmark's recorded 4-iteration curves through MO-ASHA, ``python -m
    benchmarks.replay``, reached random search's final hypervolume with 0.69× its compute with one rung at
    iteration 1, and 0.92× with rungs at 1 and 3: benchmarks/replay-mo-rung-1.md, replay-mo-rungs-1-3.md.)
    """
    if scheduler not in ASHA_SCHEDULERS:
        return None
    points = asha_rungs(budget.max_iters, budget.grace_iters, budget.reduction_factor)
    if not points:
        return None
    last, end = points[-1], budget.max_iters
    t = last * budget.reduction_factor  # the rung after the last: max_iters itself when the layout fits
    if t == end:
        return None
    return (f"budget: max_iters {end} is not grace_iters × reduction_factor^k ({', '.join(map(str, points))}, {t}, "
            f"…): ASHA's last rung, at iteration {last}, stops trials after {last / end:.0%} of their budget to save "
            f"the last {1 - last / end:.0%}; max_iters {last} or {t} would not")
