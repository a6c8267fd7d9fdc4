"""The replay benchmark: the slot simulation step by step, the rules' real decisions, and the command line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from bench_data import write_experiment

from benchmarks import replay as br
from benchmarks.replay import Curve, simulate


def curve(name: str, accuracy: tuple[float, ...], flops: float = 1e5, seconds: float = 1.0,
          loss: tuple[float, ...] = ()) -> Curve:
    return Curve(name, accuracy, flops, tuple(seconds for _ in accuracy), loss)


def test_random_runs_every_trial_to_the_end_on_two_slots() -> None:
    curves = [curve("a", (0.1, 0.2, 0.3)), curve("b", (0.2, 0.3, 0.4), flops=1e6)]
    replay = simulate(curves, [0, 1, 0, 1, 0, 1, 0], None, wall_s=6.5, slots=2, chars_per_iter=10)
    # both slots finish a trial at t = 3 and t = 6; the iterations ending at 7 lie past the wall
    assert replay.completed == [(0.3, 1e5), (0.4, 1e6), (0.3, 1e5), (0.4, 1e6)]
    assert replay.chars_at_completion == [50, 60, 110, 120] and replay.chars_total == 120
    assert replay.started == 6


def test_a_rule_sees_each_iteration_and_a_stop_frees_the_slot() -> None:
    calls: list[tuple[str, int, float, float]] = []

    def stop_all(key: str, iteration: int, accuracy: float, flops: float) -> bool:
        calls.append((key, iteration, accuracy, flops))
        return True

    curves = [curve("a", (0.1, 0.2, 0.3)), curve("b", (0.5, 0.6, 0.7), flops=2e5, seconds=2.0)]
    replay = simulate(curves, [0, 1, 0, 1, 0, 1], stop_all, wall_s=4.5, slots=2)
    # slot 1: #0 a ends at 1, #2 a at 2, #3 b at 4; slot 2: #1 b at 2 (a tie goes to slot 1), #4 a at 3, #5 b at 5:
    # past the wall. Every trial is stopped after its first iteration, and its slot starts the next at once.
    assert replay.completed == [] and replay.chars_total == 5 and replay.started == 6
    assert calls == [("0", 1, 0.1, 1e5), ("2", 1, 0.1, 1e5), ("1", 1, 0.5, 2e5), ("4", 1, 0.1, 1e5),
                     ("3", 1, 0.5, 2e5)]


def test_mo_asha_rule_is_the_real_scheduler() -> None:
    decide = br.make_rule("mo-asha", max_t=3, reduction_factor=3)
    assert decide is not None
    assert decide("0", 1, 0.5, 1e6) is False  # alone at the rung: top ceil(1/3) = 1
    assert decide("1", 1, 0.4, 2e6) is True  # dominated by 0
    assert decide("2", 1, 0.6, 1e5) is False  # dominates both
    assert decide("2", 2, 0.6, 1e5) is False  # no rung at 2 (max_t 3: rungs at 1 only)
    first = br.make_rule("asha-first", max_t=3, reduction_factor=3)
    assert first is not None and first("0", 1, 0.5, 1e6) is False and first("1", 1, 0.4, 1.0) is True  # FLOPs unseen
    assert br.make_rule("random", 3, 3) is None


def test_log_hypervolume_and_first_reach() -> None:
    assert br.log_hypervolume([(0.5, 100.0)], 1000.0) == pytest.approx(0.5)  # 0.5 × one decade
    assert br.log_hypervolume([(0.5, 100.0), (0.6, 1000.0)], 1000.0) == pytest.approx(0.5)  # at the reference: 0
    assert br.log_hypervolume([], 10.0) == 0.0
    assert br.first_reach([(10.0, 0.1), (20.0, 0.5)], 0.4) == 20.0
    assert br.first_reach([(10.0, 0.1)], 0.4) == math.inf


def _experiment(path: Path, trials: dict[str, tuple[list[float], float]], chars_per_iter: int = 1000) -> Path:
    rows: dict[str, list[dict[str, Any]]] = {}
    for trial_id, (accuracy, flops) in trials.items():
        rows[trial_id] = [{"iteration": i + 1, "val_acc_last": a, "val_loss": 4.0 * (1.0 - a),
                           "train_flops_per_char": flops,
                           "train_time_s": 2.0 * (i + 1), "eval_time_s": 0.5, "chars_trained": chars_per_iter * (i + 1),
                           "timestamp": 100.0 + i, "trial_status": "completed" if i + 1 == len(accuracy) else "running"}
                          for i, a in enumerate(accuracy)]
    meta = {"scheduler": "none", "budget": {"max_iters": 3, "chars_per_iter": chars_per_iter}}
    return write_experiment(path, rows, meta)


def test_main_replays_recorded_experiments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _experiment(tmp_path / "one", {"a": ([0.2, 0.3, 0.4], 1e5), "b": ([0.3, 0.4, 0.5], 1e6)})
    two = _experiment(tmp_path / "two", {"c": ([0.1, 0.15, 0.2], 1e4), "d": ([0.1, 0.2], 1e4)})  # d: cut short
    curves, chars_per_iter = br.load_curves([one, two])
    assert sorted(c.trial_id for c in curves) == ["a", "b", "c"] and chars_per_iter == 1000
    assert curves[0].seconds == pytest.approx((2.5, 2.5, 2.5))  # train time per iteration + evaluation
    out = tmp_path / "out"
    assert br.main([str(one), str(two), "--wall-s", "60", "--replays", "3", "--out", str(out)]) == 0
    text = (out / "replay.md").read_text(encoding="utf-8")
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    assert "Pool: 3 full-budget trials of 2 experiment(s)" in text and "rungs at iteration(s) 1 " in text
    for rule in br.RULES:
        assert f"\n| {rule} | " in text
    assert "\n| random | " in text and " | 1 | 0.00 | 0.00 | " in text  # random against itself: ratio 1


# --- --objective val_loss: the efficiency benchmark's measure, Ray's own ASHA as the rule -----------------------


def test_asha_rule_is_rays_scheduler_on_val_loss() -> None:
    decide = br.make_rule("asha", max_t=9, reduction_factor=3)
    assert decide is not None
    assert decide("0", 1, 3.0, 0.0) is False  # first at rung 1: nothing to compare with
    assert decide("1", 1, 3.2, 0.0) is True  # worse than the cutoff (the one recorded loss)
    assert decide("2", 1, 2.0, 0.0) is False  # lower is better
    assert decide("2", 2, 9.0, 0.0) is False  # no rung at 2
    assert decide("2", 3, 1.5, 0.0) is False and decide("0", 3, 2.5, 0.0) is True  # rung 3
    late = br.make_rule("asha", max_t=9, reduction_factor=3, grace=3)
    assert late is not None and late("0", 1, 3.0, 0.0) is False and late("1", 1, 9.0, 0.0) is False  # no rung at 1


def test_asha_on_val_loss_stops_a_bad_trial_and_reaches_the_best_sooner() -> None:
    good = curve("a", (0.0, 0.0, 0.0), loss=(2.0, 1.5, 1.0))
    bad = curve("b", (0.0, 0.0, 0.0), loss=(3.0, 2.8, 2.6))
    worse = curve("c", (0.0, 0.0, 0.0), loss=(3.2, 3.0, 2.9))
    order = [1, 2, 2, 0, 1, 1, 1, 1]
    random = simulate([good, bad, worse], order, None, wall_s=12.5, slots=1, metric="loss")
    asha = simulate([good, bad, worse], order, br.make_rule("asha", 3, 3), wall_s=12.5, slots=1, metric="loss")
    # random: b 1-3, c 4-6, c 7-9, a 10-12. ASHA: b runs on (first at its rung), both c stop after one iteration
    # (3.2 is worse than b's 3.0), a continues (2.0) and ends at 8; then b again (3.0 ties b's: goes on) 9-11, b 12.
    assert br.best_loss_trace(random)[-1] == (12.0, -1.0) and br.first_reach(br.best_loss_trace(random), -1.0) == 12
    trace = br.best_loss_trace(asha)
    assert [c for c, _ in trace] == list(range(1, 13)) and br.first_reach(trace, -1.0) == 8
    assert [-b for _, b in trace[:4]] == [3.0, 2.8, 2.6, 2.6] and asha.started == 6


def test_promotion_asha_pauses_at_a_rung_until_three_trials_are_there() -> None:
    good = curve("a", (0.0, 0.0, 0.0), loss=(2.0, 1.5, 1.0))
    bad = curve("b", (0.0, 0.0, 0.0), loss=(3.0, 2.8, 2.6))
    worse = curve("c", (0.0, 0.0, 0.0), loss=(3.2, 3.0, 2.9))
    order = [1, 2, 0, 1, 2, 1]
    pool = [good, bad, worse]
    stopping = simulate(pool, order, br.make_rule("asha", 3, 3), wall_s=9.5, slots=1, metric="loss")
    promotion = br.simulate_promotion(pool, order, wall_s=9.5, slots=1, max_t=3, grace=1, reduction_factor=3)
    # Ray's ASHA lets b, the first at its rung, run to the end (1-3), stops c (4), runs a (5-7): 1.0 at 7.
    assert br.first_reach(br.best_loss_trace(stopping), -1.0) == 7
    # Promotion: b, c and a each pause after one iteration (1, 2, 3); with three at the rung the best, a, is
    # promoted and ends at 5; then new trials b (6), c (7), b (8): the rung holds 6, so its second best, b, goes on (9).
    assert br.first_reach(br.best_loss_trace(promotion), -1.0) == 5
    assert [-b for _, b in br.best_loss_trace(promotion)] == [3.0, 3.0, 2.0, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert promotion.completed == [(0.0, 1e5)] and promotion.chars_at_completion == [5.0]
    assert promotion.started == 6 and promotion.chars_total == 9
    assert br.make_rule("asha-promotion", 3, 3) is None  # not a stop rule: its own simulation


def test_main_replays_val_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _experiment(tmp_path / "one", {"a": ([0.2, 0.3, 0.4], 1e5), "b": ([0.3, 0.4, 0.5], 1e6),
                                         "c": ([0.1, 0.15, 0.2], 1e4)})
    out = tmp_path / "out"
    assert br.main([str(one), "--objective", "val_loss", "--wall-s", "60", "--replays", "5", "--out", str(out),
                    "--name", "loss"]) == 0
    text = (out / "loss.md").read_text(encoding="utf-8")
    assert "the pool's lowest validation loss is 2" in text and "(grace 1, reduction factor 3)" in text
    assert "\n| random | " in text and "\n| asha | " in text and "\n| asha-promotion | " in text
    assert "share ≤ 0.2" in text
    assert "\n| mo-asha | " not in text
    assert br.main([str(one), "--objective", "val_loss", "--rules", "mo-asha", "--out", str(out)]) == 2
    assert "invalid for --objective val_loss: a comma-separated list of random, asha, asha-promotion" in \
        capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--rules", "random,hyperband"], "--rules='random,hyperband' is invalid"),
    (["--grace-iters", "0"], "--grace-iters=0 is invalid: an integer >= 1"),
    (["--wall-s", "0"], "--wall-s=0.0 is invalid"),
    (["--rung-max-iters", "9"], "--rung-max-iters=9 is invalid: between 1 and the recorded budget (3)"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                               message: str) -> None:
    one = _experiment(tmp_path / "one", {"a": ([0.2, 0.3, 0.4], 1e5)})
    assert br.main([str(one), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_missing_folder_and_mixed_budgets_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert br.main([str(tmp_path / "nope")]) == 2
    assert "no such experiment folder" in capsys.readouterr().err
    one = _experiment(tmp_path / "one", {"a": ([0.2, 0.3, 0.4], 1e5)})
    two = _experiment(tmp_path / "two", {"b": ([0.2, 0.3, 0.4], 1e5)}, chars_per_iter=500)
    assert br.main([str(one), str(two), "--out", str(tmp_path / "out")]) == 2
    assert "chars_per_iter differ ([500, 1000])" in capsys.readouterr().err
