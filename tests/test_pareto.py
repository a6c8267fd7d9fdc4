"""Tests for tuning.spec.pareto: hand-made tables whose answers are worked out in the comments."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from numpy.typing import ArrayLike

from tuning.errors import UserError
from tuning.spec.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    hypervolume_2d,
    non_dominated_mask,
    non_dominated_sort,
    pareto_front,
    to_minimisation,
)

INF = math.inf
NAN = math.nan
ACC_FLOPS = {"accuracy": "max", "flops": "min"}
MIN_MIN = {"x": "min", "y": "min"}


# --------------------------------------------------------------------------------------------------------
# to_minimisation


def test_to_minimisation_negates_max_columns_in_objective_order() -> None:
    df = pd.DataFrame({"accuracy": [0.5, 0.75], "flops": [10, 20], "other": ["a", "b"]})
    before = df.copy()
    # Column order follows the mapping (flops first), accuracy is maximised so it comes out negated.
    got = to_minimisation(df, {"flops": "min", "accuracy": "max"})
    np.testing.assert_array_equal(got, [[10.0, -0.5], [20.0, -0.75]])
    assert got.dtype == np.float64
    pd.testing.assert_frame_equal(df, before)  # the input is not modified


def test_to_minimisation_nullable_missing_becomes_nan() -> None:
    df = pd.DataFrame({"x": pd.array([1, None], dtype="Int64"), "y": [2.0, 3.0]})
    got = to_minimisation(df, MIN_MIN)
    assert got[0].tolist() == [1.0, 2.0]
    assert math.isnan(got[1, 0]) and got[1, 1] == 3.0


@pytest.mark.parametrize(
    "objectives",
    [
        {},  # nothing to optimise
        {"x": "minimize"},  # only "min" / "max" are accepted
        {"x": "min", "nope": "max"},  # a column that the table does not have
    ],
)
def test_bad_objectives_are_user_errors(objectives: dict[str, str]) -> None:
    df = pd.DataFrame({"x": [1.0], "y": [2.0]})
    with pytest.raises(UserError):
        to_minimisation(df, objectives)
    with pytest.raises(UserError):
        non_dominated_mask(df, objectives)


# --------------------------------------------------------------------------------------------------------
# dominates


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 2], [2, 3], True),  # better in both
        ([1, 2], [1, 3], True),  # tie in x, better in y: weak dominance suffices
        ([1, 3], [1, 2], False),  # the reverse: worse in y
        ([1, 2], [1, 2], False),  # equal points: nothing strictly better, so no dominance either way
        ([1, 3], [2, 2], False),  # a trade-off: incomparable
        ([2, 2], [1, 3], False),
        ([NAN, 0], [1, 1], False),  # NaN never dominates ...
        ([0, 0], [NAN, 5], False),  # ... and is never dominated
        ([-INF, 0], [1, 1], False),  # -inf would "win" but non-finite rows are out of the game
        ([0, 0], [INF, INF], False),
        ([1, 2, 3], [1, 2, 4], True),  # three objectives, two ties
    ],
)
def test_dominates(a: list[float], b: list[float], expected: bool) -> None:
    assert dominates(a, b) is expected


def test_dominates_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        dominates([1, 2], [1, 2, 3])


# --------------------------------------------------------------------------------------------------------
# non_dominated_mask / pareto_front

# Mixed directions: accuracy is maximised, flops minimised.
#   a (0.90, 100)  on: nothing has acc >= 0.90 with flops <= 100 except itself
#   b (0.80,  50)  on
#   c (0.85, 120)  off: a has more accuracy and fewer flops
#   d (0.70,  10)  on: the cheapest
#   e (0.70,  60)  off: b (more accurate, cheaper) and d (as accurate, cheaper) both dominate it
#   f (0.95, 300)  on: the most accurate
MIXED = pd.DataFrame(
    {"accuracy": [0.90, 0.80, 0.85, 0.70, 0.70, 0.95], "flops": [100, 50, 120, 10, 60, 300]},
    index=list("abcdef"),
)

# Ties in one objective (both minimised):
#   (1, 5) off: (1, 4) ties x and is better in y
#   (1, 4) on
#   (2, 4) off: (1, 4) ties y and is better in x
#   (3, 1) on
#   (3, 2) off: (3, 1) ties x and is better in y
TIES = pd.DataFrame({"x": [1, 1, 2, 3, 3], "y": [5, 4, 4, 1, 2]})

# Exact duplicates: both copies of (1, 2) and of (2, 1) stay on the front (they do not dominate each
# other); (2, 2) is dominated by (1, 2); both copies of the dominated (3, 3) are off.
DUPLICATES = pd.DataFrame({"x": [1, 1, 2, 2, 2, 3, 3], "y": [2, 2, 1, 1, 2, 3, 3]})

# Non-finite rows (accuracy max, flops min):
#   a (nan, 1)    off: no accuracy; had it counted it would not matter, it must not dominate anything
#   b (0.9, inf)  off
#   c (0.5, 10)   on: only d (off) and nothing finite beats it
#   d (inf, 10)   off: "infinitely accurate" would dominate c if it were allowed to
#   e (0.4, -inf) off: would dominate f and g otherwise
#   f (0.4, 20)   off: c is more accurate and cheaper
#   g (0.6, 30)   on: the most accurate finite row
# The "note" column has a NaN in a front row: only objective columns matter.
NON_FINITE = pd.DataFrame(
    {
        "accuracy": [NAN, 0.9, 0.5, INF, 0.4, 0.4, 0.6],
        "flops": [1, INF, 10, 10, -INF, 20, 30],
        "note": [1.0, 1.0, NAN, 1.0, 1.0, 1.0, 1.0],
    },
    index=list("abcdefg"),
)

# Three objectives: loss min, params min, throughput max.
#   r0 (1.0, 100, 50) on
#   r1 (1.2,  80, 50) on: fewest params
#   r2 (1.0, 100, 40) off: r0 ties loss and params, has more throughput
#   r3 (1.5, 200, 90) on: nothing with throughput >= 90 except r7, which has more params
#   r4 (1.5, 200, 80) off: r3 ties loss and params, has more throughput
#   r5 (1.1,  90, 60) on: r0 has less loss but more params, r1 fewer params but more loss
#   r6 (1.2, 100, 45) off: r0 is better in loss and throughput, ties params
#   r7 (1.3, 250, 95) on only because of the third objective (r0 beats it in loss and params)
#   r8 (1.0, 120, 70) on: ties r0 in loss, more params but more throughput
THREE = pd.DataFrame(
    {
        "loss": [1.0, 1.2, 1.0, 1.5, 1.5, 1.1, 1.2, 1.3, 1.0],
        "params": [100, 80, 100, 200, 200, 90, 100, 250, 120],
        "throughput": [50, 50, 40, 90, 80, 60, 45, 95, 70],
    },
    index=[f"r{i}" for i in range(9)],
)
THREE_OBJECTIVES = {"loss": "min", "params": "min", "throughput": "max"}


@pytest.mark.parametrize(
    ("df", "objectives", "expected"),
    [
        pytest.param(MIXED, ACC_FLOPS, [True, True, False, True, False, True], id="mixed-directions"),
        pytest.param(TIES, MIN_MIN, [False, True, False, True, False], id="ties"),
        pytest.param(DUPLICATES, MIN_MIN, [True, True, True, True, False, False, False], id="duplicates"),
        pytest.param(NON_FINITE, ACC_FLOPS, [False, False, True, False, False, False, True], id="nan-inf"),
        pytest.param(
            THREE, THREE_OBJECTIVES, [True, True, False, True, False, True, False, True, True], id="three-objectives"
        ),
        pytest.param(pd.DataFrame({"x": [3.0], "y": [7.0]}), MIN_MIN, [True], id="single-row"),
        pytest.param(pd.DataFrame({"x": [NAN], "y": [7.0]}), MIN_MIN, [False], id="single-nan-row"),
        pytest.param(pd.DataFrame({"x": [], "y": []}, dtype=float), MIN_MIN, [], id="empty"),
        # Flipping a direction changes the answer: with flops *maximised* too, f (0.95, 300) dominates all.
        pytest.param(
            MIXED, {"accuracy": "max", "flops": "max"}, [False, False, False, False, False, True], id="max-max"
        ),
    ],
)
def test_non_dominated_mask(df: pd.DataFrame, objectives: dict[str, str], expected: list[bool]) -> None:
    mask = non_dominated_mask(df, objectives)
    assert mask.dtype == np.bool_
    assert mask.tolist() == expected


def test_non_dominated_mask_agrees_with_dominates_pairwise() -> None:
    # A brute-force restatement of the definition on a random table with ties and duplicates.
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"x": rng.integers(0, 6, 80), "y": rng.integers(0, 6, 80), "z": rng.integers(0, 6, 80)})
    objectives = {"x": "min", "y": "max", "z": "min"}
    points = to_minimisation(df, objectives)
    expected = [not any(dominates(q, p) for q in points) for p in points]
    assert non_dominated_mask(df, objectives).tolist() == expected


@pytest.mark.parametrize(
    ("df", "objectives", "expected_index"),
    [
        # Front a, b, d, f sorted by accuracy, best (largest) first.
        pytest.param(MIXED, ACC_FLOPS, ["f", "a", "b", "d"], id="mixed-directions"),
        # Front sorted by loss; r0 and r8 tie on loss 1.0 and are ordered by params (100 < 120).
        pytest.param(THREE, THREE_OBJECTIVES, ["r0", "r8", "r5", "r1", "r7", "r3"], id="three-objectives"),
        pytest.param(NON_FINITE, ACC_FLOPS, ["g", "c"], id="nan-inf"),
        # Copies of one point keep their table order (11 before 13, 10 before 12).
        pytest.param(
            pd.DataFrame({"x": [2, 1, 2, 1], "y": [1, 2, 1, 2]}, index=[10, 11, 12, 13]),
            MIN_MIN,
            [11, 13, 10, 12],
            id="duplicates",
        ),
    ],
)
def test_pareto_front_rows_and_order(df: pd.DataFrame, objectives: dict[str, str], expected_index: list) -> None:
    front = pareto_front(df, objectives)
    assert front.index.tolist() == expected_index
    # Whole rows come back unchanged, all columns included.
    pd.testing.assert_frame_equal(front, df.loc[expected_index])


def test_pareto_front_of_empty_frame_is_empty_with_columns() -> None:
    df = pd.DataFrame({"accuracy": [], "flops": [], "name": []})
    front = pareto_front(df, ACC_FLOPS)
    assert front.empty
    assert list(front.columns) == ["accuracy", "flops", "name"]


# --------------------------------------------------------------------------------------------------------
# non_dominated_sort


def test_non_dominated_sort_ranks() -> None:
    points = [
        [1, 4],  # 0: front 0
        [2, 2],  # 1: front 0
        [4, 1],  # 2: front 0
        [2, 4],  # 3: dominated by (1, 4) and (2, 2) only -> front 1
        [3, 3],  # 4: dominated by (2, 2) only -> front 1
        [4, 4],  # 5: dominated by (2, 4) and (3, 3), which are front 1 -> front 2
        [5, 2],  # 6: dominated by (2, 2) and (4, 1), front 0 -> front 1
        [5, 5],  # 7: dominated by (4, 4) of front 2 -> front 3
        [NAN, 0],  # 8: non-finite -> after the last front: 4
        [INF, INF],  # 9: non-finite -> 4
        [2, 2],  # 10: duplicate of row 1 -> front 0 as well
    ]
    ranks = non_dominated_sort(np.array(points, dtype=float))
    assert ranks.dtype == np.int64
    assert ranks.tolist() == [0, 0, 0, 1, 1, 2, 1, 3, 4, 4, 0]


def test_non_dominated_sort_first_front_is_the_mask_and_ranks_are_consistent() -> None:
    rng = np.random.default_rng(3)
    points = rng.integers(0, 8, size=(60, 3)).astype(float)
    points[[5, 17], 1] = NAN
    ranks = non_dominated_sort(points)
    df = pd.DataFrame(points, columns=["a", "b", "c"])
    assert (ranks == 0).tolist() == non_dominated_mask(df, {"a": "min", "b": "min", "c": "min"}).tolist()
    assert ranks[5] == ranks[17] == ranks.max()
    assert ranks[[5, 17]].min() > np.delete(ranks, [5, 17]).max()
    # Every finite point of rank r > 0 is dominated by some point of rank r - 1 and by none of rank >= r.
    for i in np.flatnonzero(np.isfinite(points).all(axis=1)):
        dominators = [ranks[j] for j in range(len(points)) if dominates(points[j], points[i])]
        assert all(r < ranks[i] for r in dominators)
        if ranks[i] > 0:
            assert ranks[i] - 1 in dominators


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (np.empty((0, 2)), []),
        ([], []),
        ([[NAN, 1.0], [1.0, INF]], [0, 0]),  # nothing finite: the "last" rank is 0
        ([[3.0, 3.0]], [0]),
    ],
)
def test_non_dominated_sort_edge_cases(points: ArrayLike, expected: list[int]) -> None:
    assert non_dominated_sort(points).tolist() == expected


def test_non_dominated_sort_rejects_1d_points() -> None:
    with pytest.raises(ValueError):
        non_dominated_sort([1.0, 2.0])


# --------------------------------------------------------------------------------------------------------
# crowding_distance

# Deb et al.'s formula by hand on A (1, 5), B (2, 3), C (4, 2), D (6, 1):
#   x: values 1, 2, 4, 6, range 5: A, D boundary (inf); B (4 - 1) / 5 = 0.6; C (6 - 2) / 5 = 0.8
#   y: values 1, 2, 3, 5, range 4: D, A boundary (inf); B (5 - 2) / 4 = 0.75; C (3 - 1) / 4 = 0.5
#   B = 1.35, C = 1.3
FRONT = [[1, 5], [2, 3], [4, 2], [6, 1]]


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        pytest.param(FRONT, [INF, 1.35, 1.3, INF], id="deb-example"),
        # The same front, rows shuffled: each point keeps its distance.
        pytest.param([FRONT[2], FRONT[0], FRONT[3], FRONT[1]], [1.3, INF, INF, 1.35], id="shuffled"),
        # A third objective constant over the front adds nothing (and does not divide by zero).
        pytest.param([[*p, 7] for p in FRONT], [INF, 1.35, 1.3, INF], id="constant-objective"),
        # Duplicates of B: distinct x values 1, 2, 6 -> (6 - 1) / 5 = 1; distinct y 1, 3, 5 -> (5 - 1) / 4 = 1.
        pytest.param([[1, 5], [2, 3], [2, 3], [6, 1]], [INF, 2.0, 2.0, INF], id="duplicate-interior"),
        # Both copies of a boundary point are boundary points.
        pytest.param([[1, 5], [1, 5], [2, 3], [6, 1]], [INF, INF, 2.0, INF], id="duplicate-boundary"),
        # One distinct point (every objective constant): a one-point front, all boundary.
        pytest.param([[1, 1], [1, 1], [1, 1]], [INF, INF, INF], id="all-identical"),
        pytest.param([[1, 2], [2, 1]], [INF, INF], id="two-points"),
        pytest.param([[1, 2]], [INF], id="one-point"),
        # A non-finite row gets NaN and is left out of the others' neighbours and ranges.
        pytest.param([*FRONT, [NAN, 0]], [INF, 1.35, 1.3, INF, NAN], id="nan-row"),
    ],
)
def test_crowding_distance(points: list[list[float]], expected: list[float]) -> None:
    with np.errstate(all="raise"):  # any division by zero or invalid operation fails the test
        got = crowding_distance(np.array(points, dtype=float))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_crowding_distance_empty() -> None:
    assert crowding_distance(np.empty((0, 2))).shape == (0,)


# --------------------------------------------------------------------------------------------------------
# hypervolume_2d

# The staircase (1, 3), (2, 2), (3, 1) under reference (4, 4), both minimised:
#   x in [1, 2): y from 3 to 4 -> 1 × 1 = 1
#   x in [2, 3): y from 2 to 4 -> 1 × 2 = 2
#   x in [3, 4): y from 1 to 4 -> 1 × 3 = 3                                     total 6
STAIRCASE = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [3.0, 2.0, 1.0]})
REF = {"x": 4.0, "y": 4.0}

# The same staircase with accuracy maximised: (acc 7, flops 1), (8, 2), (9, 3), reference acc 6 (a lower bound),
# flops 4 (an upper bound). acc in [6, 7): flops 1..4 -> 3; [7, 8): flops 2..4 -> 2; [8, 9): 3..4 -> 1. Total 6.
STAIRCASE_MAX = pd.DataFrame({"accuracy": [7.0, 8.0, 9.0], "flops": [1.0, 2.0, 3.0]})
REF_MAX = {"accuracy": 6.0, "flops": 4.0}


def _with(df: pd.DataFrame, *rows: tuple[float, float]) -> pd.DataFrame:
    return pd.concat([df, pd.DataFrame(list(rows), columns=df.columns)], ignore_index=True)


@pytest.mark.parametrize(
    ("df", "objectives", "reference", "expected"),
    [
        pytest.param(STAIRCASE, MIN_MIN, REF, 6.0, id="staircase-min-min"),
        pytest.param(STAIRCASE_MAX, ACC_FLOPS, REF_MAX, 6.0, id="staircase-max-min"),
        # Maximising both, with lower bounds (6, 0): (9, 3) dominates the other two, so the area is its box
        # [6, 9] × [0, 3] = 9.
        pytest.param(
            STAIRCASE_MAX, {"accuracy": "max", "flops": "max"}, {"accuracy": 6, "flops": 0}, 9.0, id="max-max"
        ),
        # A dominated point (3, 3) and a duplicate (2, 2) add nothing.
        pytest.param(_with(STAIRCASE, (3, 3), (2, 2)), MIN_MIN, REF, 6.0, id="dominated-and-duplicate"),
        # Points on or beyond the reference are not strictly better in both coordinates: they add nothing
        # ((0, 4) and (4, 0) have zero-area boxes; (5, -1) and (-1, 5) lie outside the bounds).
        pytest.param(_with(STAIRCASE, (0, 4), (4, 0), (5, -1), (-1, 5)), MIN_MIN, REF, 6.0, id="outside-reference"),
        # NaN and inf rows are ignored; (0, -inf) would otherwise make the area infinite.
        pytest.param(_with(STAIRCASE, (NAN, 0), (0, -INF), (-INF, NAN)), MIN_MIN, REF, 6.0, id="non-finite"),
        # A new point (0.5, 3.5) adds x in [0.5, 1) × y in [3.5, 4) = 0.25.
        pytest.param(_with(STAIRCASE, (0.5, 3.5)), MIN_MIN, REF, 6.25, id="extra-step"),
        pytest.param(pd.DataFrame({"x": [1.0], "y": [1.0]}), MIN_MIN, REF, 9.0, id="single-row"),
        pytest.param(pd.DataFrame({"x": [], "y": []}, dtype=float), MIN_MIN, REF, 0.0, id="empty"),
        pytest.param(pd.DataFrame({"x": [5.0, NAN], "y": [1.0, 1.0]}), MIN_MIN, REF, 0.0, id="nothing-inside"),
        # Accuracy below its lower bound contributes nothing, even with few flops.
        pytest.param(_with(STAIRCASE_MAX, (5.0, 0.0)), ACC_FLOPS, REF_MAX, 6.0, id="below-max-reference"),
    ],
)
def test_hypervolume_2d(
    df: pd.DataFrame, objectives: dict[str, str], reference: dict[str, float], expected: float
) -> None:
    assert hypervolume_2d(df, objectives, reference) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("objectives", "reference"),
    [
        ({"x": "min"}, {"x": 4.0}),  # one objective
        ({"x": "min", "y": "min", "z": "min"}, {"x": 4.0, "y": 4.0, "z": 4.0}),  # three
        (MIN_MIN, {"x": 4.0}),  # reference without y
        (MIN_MIN, {"x": 4.0, "y": NAN}),  # non-finite reference
        ({"x": "min", "y": "best"}, REF),  # bad direction
    ],
)
def test_hypervolume_2d_rejects_bad_input(objectives: dict[str, str], reference: dict[str, float]) -> None:
    df = STAIRCASE.assign(z=1.0)
    with pytest.raises(UserError):
        hypervolume_2d(df, objectives, reference)


# --------------------------------------------------------------------------------------------------------
# hypervolume


@pytest.mark.parametrize(
    ("points", "reference", "expected"),
    [
        pytest.param([[1, 3], [2, 2], [3, 1]], [4, 4], 6.0, id="staircase"),
        # The max/min staircase in minimisation form: accuracy negated, reference -6.
        pytest.param([[-7, 1], [-8, 2], [-9, 3]], [-6, 4], 6.0, id="staircase-negated"),
        pytest.param([[3], [1], [NAN]], [4], 3.0, id="one-objective"),
        pytest.param([[1, 1, 1]], [2, 2, 2], 1.0, id="unit-cube"),
        # Boxes [0,2]×[0,2]×[1,2] (volume 4) and [1,2]×[1,2]×[0,2] (volume 2) overlap in [1,2]^3 (volume 1):
        # union 4 + 2 - 1 = 5.
        pytest.param([[0, 0, 1], [1, 1, 0]], [2, 2, 2], 5.0, id="two-boxes-3d"),
        # The same plus a dominated point, a duplicate, a point on the reference and a NaN row: still 5.
        pytest.param(
            [[0, 0, 1], [1, 1, 0], [1, 1, 1], [0, 0, 1], [0, 0, 2], [NAN, 0, 0]], [2, 2, 2], 5.0, id="3d-noise"
        ),
        # Four objectives: [0,2]^3 × [1,2] (8) and [1,2]^3 × [0,2] (2), overlap [1,2]^4 (1): 9.
        pytest.param([[0, 0, 0, 1], [1, 1, 1, 0]], [2, 2, 2, 2], 9.0, id="two-boxes-4d"),
        pytest.param(np.empty((0, 3)), [1, 1, 1], 0.0, id="empty"),
        pytest.param([[5, 0]], [4, 4], 0.0, id="outside"),
    ],
)
def test_hypervolume(points: list[list[float]], reference: list[float], expected: float) -> None:
    assert hypervolume(np.array(points, dtype=float), np.array(reference, dtype=float)) == pytest.approx(expected)


def _grid_cells_dominated(points: np.ndarray, size: int) -> int:
    """Count the unit cells [c, c + 1]^k, c in {0..size-1}^k, lying in the union of the boxes [p, size]^k."""
    k = points.shape[1]
    return sum(bool((points <= np.array(c)).all(axis=1).any()) for c in itertools.product(range(size), repeat=k))


@pytest.mark.parametrize(
    ("k", "n", "size", "seed"), [(2, 12, 9, 2), (3, 10, 7, 1), (3, 25, 7, 2), (4, 8, 5, 3), (4, 20, 5, 4)]
)
def test_hypervolume_matches_cell_count_on_integer_points(k: int, n: int, size: int, seed: int) -> None:
    # With integer coordinates in 1..size-1 and reference `size` in every objective, the dominated region is
    # a union of unit cells, so counting cells gives the exact hypervolume by a completely different route.
    rng = np.random.default_rng(seed)
    points = rng.integers(1, size, size=(n, k)).astype(float)
    expected = _grid_cells_dominated(points, size)
    # Non-trivial: the point (1, ..., 1), which would dominate everything, was not drawn.
    assert 0 < expected < (size - 1) ** k
    columns = [f"f{j}" for j in range(k)]
    assert (~non_dominated_mask(pd.DataFrame(points, columns=columns), dict.fromkeys(columns, "min"))).any()
    assert hypervolume(points, np.full(k, float(size))) == expected


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_2d_equals_hypervolume_on_random_fronts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    df = pd.DataFrame({"accuracy": rng.uniform(0.2, 0.9, n), "flops": rng.lognormal(10.0, 1.0, n)})
    # A few points along an exact trade-off curve so the front is not just two or three points.
    curve = np.linspace(0.3, 0.95, 15)
    df = pd.concat([df, pd.DataFrame({"accuracy": curve, "flops": np.exp(8 + 6 * curve)})], ignore_index=True)
    reference = {"accuracy": 0.25, "flops": float(np.exp(14.5))}
    area = hypervolume_2d(df, ACC_FLOPS, reference)
    points = to_minimisation(df, ACC_FLOPS)
    assert area > 0
    assert hypervolume(points, np.array([-reference["accuracy"], reference["flops"]])) == pytest.approx(area, rel=1e-12)
    # Only the front matters: the same area from the front alone, and less without its best-accuracy point.
    front = pareto_front(df, ACC_FLOPS)
    assert hypervolume_2d(front, ACC_FLOPS, reference) == pytest.approx(area, rel=1e-12)
    assert hypervolume_2d(front.iloc[1:], ACC_FLOPS, reference) < area


def test_hypervolume_rejects_mismatched_reference() -> None:
    with pytest.raises(ValueError):
        hypervolume(np.ones((3, 2)), np.array([2.0, 2.0, 2.0]))
    with pytest.raises(UserError):
        hypervolume(np.ones((3, 2)), np.array([2.0, INF]))
