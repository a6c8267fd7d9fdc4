"""Where trial-slot time goes, on hand-made experiments (no Ray): startup, per-iteration, idle, restores."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_data import TRIALS, row, write_experiment

from benchmarks import overhead as bo
from benchmarks import search as bs


def test_overhead_of_a_hand_made_experiment(tmp_path: Path) -> None:
    meta = {"resources": {"slots": 2}, "wall_time_s": 100.0}
    o = bo.experiment_overhead(write_experiment(tmp_path / "exp", TRIALS, meta))
    assert (o.slots, o.wall_s, o.trials, o.rows) == (2, 100.0, 2, 3)
    assert o.useful_s == pytest.approx(55.0) and o.startup_s == pytest.approx(5.0)
    assert o.per_iter_s == pytest.approx(1.0) and o.idle_s == pytest.approx(139.0)
    assert o.useful_share == pytest.approx(0.275)

    out = tmp_path / "out"
    assert bs.main(["overhead", str(tmp_path / "exp"), "--out", str(out)]) == 0
    text = (out / "overhead.md").read_text(encoding="utf-8")
    assert "| exp | 2 | 100 | 2 | 27.5% | 2.5% | 0.5% | 69.5% | **not met** |" in text
    assert "UTC" in text and "cores)" in text and "Command: `python -m benchmarks.search overhead" in text
    assert (out / "overhead.png").stat().st_size > 0
    assert not list(out.glob(".overhead.*"))  # atomic writes left no temporary file


def test_overhead_wall_from_reports_and_restores() -> None:
    # No wall time in the metadata: from the first start (1014 − 14 = 1000) to the last report (1040).
    o = bo.overhead_from_rows("x", TRIALS, 2, None)
    assert o.wall_s == 40.0 and o.idle_s == pytest.approx(2 * 40 - 55 - 5 - 1)
    # A restored trial repeats iteration 2 from its checkpoint of iteration 1: its first report after the
    # restore is startup, 15 − (22 − 11) = 4, measured against iteration 1's train + eval.
    restored = {"a": [row(1, 10, 1, 14, 14), row(2, 20, 2, 12, 26), row(2, 20, 2, 15, 60, since_restore=1)]}
    o = bo.overhead_from_rows("r", restored, 1, 100.0)
    assert o.startup_s == pytest.approx(3 + 4) and o.per_iter_s == pytest.approx(1)
    assert o.useful_s == pytest.approx(22)


def test_overhead_meets_goal_when_training_fills_the_slots() -> None:
    rows = {"t": [row(1, 90, 5, 96, 96)]}
    o = bo.overhead_from_rows("busy", rows, 1, 100.0)
    assert o.useful_share == pytest.approx(0.95)
    assert "**met**" in bo.render_overhead([o], ["overhead", "busy"], "o.png")

