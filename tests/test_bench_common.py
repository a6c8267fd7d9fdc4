"""The benchmarks' shared maths on hand-made data: best-so-far curves, compute to a target, medians where a target
was never reached, and the best loss of an experiment folder."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from bench_data import HISTORY, history, row, write_experiment

from benchmarks import common as bc


def test_progress_curve_orders_reports_and_accumulates_compute() -> None:
    curve = bc.progress_curve(history(HISTORY))
    assert list(curve["trial_id"]) == ["a", "b", "a", "b", "a"]
    assert list(curve["wall_s"]) == [0.0, 5.0, 10.0, 20.0, 30.0]
    # each report adds what its own trial trained since its previous report
    assert list(curve["chars_trained"]) == [100.0, 150.0, 250.0, 300.0, 400.0]
    assert list(curve["best"]) == [2.2, 2.2, 2.0, 2.0, 1.9]  # the NaN report keeps the best so far


def test_progress_curve_before_any_finite_loss_and_empty() -> None:
    curve = bc.progress_curve(history([("a", 1, 10, math.nan, 1.0), ("a", 2, 20, 3.0, 2.0)]))
    assert math.isnan(curve["best"].iloc[0]) and curve["best"].iloc[1] == 3.0
    assert bc.progress_curve(history([])).empty


def test_progress_curve_maximises() -> None:
    h = history([("a", 1, 10, 0.3, 1.0), ("a", 2, 20, 0.5, 2.0), ("a", 3, 30, 0.4, 3.0)])
    assert list(bc.progress_curve(h, mode="max")["best"]) == [0.3, 0.5, 0.5]


def test_first_reach() -> None:
    curve = bc.progress_curve(history(HISTORY))
    assert bc.first_reach(curve, 2.0, "chars_trained") == 250.0
    assert bc.first_reach(curve, 2.0, "wall_s") == 10.0
    assert bc.first_reach(curve, 2.1, "chars_trained") == 250.0  # the first row at or below the target
    assert bc.first_reach(curve, 2.2, "wall_s") == 0.0
    assert math.isnan(bc.first_reach(curve, 1.5, "chars_trained"))  # never
    assert math.isnan(bc.first_reach(curve, math.nan, "chars_trained"))
    assert math.isnan(bc.first_reach(bc.progress_curve(history([])), 2.0, "wall_s"))
    up = pd.DataFrame({"chars_trained": [0.0, 10.0, 20.0], "hypervolume": [0.0, 0.4, 0.6]})
    assert bc.first_reach(up, 0.5, "chars_trained", "hypervolume", "max") == 20.0


def test_medians_count_never_as_latest() -> None:
    assert bc.median_never_late([1.0, 3.0, math.nan]) == 3.0
    assert math.isnan(bc.median_never_late([1.0, math.nan, math.nan]))
    assert bc.median([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(bc.median([]))


def test_best_val_loss_of_a_hand_made_experiment(tmp_path: Path) -> None:
    rows = {"t1": [{**row(1, 1, 1, 3, 10), "val_loss": 2.5, "chars_trained": 10},
                   {**row(2, 2, 2, 3, 20), "val_loss": 2.25, "chars_trained": 20}],
            "t2": [{**row(1, 1, 1, 3, 15), "val_loss": math.nan, "chars_trained": 10, "trial_status": "diverged"}]}
    exp = write_experiment(tmp_path / "exp", rows, {"resources": {"slots": 1}, "budget": {"max_iters": 2}})
    assert bc.best_val_loss(exp) == (2.25, 2, 0)



def test_compact_count() -> None:
    assert bc.compact_count(2e7) == "20 M"
    assert bc.compact_count(5e5) == "500 k"
    assert bc.compact_count(1.5e9) == "1.5 G"
    assert bc.compact_count(300) == "300"


def test_finish_pair_labels_a_short_log_axis_without_crowding(tmp_path: Path) -> None:
    """Under two decades matplotlib would label 2, 3, 4 and 6 × 10^k as well, and 3e7 and 4e7 overlapped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_c, ax_w) = plt.subplots(1, 2)
    ax_c.plot([1.2e7, 6.5e7], [0.3, 0.5], label="a")
    ax_w.plot([0, 100], [0.3, 0.5], label="a")
    bc.finish_pair(fig, ax_c, ax_w, "accuracy", tmp_path / "pair.png")
    assert (tmp_path / "pair.png").stat().st_size > 0
    low, high = ax_c.get_xlim()
    shown = [t.get_text() for t in ax_c.get_xticklabels() if low <= t.get_position()[0] <= high]
    assert shown == ["20 M", "50 M"]
    assert all(t.get_text() == "" for t in ax_c.get_xticklabels(minor=True))
