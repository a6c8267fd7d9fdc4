"""The efficiency and multi-objective benchmarks' maths on hand-made data, their space copies and flags, and a CPU
smoke run of the GPU benchmark.

No search runs here (each would start Ray for minutes): the compute-to-target figures and the hypervolume trace are
pure functions of tables, checked against figures worked out by hand. The shared curves are tested in
test_bench_common.py, the overhead split in test_bench_overhead.py.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from bench_data import HISTORY, history

from benchmarks import common as bc
from benchmarks import search as bs
from tuning.report.results import trials_frame
from tuning.spec.space import load_space

REPO = Path(__file__).resolve().parents[1]

# --- best-so-far curves and compute to a target -------------------------------------------------------------------


def test_efficiency_rows_measure_each_seed_against_its_random_search() -> None:
    default = bc.progress_curve(history(HISTORY))  # final best 1.9 at 400 chars
    random = bc.progress_curve(history([("r", 1, 500, 2.1, 0.0), ("r", 2, 1000, 2.05, 50.0),
                                         ("r", 3, 1500, 2.06, 60.0)]))
    curves = {("default", 0): default, ("random", 0): random}
    rows = {r.method: r for r in bs.efficiency_rows(curves, {("default", 0): 2, ("random", 0): 1}, (2.0, 1.5))}
    r = rows["default"]
    assert r.final_best == 1.9 and r.chars_total == 400.0 and r.trials == 2
    assert (r.reach_chars, r.reach_wall_s) == (250.0, 10.0)  # default first at or below 2.05
    assert r.target_wall_s[0] == 10.0 and math.isnan(r.target_wall_s[1])
    assert (rows["random"].reach_chars, rows["random"].reach_wall_s) == (1000.0, 50.0)  # where it got its best
    assert bs.compute_ratios(list(rows.values())) == [0.25]
    # the other reading: over all random search trained (1500 characters), not what it had when it got its best
    assert bs.compute_ratios(list(rows.values()), of_total=True) == [pytest.approx(250 / 1500)]
    text = bs.render_efficiency(list(rows.values()), (2.0, 1.5), ["efficiency"], "smoke", 40, (0,), "e.png", False)
    assert "final best loss, over what random search had trained when it first got there (median over seeds): " \
           "**0.25** (per seed: 0.25); goal ≤ 0.2: **not met**" in text
    assert "final best loss, over everything random search trained in its budget (median over seeds): " \
           "**0.167** (per seed: 0.167); goal ≤ 0.2: **met**" in text
    assert re.search(r"^\| default: .* \| 1\.9 \| 10 \| 250 \| 10 \| never \|", text, re.MULTILINE)


# --- overhead -----------------------------------------------------------------------------------------------------


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
    curve = bc.progress_curve(history(HISTORY))
    hv = bs.hypervolume_curve(trials, curve, reference, log_flops=False)
    # a alone: 0.5 × (1100 − 100) = 500; with c: + (0.6 − 0.5) × (1100 − 200) = 90. b stopped early: left out.
    assert list(hv["hypervolume"]) == pytest.approx([0.0, 500.0, 590.0, 590.0])
    logged = bs.hypervolume_curve(trials, curve, reference)  # the default: over decades of FLOPs
    a, c = 0.5 * math.log10(1100 / 100), 0.1 * math.log10(1100 / 200)  # the same boxes, widths in decades
    assert list(logged["hypervolume"]) == pytest.approx([0.0, a, a + c, a + c])
    assert list(logged["chars_trained"]) == list(hv["chars_trained"])
    assert list(hv["chars_trained"]) == [0.0, 250.0, 400.0, 400.0]  # compute by then, all trials
    assert list(hv["wall_s"]) == [0.0, 10.0, 30.0, 30.0]  # the last row: the run's last report
    early = bs.hypervolume_curve(trials[trials["trial_id"] != "c"], curve, reference, log_flops=False)
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
                      {("mo-asha", 0): 300.0, ("mo-random", 0): 1000.0},
                      linear={("mo-asha", 0): 7.5e6, ("mo-random", 0): 8.5e6})
    by = {r.method: r for r in rows}
    assert by["mo-asha"].reach_chars == 100.0 and by["mo-random"].reach_chars == 1000.0
    # at a third of random's 1000 characters MO-ASHA held 9 of random's final 4; random itself nothing yet
    assert by["mo-asha"].share_at_goal == 2.25 and by["mo-random"].share_at_goal == 0.0
    # at equal compute (random's 1000 characters): MO-ASHA ended at 300 with 9; random's own final 4
    assert by["mo-asha"].hv_at_baseline_total == 9.0 and by["mo-random"].hv_at_baseline_total == 4.0
    # at the least compute of the seed (MO-ASHA's 300 characters): MO-ASHA's 9 against random's 0 by then
    assert by["mo-asha"].hv_at_least_total == 9.0 and by["mo-random"].hv_at_least_total == 0.0
    text = bs.render_mo(rows, {"val_acc_last": 0.0, "train_flops_per_char": 1e6}, ["multiobjective"], "smoke", 40,
                        (0,), "nsga2", "m.png", False)
    assert "**mo-asha**" in text and "**0.1**" in text and "ratio ≤ 1/3: **met**" in text
    assert "over log10 FLOPs" in text and re.search(r"^\| mo-asha: .* \| 7\.5e\+06 \| 225\.0% \| 9 \| 9 \|$", text,
                                                   re.MULTILINE)
    assert re.search(r"^\| mo-random \| 0 \| 4 \| 1 k \| .* \| 0\.0% \| 4 \| 0 \|$", text, re.MULTILINE)
    assert "best at random search's compute (median): **mo-asha**" in text
    assert "best at the least compute (median): **mo-asha** (per seed: 0: mo-asha)" in text
    # a method that trained past random's total is read where random stopped: 5 at 1000 characters, not its 9
    longer = pd.DataFrame({"wall_s": [0.0, 1.0, 2.0], "chars_trained": [0.0, 100.0, 2000.0],
                           "hypervolume": [0.0, 5.0, 9.0]})
    rows = bs.mo_rows({("mo-asha", 0): longer, ("mo-random", 0): rand}, {}, {("mo-asha", 0): 2000.0,
                                                                          ("mo-random", 0): 1000.0})
    assert {r.method: r.hv_at_baseline_total for r in rows} == {"mo-asha": 5.0, "mo-random": 4.0}
    # here random trained least: both are read at its 1000 characters, and a seed with no totals has no reading
    assert {r.method: r.hv_at_least_total for r in rows} == {"mo-asha": 5.0, "mo-random": 4.0}
    assert math.isnan(bs.mo_rows({("mo-asha", 0): longer}, {}, {})[0].hv_at_least_total)
    # the promotion-type variant is the (a) too: its own ratio line; the best method is named once
    promo = pd.DataFrame({"wall_s": [0.0, 1.0], "chars_trained": [0.0, 400.0], "hypervolume": [0.0, 4.5]})
    rows = bs.mo_rows({**curves, ("mo-promotion", 0): promo}, {("mo-asha", 0): (9, 2), ("mo-random", 0): (3, 2),
                                                              ("mo-promotion", 0): (5, 1)},
                      {("mo-asha", 0): 300.0, ("mo-random", 0): 1000.0, ("mo-promotion", 0): 400.0})
    text = bs.render_mo(rows, {"val_acc_last": 0.0, "train_flops_per_char": 1e6}, ["multiobjective"], "smoke", 40,
                        (0,), "nsga2", "m.png", False)
    assert "Compute ratio mo-promotion/random to reach random search's final hypervolume, over what random search " \
           "had trained when it first got there (median over seeds): **0.4** (per seed: 0.4); goal: mo-promotion " \
           "best and ratio ≤ 1/3: **not met**" in text
    assert text.count("goal: mo-asha best and ratio ≤ 1/3: **met**") == 2  # random got its best at its end


# --- space copies -------------------------------------------------------------------------------------------------


def test_space_copies_load(tmp_path: Path) -> None:
    _, data = bs.read_space_yaml("shakespeare")
    grid = load_space(str(bs.write_space(tmp_path, "g", bs.grid_space(data))))
    assert grid.is_grid and grid.grid_size() == 12 and grid.scheduler == "none"
    assert grid.fixed["hidden_size"] == 128 and grid.fixed["val_max_chars"] == 50000  # same validation characters
    rnd = load_space(str(bs.write_space(tmp_path, "r", bs.random_space(data))))
    assert (rnd.sampler, rnd.scheduler) == ("random", "none") and rnd.params == load_space("shakespeare").params
    # a variant of the default that changes only its scheduling (here the default before 2026-11-30: Ray's stopping
    # ASHA, 60 samples) has the same random baseline, byte for byte
    assert data["scheduler"] == "asha_promotion"
    variant = {**data, "scheduler": "asha", "num_samples": 60}
    assert bs.write_space(tmp_path, "r2", bs.random_space(variant)).read_text() == \
        bs.write_space(tmp_path, "r", bs.random_space(data)).read_text()
    mo = load_space(str(bs.write_space(tmp_path, "m", bs.mo_space(data, "nsga2", "asha", cost_anchor="cheapest"))))
    assert [(o.metric, o.mode) for o in mo.objectives] == [("val_acc_last", "max"), ("train_flops_per_char", "min")]
    # the cost anchor is said outright, so searches with and without it have different record keys; random search
    # never anchors, so its space (and records) do not change with the flag
    assert mo.cost_anchor == "cheapest" and "cost_anchor: true" in (tmp_path / "spaces" / "m.yaml").read_text()
    families_file = bs.write_space(tmp_path, "mf", bs.mo_space(data, "tpe", "asha", cost_anchor="families"))
    assert load_space(str(families_file)).cost_anchor == "families"
    assert "cost_anchor: families" in families_file.read_text()
    plain = bs.write_space(tmp_path, "m0", bs.mo_space(data, "nsga2", "asha")).read_text()
    assert "cost_anchor: false" in plain
    assert "cost_anchor" not in bs.write_space(tmp_path, "r0", bs.mo_space(data, "random", "none")).read_text()
    assert bs.mo_space(data, "random", "none", cost_anchor="families") == bs.mo_space(data, "random", "none")
    # the (b): the same objectives, Ray's single-objective ASHA ranking by val_loss
    loss = load_space(str(bs.write_space(tmp_path, "l", bs.mo_space(data, "tpe", "asha_first",
                                                                      {"metric": "val_loss", "mode": "min"}))))
    assert loss.objectives == mo.objectives and (loss.asha_objective.metric, loss.asha_objective.mode) == \
        ("val_loss", "min")
    _, smoke = bs.read_space_yaml("smoke")
    assert load_space(str(bs.write_space(tmp_path, "q", bs.grid_space(smoke, quick=True)))).grid_size() == 8


# --- the GPU benchmark, on the CPU --------------------------------------------------------------------------------


def test_bench_gpu_quick_on_cpu_writes_its_table(tmp_path: Path, data_dir: Path) -> None:
    env = {**os.environ, "TUNING_DATA_DIR": str(data_dir), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": str(REPO)}  # benchmarks/ is not installed: it runs from the repository
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--no-search",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "gpu.md").read_text(encoding="utf-8")
    assert text in proc.stdout  # what it prints is what it writes
    assert not list(out.glob(".gpu.md.*"))
    assert "UTC" in text and "Command: `python -m benchmarks.gpu --device cpu --quick" in text
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
        from benchmarks.gpu import Plan

        assert Plan.make("cuda", False, 5.0, None, True).pack_levels == (1, 2, 4, 8)
        return
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no CUDA device" in proc.stderr and "--device cpu --quick" in proc.stderr


def test_multiobjective_methods_flag() -> None:
    parser = bs.build_parser()
    assert parser.parse_args(["multiobjective"]).mo_methods == ("mo-asha", "asha-loss", "mo-random")
    assert parser.parse_args(["multiobjective", "--methods", "mo-random,mo-promotion"]).mo_methods == \
        ("mo-promotion", "mo-random")
    for bad in ("mo-asha", "mo-asha,bogus,mo-random", ""):
        with pytest.raises(SystemExit):
            parser.parse_args(["multiobjective", "--methods", bad])


def test_efficiency_methods_flag() -> None:
    parser = bs.build_parser()
    assert parser.parse_args(["efficiency"]).methods == ("default", "random", "grid")
    assert parser.parse_args(["efficiency", "--methods", "random,default"]).methods == ("default", "random")
    for bad in ("default,grid", "default,bogus", ""):
        with pytest.raises(SystemExit):
            parser.parse_args(["efficiency", "--methods", bad])


def test_multiobjective_table_from_the_committed_records(tmp_path: Path) -> None:
    """The whole command over real records (the 45-minute runs without the cost anchor, seed 1), run nothing: with
    its own reference point, and with another table's given by --reference-flops."""
    records = REPO / "benchmarks" / "records"
    args = ["multiobjective", "--budget-s", "2700", "--seeds", "1", "--sampler", "tpe", "--methods",
            "mo-asha,mo-random", "--records", str(records), "--recorded-only"]
    assert bs.main([*args, "--out", str(tmp_path / "own")]) == 0
    own = (tmp_path / "own" / "multiobjective.md").read_text()
    assert "Taken from benchmark records" in own and "(1.1 × the largest of any completed trial of any run)" in own
    assert bs.main([*args, "--out", str(tmp_path / "given"), "--reference-flops", "3e5"]) == 0
    given = (tmp_path / "given" / "multiobjective.md").read_text()
    assert "train_flops_per_char 300 k (given by --reference-flops" in given

    def final_hv(text: str, method: str) -> float:
        match = re.search(rf"^\| {method}: [^|]* \| ([0-9.]+) \|", text, re.MULTILINE)
        assert match, text
        return float(match.group(1))

    # a smaller reference box: fewer decades of FLOPs, and the trials above 300 k FLOPs per character add nothing
    assert 0 < final_hv(given, "mo-asha") < final_hv(own, "mo-asha")
