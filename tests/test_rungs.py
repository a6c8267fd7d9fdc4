"""Tests for tuning.spec.rungs: ASHA's rung iterations, and the advice when they fit the budget badly."""

from __future__ import annotations

import pytest

from tuning.spec.rungs import asha_rungs, rung_advice
from tuning.spec.space import Budget, load_space

BUILTINS = ("hw3-p1", "hw3-p2", "nextchar", "shakespeare", "smoke")


@pytest.mark.parametrize(
    ("max_iters", "grace", "factor", "want"),
    [
        (16, 1, 3, {1, 3, 9}),
        (4, 1, 2, {1, 2}),
        (9, 1, 3, {1, 3}),  # 9 is max_iters: a trial there has completed, not been stopped
        (20, 2, 3, {2, 6, 18}),
        (8, 3, 2, {3, 6}),
        (4, 4, 2, set()),
        (1, 1, 2, set()),
    ],
)
def test_asha_rungs(max_iters: int, grace: int, factor: int, want: set[int]) -> None:
    assert asha_rungs(max_iters, grace, factor) == sorted(want)


@pytest.mark.parametrize(("max_iters", "rf", "scheduler", "last"), [
    (4, 3, "asha", 3), (10, 3, "asha_first", 9), (3, 2, "asha", 2), (16, 3, "asha", 9),
    (27, 3, "asha", None), (8, 2, "asha", None), (1, 3, "asha", None), (4, 3, "none", None)])
def test_rung_advice_when_the_last_rung_falls_late(max_iters: int, rf: int, scheduler: str, last: int | None) -> None:
    advice = rung_advice(Budget(max_iters=max_iters, reduction_factor=rf), scheduler)
    if last is None:
        assert advice is None
    else:
        assert advice is not None and f"ASHA's last rung, at iteration {last}, " in advice
        assert f"max_iters {last} or {last * rf} would not" in advice


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_spaces_need_no_rung_advice(name: str) -> None:
    space = load_space(name)
    assert rung_advice(space.budget, space.scheduler) is None
