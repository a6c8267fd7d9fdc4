"""The search benchmarks' maths on hand-made data, and a CPU smoke run of the GPU benchmark.

No search runs here (each would start Ray for minutes): the curves, the compute-to-target figures, the overhead split
and the hypervolume trace are pure functions of tables, checked against figures worked out by hand.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tuning import bench_search as bs
from tuning.files import EXPERIMENT_META
from tuning.results import history_frame, trials_frame
from tuning.spaces import load_space

# --- best-so-far curves and compute to a target -------------------------------------------------------------------


def _history(rows: list[tuple[str, int, int, float, float]]) -> pd.DataFrame:
    """(trial_id, iteration, chars_trained, val_loss, timestamp) rows as load_experiment's history."""
    return history_frame([{"trial_id": t, "iteration": i, "chars_trained": c, "val_loss": v, "timestamp": ts}
                          for t, i, c, v, ts in rows])


# Two trials interleaved, listed out of order: a reports at 100, 110, 130; b at 105, 120 (and diverges).
HISTORY = [
    ("a", 2, 200, 2.0, 110.0),
    ("b", 1, 50, 2.5, 105.0),
    ("a", 1, 100, 2.2, 100.0),
    ("b", 2, 100, math.nan, 120.0),
    ("a", 3, 300, 1.9, 130.0),
]


def test_progress_curve_orders_reports_and_accumulates_compute() -> None:
    curve = bs.progress_curve(_history(HISTORY))
    assert list(curve["trial_id"]) == ["a", "b", "a", "b", "a"]
    assert list(curve["wall_s"]) == [0.0, 5.0, 10.0, 20.0, 30.0]
    # each report adds what its own trial trained since its previous report
    assert list(curve["chars_trained"]) == [100.0, 150.0, 250.0, 300.0, 400.0]
    assert list(curve["best"]) == [2.2, 2.2, 2.0, 2.0, 1.9]  # the NaN report keeps the best so far


def test_progress_curve_before_any_finite_loss_and_empty() -> None:
    curve = bs.progress_curve(_history([("a", 1, 10, math.nan, 1.0), ("a", 2, 20, 3.0, 2.0)]))
    assert math.isnan(curve["best"].iloc[0]) and curve["best"].iloc[1] == 3.0
    assert bs.progress_curve(_history([])).empty


def test_progress_curve_maximises() -> None:
    h = _history([("a", 1, 10, 0.3, 1.0), ("a", 2, 20, 0.5, 2.0), ("a", 3, 30, 0.4, 3.0)])
    assert list(bs.progress_curve(h, mode="max")["best"]) == [0.3, 0.5, 0.5]


def test_first_reach() -> None:
    curve = bs.progress_curve(_history(HISTORY))
    assert bs.first_reach(curve, 2.0, "chars_trained") == 250.0
    assert bs.first_reach(curve, 2.0, "wall_s") == 10.0
    assert bs.first_reach(curve, 2.1, "chars_trained") == 250.0  # the first row at or below the target
    assert bs.first_reach(curve, 2.2, "wall_s") == 0.0
    assert math.isnan(bs.first_reach(curve, 1.5, "chars_trained"))  # never
    assert math.isnan(bs.first_reach(curve, math.nan, "chars_trained"))
    assert math.isnan(bs.first_reach(bs.progress_curve(_history([])), 2.0, "wall_s"))
    up = pd.DataFrame({"chars_trained": [0.0, 10.0, 20.0], "hypervolume": [0.0, 0.4, 0.6]})
    assert bs.first_reach(up, 0.5, "chars_trained", "hypervolume", "max") == 20.0


def test_medians_count_never_as_latest() -> None:
    assert bs.median_never_late([1.0, 3.0, math.nan]) == 3.0
    assert math.isnan(bs.median_never_late([1.0, math.nan, math.nan]))
    assert bs.median([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(bs.median([]))


def test_efficiency_rows_measure_each_seed_against_its_random_search() -> None:
    default = bs.progress_curve(_history(HISTORY))  # final best 1.9 at 400 chars
    random = bs.progress_curve(_history([("r", 1, 500, 2.1, 0.0), ("r", 2, 1000, 2.05, 50.0),
                                         ("r", 3, 1500, 2.06, 60.0)]))
    curves = {("default", 0): default, ("random", 0): random}
    rows = {r.method: r for r in bs.efficiency_rows(curves, {("default", 0): 2, ("random", 0): 1}, (2.0, 1.5))}
    r = rows["default"]
    assert r.final_best == 1.9 and r.chars_total == 400.0 and r.trials == 2
    assert (r.reach_chars, r.reach_wall_s) == (250.0, 10.0)  # default first at or below 2.05
    assert r.target_wall_s[0] == 10.0 and math.isnan(r.target_wall_s[1])
    assert (rows["random"].reach_chars, rows["random"].reach_wall_s) == (1000.0, 50.0)  # where it got its best
    assert bs.compute_ratios(list(rows.values())) == [0.25]
    text = bs.render_efficiency(list(rows.values()), (2.0, 1.5), ["efficiency"], "smoke", 40, (0,), "e.png", False)
    assert "**0.25**" in text and "goal ≤ 0.2: **not met**" in text
    assert re.search(r"^\| default: .* \| 1\.9 \| 10 \| 250 \| 10 \| never \|", text, re.MULTILINE)


# --- overhead -----------------------------------------------------------------------------------------------------


def _row(iteration: int, train: float, evaluation: float, took: float, timestamp: float,
         since_restore: int | None = None) -> dict[str, Any]:
    return {"iteration": iteration, "train_time_s": train, "eval_time_s": evaluation, "time_this_iter_s": took,
            "timestamp": timestamp, "iterations_since_restore": since_restore or iteration}


def _experiment(path: Path, trials: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> Path:
    path.mkdir()
    (path / EXPERIMENT_META).write_text(json.dumps(meta))
    for trial_id, rows in trials.items():
        (path / trial_id).mkdir()
        (path / trial_id / "params.json").write_text("{}")
        (path / trial_id / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut sho')
    return path


# a: startup 14 − 11 = 3; second report 12 − (22 − 11) = 1. b: startup 35 − 33 = 2. Useful 22 + 33 = 55.
TRIALS = {"a1": [_row(1, 10, 1, 14, 1014), _row(2, 20, 2, 12, 1026)], "b2": [_row(1, 30, 3, 35, 1040)]}


def test_overhead_of_a_hand_made_experiment(tmp_path: Path) -> None:
    meta = {"resources": {"slots": 2}, "wall_time_s": 100.0}
    o = bs.experiment_overhead(_experiment(tmp_path / "exp", TRIALS, meta))
    assert (o.slots, o.wall_s, o.trials, o.rows) == (2, 100.0, 2, 3)
    assert o.useful_s == pytest.approx(55.0) and o.startup_s == pytest.approx(5.0)
    assert o.per_iter_s == pytest.approx(1.0) and o.idle_s == pytest.approx(139.0)
    assert o.useful_share == pytest.approx(0.275)

    out = tmp_path / "out"
    assert bs.main(["overhead", str(tmp_path / "exp"), "--out", str(out)]) == 0
    text = (out / "overhead.md").read_text(encoding="utf-8")
    assert "| exp | 2 | 100 | 2 | 27.5% | 2.5% | 0.5% | 69.5% | **not met** |" in text
    assert "UTC" in text and "cores)" in text and "Command: `python -m tuning.bench_search overhead" in text
    assert (out / "overhead.png").stat().st_size > 0
    assert not list(out.glob(".overhead.*"))  # atomic writes left no temporary file


def test_overhead_wall_from_reports_and_restores() -> None:
    # No wall time in the metadata: from the first start (1014 − 14 = 1000) to the last report (1040).
    o = bs.overhead_from_rows("x", TRIALS, 2, None)
    assert o.wall_s == 40.0 and o.idle_s == pytest.approx(2 * 40 - 55 - 5 - 1)
    # A restored trial repeats iteration 2 from its checkpoint of iteration 1: its first report after the
    # restore is startup, 15 − (22 − 11) = 4, measured against iteration 1's train + eval.
    restored = {"a": [_row(1, 10, 1, 14, 14), _row(2, 20, 2, 12, 26), _row(2, 20, 2, 15, 60, since_restore=1)]}
    o = bs.overhead_from_rows("r", restored, 1, 100.0)
    assert o.startup_s == pytest.approx(3 + 4) and o.per_iter_s == pytest.approx(1)
    assert o.useful_s == pytest.approx(22)


def test_overhead_meets_goal_when_training_fills_the_slots() -> None:
    rows = {"t": [_row(1, 90, 5, 96, 96)]}
    o = bs.overhead_from_rows("busy", rows, 1, 100.0)
    assert o.useful_share == pytest.approx(0.95)
    assert "**met**" in bs.render_overhead([o], ["overhead", "busy"], "o.png")


# --- multi-objective: hypervolume against compute -----------------------------------------------------------------


def _trials(rows: list[tuple[str, str, float, float, float]]) -> pd.DataFrame:
    """(trial_id, status, val_acc_last, train_flops_per_char, ended_at) as load_experiment's trials."""
    return trials_frame([{"trial_id": t, "status": s, "val_acc_last": a, "train_flops_per_char": f, "ended_at": e,
                          "feasible": True} for t, s, a, f, e in rows])


def test_hypervolume_curve_with_a_common_reference() -> None:
    trials = _trials([("a", "completed", 0.5, 100.0, 110.0), ("b", "early_stopped", 0.9, 10.0, 105.0),
                      ("c", "completed", 0.6, 200.0, 130.0)])
    other = _trials([("z", "completed", 0.4, 1000.0, 5.0)])
    reference = bs.common_reference([trials, other])
    assert reference == {"val_acc_last": 0.0, "train_flops_per_char": pytest.approx(1100.0)}
    curve = bs.progress_curve(_history(HISTORY))
    hv = bs.hypervolume_curve(trials, curve, reference)
    # a alone: 0.5 × (1100 − 100) = 500; with c: + (0.6 − 0.5) × (1100 − 200) = 90. b stopped early: left out.
    assert list(hv["hypervolume"]) == pytest.approx([0.0, 500.0, 590.0, 590.0])
    assert list(hv["chars_trained"]) == [0.0, 250.0, 400.0, 400.0]  # compute by then, all trials
    assert list(hv["wall_s"]) == [0.0, 10.0, 30.0, 30.0]  # the last row: the run's last report
    early = bs.hypervolume_curve(trials[trials["trial_id"] != "c"], curve, reference)
    assert list(early["hypervolume"]) == pytest.approx([0.0, 500.0, 500.0])  # flat to the end of the run
    assert list(early["chars_trained"]) == [0.0, 250.0, 400.0]
    assert bs.common_reference([]) == {"val_acc_last": 0.0, "train_flops_per_char": 1.0}


def test_mo_rows_and_goal() -> None:
    asha = pd.DataFrame({"wall_s": [0.0, 1.0, 2.0], "chars_trained": [0.0, 100.0, 300.0],
                         "hypervolume": [0.0, 5.0, 9.0]})
    rand = pd.DataFrame({"wall_s": [0.0, 1.0, 2.0], "chars_trained": [0.0, 500.0, 1000.0],
                         "hypervolume": [0.0, 3.0, 4.0]})
    curves = {("mo-asha", 0): asha, ("mo-random", 0): rand}
    rows = bs.mo_rows(curves, {("mo-asha", 0): (9, 2), ("mo-random", 0): (3, 2)},
                      {("mo-asha", 0): 300.0, ("mo-random", 0): 1000.0})
    by = {r.method: r for r in rows}
    assert by["mo-asha"].reach_chars == 100.0 and by["mo-random"].reach_chars == 1000.0
    text = bs.render_mo(rows, {"val_acc_last": 0.0, "train_flops_per_char": 1e6}, ["multiobjective"], "smoke", 40,
                        (0,), "nsga2", "m.png", False)
    assert "**mo-asha**" in text and "**0.1**" in text and "ratio ≤ 1/3: **met**" in text


# --- space copies -------------------------------------------------------------------------------------------------


def test_space_copies_load(tmp_path: Path) -> None:
    _, data = bs.read_space_yaml("shakespeare")
    grid = load_space(str(bs.write_space(tmp_path, "g", bs.grid_space(data))))
    assert grid.is_grid and grid.grid_size() == 12 and grid.scheduler == "none"
    assert grid.fixed["hidden_size"] == 128 and grid.fixed["val_max_chars"] == 50000  # same validation characters
    rnd = load_space(str(bs.write_space(tmp_path, "r", bs.random_space(data))))
    assert (rnd.sampler, rnd.scheduler) == ("random", "none") and rnd.params == load_space("shakespeare").params
    mo = load_space(str(bs.write_space(tmp_path, "m", bs.mo_space(data, "nsga2", "asha"))))
    assert [(o.metric, o.mode) for o in mo.objectives] == [("val_acc_last", "max"), ("train_flops_per_char", "min")]
    _, smoke = bs.read_space_yaml("smoke")
    assert load_space(str(bs.write_space(tmp_path, "q", bs.grid_space(smoke, quick=True)))).grid_size() == 8


def test_best_val_loss_of_a_hand_made_experiment(tmp_path: Path) -> None:
    rows = {"t1": [{**_row(1, 1, 1, 3, 10), "val_loss": 2.5, "chars_trained": 10},
                   {**_row(2, 2, 2, 3, 20), "val_loss": 2.25, "chars_trained": 20}],
            "t2": [{**_row(1, 1, 1, 3, 15), "val_loss": math.nan, "chars_trained": 10, "trial_status": "diverged"}]}
    experiment = _experiment(tmp_path / "exp", rows, {"resources": {"slots": 1}, "budget": {"max_iters": 2}})
    assert bs.best_val_loss(experiment) == (2.25, 2, 0)


# --- the GPU benchmark, on the CPU --------------------------------------------------------------------------------


def test_bench_gpu_quick_on_cpu_writes_its_table(tmp_path: Path, data_dir: Path) -> None:
    env = {**os.environ, "TUNING_DATA_DIR": str(data_dir), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "tuning.bench_gpu", "--device", "cpu", "--quick", "--no-search",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "gpu.md").read_text(encoding="utf-8")
    assert text in proc.stdout  # what it prints is what it writes
    assert not list(out.glob(".gpu.md.*"))
    assert "UTC" in text and "Command: `python -m tuning.bench_gpu --device cpu --quick" in text
    for label in ("bf16", "fp32 `torch.mm` 256² (TF32 off)"):
        assert re.search(rf"^\| 1 \| matmul peak, {re.escape(label)}.* \| [0-9.]+ [kMGT]?FLOP/s \|", text, re.M)
    assert re.search(r"^\| 2 \| trainer, LSTM H=64 .* \| [0-9.]+ [kMGT]?FLOP/s = [0-9.]+% of fp32 peak \|", text, re.M)
    for n in (1, 2):
        assert re.search(rf"^\| 3 \| {n} packed trials?, .* \| [0-9.]+ [kMGT]?chars/s \| ×[0-9.]+ of 1 trial", text,
                         re.M), f"no packing row for {n}"
    assert "| 4 | search | skipped |" in text


def test_bench_gpu_without_cuda_says_so_in_one_line() -> None:
    import torch

    if torch.cuda.is_available():  # this machine has a GPU: the message path cannot be reached
        from tuning.bench_gpu import Plan

        assert Plan.make("cuda", False, 5.0, None, True).pack_levels == (1, 2, 4, 8)
        return
    proc = subprocess.run([sys.executable, "-m", "tuning.bench_gpu"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no CUDA device" in proc.stderr and "--device cpu --quick" in proc.stderr


def test_efficiency_methods_flag() -> None:
    parser = bs.build_parser()
    assert parser.parse_args(["efficiency"]).methods == ("default", "random", "grid")
    assert parser.parse_args(["efficiency", "--methods", "random,default"]).methods == ("default", "random")
    for bad in ("default,grid", "default,bogus", ""):
        with pytest.raises(SystemExit):
            parser.parse_args(["efficiency", "--methods", bad])
