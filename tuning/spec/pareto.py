"""Pareto maths over trial tables: dominance, fronts, NSGA-II ranks and crowding, hypervolume.

Pure functions over pandas DataFrames and numpy arrays: no Ray, no I/O, no state. The report and the search
driver both use them, so a front drawn in a report is the front the search reasoned about.

Objectives are a mapping ``{column: "min" | "max"}``, in order: the order decides the column order of
:func:`to_minimisation` and the sort order of :func:`pareto_front`. Internally everything is minimised: a
``"max"`` column is negated once, in :func:`to_minimisation`, and every other function works on
"minimisation points" (an ``n × k`` float array, smaller is better in every column).

Semantics chosen here, the same in every function:

* **Non-finite values.** A row with NaN or ±inf in any objective is invalid: a failed or diverged trial
  (a NaN loss, an infinite perplexity). It is never on a front, never dominates anything, and is ignored by
  the hypervolume. ``-inf`` in a minimised column would otherwise dominate every finite row and make the
  hypervolume infinite; one broken trial must not hide all the good ones.
* **Pareto dominance.** ``a`` dominates ``b`` when ``a`` is no worse in every objective and strictly
  better in at least one: the relation NSGA-II sorts by (Deb et al. 2002) and the one Zitzler & Thiele
  (1999) define. Being no worse everywhere is not enough (some authors call that alone "weak dominance"), so
  of two rows tied in one objective, the one better in another objective dominates, and equal rows do not.
* **Exact duplicates.** Equal points do not dominate each other (no objective is strictly better), so all
  copies of a non-dominated point stay on the front. This is deliberate: two trials that reached the same
  accuracy with the same FLOPs are both optimal, and the report should show both rather than pick one by
  row order. The hypervolume counts their area once (it is a measure of a union of boxes).

References:
    K. Deb, A. Pratap, S. Agarwal, T. Meyarivan (2002). "A fast and elitist multiobjective genetic
    algorithm: NSGA-II". IEEE Trans. Evolutionary Computation 6(2):182-197.
    F.-A. Fortin, M. Parizeau (2013). "Revisiting the NSGA-II crowding-distance computation". GECCO '13.
    E. Zitzler, L. Thiele (1998). "Multiobjective optimization using evolutionary algorithms - a
    comparative case study". PPSN V, LNCS 1498 (the hypervolume, "size of the space covered").
    E. Zitzler, L. Thiele (1999). "Multiobjective evolutionary algorithms: a comparative case study and the
    strength Pareto approach". IEEE Trans. Evolutionary Computation 3(4):257-271.
    L. While, P. Hingston, L. Barone, S. Huband (2006). "A faster algorithm for calculating hypervolume".
    IEEE Trans. Evolutionary Computation 10(1):29-38 (HSO, the slicing algorithm used by
    :func:`hypervolume`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from tuning.errors import UserError

__all__ = [
    "DIRECTIONS",
    "crowding_distance",
    "dominates",
    "hypervolume",
    "hypervolume_2d",
    "non_dominated_mask",
    "non_dominated_sort",
    "pareto_front",
    "to_minimisation",
]

DIRECTIONS = ("min", "max")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# Upper bound on the elements of one n × chunk × k comparison block in _domination_matrix: bounds memory
# (a few tens of MB of booleans) while keeping the work in numpy rather than a Python loop per row.
_BLOCK_ELEMENTS = 4_000_000


def _check_objectives(objectives: Mapping[str, str]) -> None:
    """Raise :class:`UserError` unless ``objectives`` is a non-empty ``{column: "min" | "max"}``."""
    if not objectives:
        raise UserError("no objectives given (need at least one {column: 'min' | 'max'})")
    for column, direction in objectives.items():
        if direction not in DIRECTIONS:
            raise UserError(f"objective {column!r}: direction {direction!r} is invalid (allowed: min, max)")


def _as_points(points: npt.ArrayLike, name: str = "points") -> FloatArray:
    """Return ``points`` as a float ``n × k`` array; an empty input becomes ``0 × 0``."""
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0 and array.ndim <= 1:
        return array.reshape(0, 0)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n points × k objectives), got shape {array.shape}")
    return array


def _finite_rows(points: FloatArray) -> BoolArray:
    """Rows whose every objective is finite: the only rows that take part in dominance (module docstring)."""
    return np.asarray(np.isfinite(points).all(axis=1), dtype=np.bool_)


def _domination_matrix(points: FloatArray) -> BoolArray:
    """``D[i, j]`` is True when row ``i`` weakly Pareto-dominates row ``j`` (all rows assumed finite).

    Built column block by column block so that memory stays bounded for large tables; the diagonal and
    exact duplicates come out False because no objective is strictly better.
    """
    n, k = points.shape
    matrix = np.zeros((n, n), dtype=np.bool_)
    block = max(1, _BLOCK_ELEMENTS // max(1, n * k))
    for start in range(0, n, block):
        targets = points[None, start : start + block, :]
        no_worse = (points[:, None, :] <= targets).all(axis=2)
        better = (points[:, None, :] < targets).any(axis=2)
        matrix[:, start : start + block] = no_worse & better
    return matrix


def _non_dominated(points: FloatArray) -> BoolArray:
    """Mask of the finite rows of ``points`` that no other finite row dominates."""
    mask = _finite_rows(points)
    if mask.any():
        finite_index = np.flatnonzero(mask)
        dominated = _domination_matrix(points[finite_index]).any(axis=0)
        mask[finite_index[dominated]] = False
    return mask


def to_minimisation(df: pd.DataFrame, objectives: Mapping[str, str]) -> FloatArray:
    """Return the objective columns of ``df`` as minimisation points.

    Args:
        df: The table, one row per trial.
        objectives: ``{column: "min" | "max"}``; its order is the column order of the result.

    Returns:
        A new ``len(df) × len(objectives)`` float array, rows in ``df``'s order, with every ``"max"`` column
        negated so that smaller is better everywhere. Missing values (NaN, ``None``, ``pd.NA``) become NaN.

    Raises:
        UserError: If ``objectives`` is empty, a direction is not ``"min"``/``"max"``, or a column is
            missing from ``df``.
    """
    _check_objectives(objectives)
    columns = list(objectives)
    missing = [column for column in columns if column not in df.columns]
    if missing:
        raise UserError(f"objective column(s) {', '.join(map(repr, missing))} not in the table")
    # na_value: nullable pandas dtypes (Int64, Float64) refuse a float conversion while pd.NA is present.
    points: FloatArray = df[columns].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    # Negating a maximised objective turns "bigger is better" into "smaller is better" without changing
    # which points dominate which, so all the algorithms below need only the minimisation case.
    for j, column in enumerate(columns):
        if objectives[column] == "max":
            points[:, j] = -points[:, j]
    return points


def dominates(a: npt.ArrayLike, b: npt.ArrayLike) -> bool:
    """Whether minimisation point ``a`` weakly Pareto-dominates ``b``.

    ``a`` dominates ``b`` when ``a <= b`` in every objective and ``a < b`` in at least one (the dominance of
    Deb et al. 2002). Equal points do not dominate each other, and a point with a non-finite value neither dominates nor
    is dominated (module docstring).

    Args:
        a: A point, one value per objective, smaller is better.
        b: Another point of the same length.

    Returns:
        True when ``a`` dominates ``b``.

    Raises:
        ValueError: If ``a`` and ``b`` are not 1-D of the same length.
    """
    left = np.asarray(a, dtype=np.float64)
    right = np.asarray(b, dtype=np.float64)
    if left.ndim != 1 or left.shape != right.shape:
        raise ValueError(f"dominates() needs two 1-D points of the same length, got {left.shape} and {right.shape}")
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        return False
    return bool((left <= right).all() and (left < right).any())


def non_dominated_mask(df: pd.DataFrame, objectives: Mapping[str, str]) -> BoolArray:
    """Mask of the rows of ``df`` on the Pareto front.

    A row is on the front when all its objectives are finite and no other finite row dominates it. Rows tied
    in one objective are separated by the others (weak dominance); exact duplicates of a front point are all
    on the front; rows with NaN or ±inf are never on it and never push another row off it.

    Args:
        df: The table, one row per trial.
        objectives: ``{column: "min" | "max"}``.

    Returns:
        A boolean array of length ``len(df)``, aligned with ``df``'s rows by position.

    Raises:
        UserError: As :func:`to_minimisation`.
    """
    return _non_dominated(to_minimisation(df, objectives))


def pareto_front(df: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    """The non-dominated rows of ``df``, best first.

    Args:
        df: The table, one row per trial.
        objectives: ``{column: "min" | "max"}``.

    Returns:
        The rows selected by :func:`non_dominated_mask` (all columns, original index labels kept), sorted by
        the first objective from best to worst, ties broken by the second objective and so on; rows equal in
        every objective keep their order in ``df``.

    Raises:
        UserError: As :func:`to_minimisation`.
    """
    points = to_minimisation(df, objectives)
    positions = np.flatnonzero(_non_dominated(points))
    front = points[positions]
    # np.lexsort sorts by its last key first: give it the position (least significant, so exact duplicates
    # keep their table order), then the objectives from last to first.
    keys = [positions, *(front[:, j] for j in reversed(range(front.shape[1])))]
    order = np.lexsort(keys)
    return df.iloc[positions[order]]


def non_dominated_sort(points: npt.ArrayLike) -> IntArray:
    """NSGA-II front ranks of minimisation points (Deb et al. 2002, §III-A, fast non-dominated sort).

    Rank 0 is the Pareto front of all finite rows; rank ``r + 1`` is the front of what remains after removing
    ranks ``0..r``. Rows with a non-finite value all get the rank after the last finite front (0 if no row is
    finite), so they sort last without displacing anything.

    Args:
        points: An ``n × k`` array, smaller is better in every column.

    Returns:
        An int64 array of length ``n``.

    Raises:
        ValueError: If ``points`` is not 2-D.
    """
    array = _as_points(points)
    n = array.shape[0]
    ranks = np.zeros(n, dtype=np.int64)
    finite = _finite_rows(array)
    finite_index = np.flatnonzero(finite)
    if finite_index.size == 0:
        return ranks
    matrix = _domination_matrix(array[finite_index])
    # Deb et al.'s bookkeeping, vectorised: n_p = how many remaining points dominate p. The points with
    # n_p == 0 form the current front; removing it decrements the counts of the points it dominates.
    counts = matrix.sum(axis=0)
    finite_ranks = np.full(finite_index.size, -1, dtype=np.int64)
    current = np.flatnonzero(counts == 0)
    rank = 0
    while current.size:
        finite_ranks[current] = rank
        counts = counts - matrix[current].sum(axis=0)
        current = np.flatnonzero((counts == 0) & (finite_ranks < 0))
        rank += 1
    ranks[finite_index] = finite_ranks
    ranks[~finite] = rank  # one past the last finite front
    return ranks


def crowding_distance(points: npt.ArrayLike) -> FloatArray:
    """NSGA-II crowding distance of the points of one front (Deb et al. 2002, §III-B).

    For each objective the points are ordered by value; the extreme points get ``inf`` and the others add
    the gap between their two neighbours divided by the objective's range. Larger means more isolated, so
    NSGA-II prefers it to keep the front spread out.

    Duplicates and ties are handled per distinct value, after Fortin & Parizeau (2013): the textbook
    formula on a sorted list gives copies of one point different distances depending on row order (and
    may give only one copy the boundary ``inf``). Here a point's neighbours in an objective are the nearest
    strictly smaller and strictly larger *values*, and every point holding the minimum or maximum value is a
    boundary point, so equal points always get equal distances. For points all distinct in every objective
    this is exactly Deb et al.'s formula. An objective constant over the points adds nothing (its range
    is zero, so it says nothing about spread, and dividing by it would fail); if every objective is
    constant (one distinct point), all distances are ``inf``, as for a one-point front.

    Args:
        points: An ``n × k`` array of minimisation points, normally one front from
            :func:`non_dominated_sort` (the direction does not matter: crowding is symmetric).

    Returns:
        A float array of length ``n``; NaN for rows with a non-finite value (they have no place on a front).

    Raises:
        ValueError: If ``points`` is not 2-D.
    """
    array = _as_points(points)
    n, k = array.shape
    distances = np.full(n, np.nan)
    finite = _finite_rows(array)
    valid = array[finite]
    if valid.shape[0] == 0:
        return distances
    total = np.zeros(valid.shape[0])
    varies = False
    for j in range(k):
        values, where = np.unique(valid[:, j], return_inverse=True)
        if values.size < 2:
            continue
        varies = True
        gaps = np.full(values.size, np.inf)
        gaps[1:-1] = (values[2:] - values[:-2]) / (values[-1] - values[0])
        total += gaps[where.reshape(-1)]
    if not varies:
        total[:] = np.inf
    distances[finite] = total
    return distances


def _check_reference(reference: FloatArray, k: int) -> None:
    if reference.shape != (k,):
        raise ValueError(f"the reference point needs {k} coordinate(s), got shape {reference.shape}")
    if not np.isfinite(reference).all():
        raise UserError(f"the hypervolume reference point must be finite, got {reference.tolist()}")


def hypervolume_2d(df: pd.DataFrame, objectives: Mapping[str, str], reference: Mapping[str, float]) -> float:
    """Area dominated by the Pareto front of two objectives and bounded by a reference point.

    The hypervolume indicator of Zitzler & Thiele (1998): the measure of the region that at least one row
    dominates and that dominates the reference point. ``reference`` is in the objectives' own units and
    directions: for a ``"max"`` objective it is a lower bound (e.g. accuracy 0), for a ``"min"`` objective
    an upper bound (e.g. the largest FLOPs of interest).

    Rows not strictly better than the reference in both objectives contribute nothing (their box would be
    empty or lie outside the bounds); rows with NaN or ±inf are ignored; duplicates count once.

    This is the textbook staircase (sum of the rectangles between consecutive front points, sorted by the
    first objective), written independently of :func:`hypervolume` so each can check the other.

    Args:
        df: The table, one row per trial.
        objectives: Exactly two ``{column: "min" | "max"}``.
        reference: ``{column: value}`` for both objective columns.

    Returns:
        The area, in the product of the two objectives' units; ``0.0`` for an empty table or when no row
        beats the reference.

    Raises:
        UserError: If there are not exactly two objectives, a reference coordinate is missing or
            non-finite, or as :func:`to_minimisation`.
    """
    if len(objectives) != 2:
        raise UserError(f"hypervolume_2d needs exactly 2 objectives, got {len(objectives)}: {list(objectives)}")
    points = to_minimisation(df, objectives)
    missing = [column for column in objectives if column not in reference]
    if missing:
        raise UserError(f"hypervolume reference: no value for {', '.join(map(repr, missing))}")
    ref = np.array(
        [-float(reference[c]) if d == "max" else float(reference[c]) for c, d in objectives.items()],
        dtype=np.float64,
    )
    _check_reference(ref, 2)
    inside = _finite_rows(points) & (points < ref).all(axis=1)
    points = points[inside]
    front = points[_non_dominated(points)]
    if front.shape[0] == 0:
        return 0.0
    front = front[np.lexsort((front[:, 1], front[:, 0]))]
    # Along a 2-D front sorted by the first objective the second strictly decreases (duplicates aside), so
    # the dominated region is a staircase: from x_i to x_{i+1} (or the reference) its height is ref_y - y_i.
    # Duplicates give zero-width steps and so are counted once.
    widths = np.diff(np.append(front[:, 0], ref[0]))
    heights = ref[1] - front[:, 1]
    return float(np.sum(widths * heights))


def _hypervolume_sweep_2d(points: FloatArray, reference: FloatArray) -> float:
    """Exact 2-D hypervolume of points all strictly better than ``reference`` (dominated points allowed).

    Sweep in increasing x: each point adds the strip between its y and the lowest y seen so far, as wide as
    from its x to the reference. Dominated points and duplicates add a zero-height strip.
    """
    order = np.lexsort((points[:, 1], points[:, 0]))
    x = points[order, 0]
    y = points[order, 1]
    best_before = np.minimum.accumulate(np.concatenate(([reference[1]], y)))[:-1]
    heights = np.clip(best_before - y, 0.0, None)
    return float(np.sum((reference[0] - x) * heights))


def _hypervolume_slices(points: FloatArray, reference: FloatArray) -> float:
    """Exact hypervolume by slicing the last objective (HSO, While et al. 2006).

    ``points`` are finite and strictly better than ``reference`` everywhere. Sorted by the last objective,
    the slab between the i-th and (i+1)-th value is dominated exactly by the first ``i + 1`` points, so its
    volume is its depth times the (k-1)-dimensional hypervolume of their projection. Exponential in k in the
    worst case but exact, and quick for the fronts we have (n up to a few hundred, k ≤ 4).
    """
    k = points.shape[1]
    if k == 1:
        return float(reference[0] - points[:, 0].min())
    if k == 2:
        return _hypervolume_sweep_2d(points, reference)
    # Dominated points and duplicates add no volume; dropping them first shrinks every slice below.
    points = np.unique(points, axis=0)
    points = points[_non_dominated(points)]
    points = points[np.argsort(points[:, -1], kind="stable")]
    depths = np.diff(np.append(points[:, -1], reference[-1]))
    volume = 0.0
    for i in np.flatnonzero(depths > 0):
        volume += float(depths[i]) * _hypervolume_slices(points[: i + 1, :-1], reference[:-1])
    return volume


def hypervolume(points_min: npt.ArrayLike, reference_min: npt.ArrayLike) -> float:
    """Exact hypervolume of minimisation points for any number of objectives.

    The measure of the region dominated by at least one point and bounded above by ``reference_min``
    (Zitzler & Thiele 1998), computed by slicing (While et al. 2006). For two objectives it equals
    :func:`hypervolume_2d` on the same data with the reference converted by :func:`to_minimisation`'s rule
    (a ``"max"`` coordinate negated).

    Args:
        points_min: An ``n × k`` array, smaller is better in every column (see :func:`to_minimisation`).
        reference_min: The ``k`` upper bounds, in the same minimisation form.

    Returns:
        The hypervolume; ``0.0`` when there are no points. Rows with a non-finite value, and rows not
        strictly below the reference in every coordinate, contribute nothing.

    Raises:
        ValueError: If the shapes do not match.
        UserError: If the reference point is not finite.
    """
    reference = np.asarray(reference_min, dtype=np.float64)
    points = _as_points(points_min, "points_min")
    if reference.ndim != 1 or reference.size == 0:
        raise ValueError(f"reference_min must be a 1-D array of k >= 1 values, got shape {reference.shape}")
    if points.shape[0] == 0:
        points = points.reshape(0, reference.size)
    _check_reference(reference, points.shape[1])
    points = points[_finite_rows(points) & (points < reference).all(axis=1)]
    if points.shape[0] == 0:
        return 0.0
    return _hypervolume_slices(points, reference)
