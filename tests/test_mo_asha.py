"""The Pareto-aware scheduler, driven by scripted results (no cluster): each decision checked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler

from tuning.spec.rungs import asha_rungs
from tuning.tune.schedulers.mo_asha import ParetoASHA, promotion_order

GO, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
OBJ = {"val_loss": "min", "flops_per_char": "min"}


def r(loss: float, flops: float) -> dict[str, float]:
    return {"val_loss": loss, "flops_per_char": flops}


def test_rungs_follow_asha() -> None:
    assert asha_rungs(16, 1, 3) == [1, 3, 9]
    assert asha_rungs(8, 2, 2) == [2, 4]


def test_promotion_order_ranks_then_crowding() -> None:
    # front 0: (1,4), (2,2), (4,1); (3,3) is dominated by (2,2); (5,5) last
    points = np.array([[3, 3], [1, 4], [2, 2], [4, 1], [5, 5]], dtype=float)
    order = list(promotion_order(points))
    assert set(order[:3]) == {1, 2, 3} and order[3:] == [0, 4]
    # inside front 0 the boundary points (infinite crowding) come before the middle one
    assert order[2] == 2


def test_decisions_rung_by_rung() -> None:
    s = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3)
    # rung 1: first trial always continues (top ceil(1/3) = 1 of 1)
    assert s.decide("a", 1, r(2.0, 100)) == GO
    # b is dominated by a: of 2 recorded, keep ceil(2/3) = 1 -> a; b stops
    assert s.decide("b", 1, r(2.5, 120)) == STOP
    # c is cheaper than a (a trade-off): both on front 0; keep 1 of 3 -> boundary tie broken by arrival -> a
    assert s.decide("c", 1, r(3.0, 10)) == STOP
    # d dominates everything so far: alone on front 0 -> promoted
    assert s.decide("d", 1, r(1.0, 5)) == GO
    # a repeated row at the same rung does not re-decide
    assert s.decide("d", 1, r(9.0, 9)) == GO
    # between rungs nothing is decided
    assert s.decide("a", 2, r(1.9, 100)) == GO
    # rung 3: a arrives first and continues; d arrives later and dominates a -> keep ceil(2/3)=1 -> d
    assert s.decide("a", 3, r(1.8, 100)) == GO
    assert s.decide("d", 3, r(0.9, 5)) == GO
    assert s.rungs[1].keys() == {"a", "b", "c", "d"} and s.rungs[3].keys() == {"a", "d"}
    assert s.num_stopped == 2


def test_a_cost_known_up_front_keeps_cheap_models_alive() -> None:
    # Single-objective ASHA on loss would stop "cheap"; the cost objective keeps it on the front.
    # ASHA with rf=2 on val_loss alone would cut at the median of [1.5, 1.6, 2.0] and stop "cheap".
    s = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=2)
    assert s.decide("big", 1, r(1.5, 1000)) == GO
    assert s.decide("mid", 1, r(1.6, 1100)) == STOP  # dominated by big; keep ceil(2/2) = 1
    assert s.decide("cheap", 1, r(2.0, 10)) == GO  # front 0 = {big, cheap}; keep ceil(3/2) = 2


def test_a_cost_anchor_is_recorded_at_every_rung_but_never_stopped() -> None:
    # two anchors (say the cheapest RNN and GRU) and a sampled trial; without the anchor rule "gru" would stop at
    # rung 1: it ties with "rnn" on front 0 (both boundary points) and arrived second, and only ceil(2/3) = 1 goes on
    s = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3,
                   anchors=[{"cell": "rnn", "hidden_size": 32}, {"cell": "gru", "hidden_size": 32}])
    assert s.is_anchor({"cell": "gru", "hidden_size": 32, "lr": 0.003})
    assert not s.is_anchor({"cell": "gru", "hidden_size": 33}) and not ParetoASHA(OBJ).is_anchor({"cell": "rnn"})
    assert s.decide("rnn", 1, r(2.0, 10), anchor=True) == GO
    assert s.decide("gru", 1, r(1.9, 20), anchor=True) == GO
    assert s.decide("x", 1, r(1.95, 30)) == STOP  # dominated by gru: ranked as if anchors were any trial
    assert s.rungs[1].keys() == {"rnn", "gru", "x"} and s.num_stopped == 1
    assert s.decide("gru", 3, r(1.8, 20), anchor=True) == GO and s.decide("gru", 9, r(1.7, 20), anchor=True) == GO
    assert s.decide("bad", 3, r(float("nan"), 5), anchor=True) == STOP  # a diverged anchor stops all the same
    plain = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3)
    assert plain.decide("rnn", 1, r(2.0, 10)) == GO and plain.decide("gru", 1, r(1.9, 20)) == STOP


def test_the_scheduler_knows_an_anchor_by_its_config() -> None:
    from types import SimpleNamespace
    s = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3, anchors=[{"cell": "gru"}])
    first = SimpleNamespace(trial_id="a", config={"cell": "rnn"})
    anchor = SimpleNamespace(trial_id="b", config={"cell": "gru"})
    assert s.on_trial_result(None, first, {"iteration": 1, **r(1.0, 10)}) == GO
    assert s.on_trial_result(None, anchor, {"iteration": 1, **r(2.0, 20)}) == GO  # dominated, but an anchor


def test_nan_objective_stops() -> None:
    s = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3)
    assert s.decide("a", 1, r(2.0, 100)) == GO
    assert s.decide("nan", 1, r(float("nan"), 1)) == STOP


def test_maximised_objective() -> None:
    s = ParetoASHA({"val_acc_last": "max"}, max_t=9, grace_period=1, reduction_factor=2)
    assert s.decide("a", 1, {"val_acc_last": 0.3}) == GO
    assert s.decide("b", 1, {"val_acc_last": 0.5}) == GO  # better accuracy ranks first of 2
    assert s.decide("c", 1, {"val_acc_last": 0.1}) == STOP


def test_rungs_survive_a_restore(tmp_path: Path) -> None:
    state = tmp_path / "pareto_asha.json"
    first = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3, state_file=state)
    assert first.decide("a", 1, r(1.0, 5)) == GO
    assert first.decide("b", 1, r(2.0, 50)) == STOP
    # a new scheduler object, as Tuner.restore builds from the pickle taken at the start, reads the records
    second = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3, state_file=state)
    assert second.decide("c", 1, r(3.0, 60)) == STOP  # would continue with empty rungs
    assert second.rungs[1].keys() == {"a", "b", "c"}
    # save/restore through Ray's hooks too
    second.save(str(tmp_path / "copy.json"))
    third = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3)
    third.restore(str(tmp_path / "copy.json"))
    assert third.rungs == second.rungs and third.num_stopped == 2


def test_an_experiment_from_before_the_scheduler_folder_resumes_with_its_records(tmp_path: Path) -> None:
    old = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3, state_file=tmp_path / "pareto_asha.json")
    assert old.decide("a", 1, r(1.0, 5)) == GO
    new = ParetoASHA(OBJ, max_t=9, grace_period=1, reduction_factor=3,
                     state_file=tmp_path / "scheduler" / "pareto_asha.json")
    assert new.decide("b", 1, r(2.0, 50)) == STOP  # a is known: read from the old place
    assert (tmp_path / "scheduler" / "pareto_asha.json").is_file()  # written to the new one


def test_rejects_bad_objectives() -> None:
    with pytest.raises(ValueError):
        ParetoASHA({"val_loss": "down"})
