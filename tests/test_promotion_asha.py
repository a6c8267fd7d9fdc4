"""Promotion-type ASHA: scripted decisions checked by hand (no cluster), its choice of the next trial against a
stand-in for Ray's controller (a unit edge: trials with a status, the searcher's hooks, stop_trial), its records
across a restore, and Optuna's view of paused trials with a real Optuna study."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from tuning.spec.space import load_space
from tuning.tune.schedulers.promotion_asha import PromotionASHA
from tuning.tune.searcher import make_searcher

GO, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP


def loss(value: float) -> dict[str, float]:
    return {"val_loss": value}


def test_no_trial_passes_a_rung_before_rf_trials_are_there() -> None:
    s = PromotionASHA({"val_loss": "min"}, max_t=9, grace_period=1, reduction_factor=3)
    assert s.decide("a", 1, loss(2.0)) == PAUSE  # alone: the top floor(1/3) = 0 is empty (Ray's ASHA: continue)
    assert s.decide("b", 1, loss(1.5)) == PAUSE  # floor(2/3) = 0
    assert s.promotable(1) == []
    assert s.decide("c", 1, loss(3.0)) == PAUSE  # floor(3/3) = 1: b, who waits
    assert s.promotable(1) == ["b"]
    assert s.next_promotion({"a", "b", "c"}) == "b" and s.promoted[1] == {"b"} and "b" not in s.waiting
    assert s.next_promotion({"a", "c"}) is None  # the top 1 has been promoted
    assert s.decide("d", 1, loss(2.5)) == PAUSE and s.promotable(1) == []  # floor(4/3) = 1, still b
    # Li et al.'s rule is "the top floor(n/rf), not promoted yet", over everything recorded at the rung: e, now the
    # best of five, is promoted too (at once, without a pause), though b took the one place before it came
    assert s.decide("e", 1, loss(1.0)) == GO
    assert s.decide("f", 1, loss(0.5)) == GO  # floor(6/3) = 2: f and e
    assert s.promoted[1] == {"b", "e", "f"} and s.waiting == {"a": 1, "c": 1, "d": 1}
    assert s.decide("g", 1, loss(2.2)) == PAUSE and s.decide("h", 1, loss(9.0)) == PAUSE
    assert s.decide("i", 1, loss(9.0)) == PAUSE and s.promotable(1) == []  # floor(9/3) = 3: f, e, b
    assert s.decide("j", 1, loss(9.0)) == PAUSE and s.decide("k", 1, loss(9.0)) == PAUSE
    assert s.decide("l", 1, loss(9.0)) == PAUSE and s.promotable(1) == ["a"]  # floor(12/3) = 4: a is 4th
    assert s.decide("b", 1, loss(1.5)) == GO and s.decide("b", 2, loss(1.4)) == GO  # repeated row; between rungs
    assert s.decide("b", 3, loss(1.3)) == PAUSE  # rung 3 starts empty
    assert s.num_paused == 11 and s.num_stopped == 0  # a b c d g h i j k l at rung 1, b at rung 3


def test_a_cost_anchor_goes_on_at_once_and_takes_a_place() -> None:
    s = PromotionASHA({"val_loss": "min"}, max_t=9, grace_period=1, reduction_factor=3, anchors=[{"cell": "rnn"}])
    assert s.decide("anchor", 1, loss(3.0), anchor=True) == GO  # alone at the rung, and the worst: goes on anyway
    assert s.promoted[1] == {"anchor"} and "anchor" not in s.waiting
    assert s.decide("b", 1, loss(1.0)) == PAUSE and s.decide("c", 1, loss(2.0)) == PAUSE
    assert s.promotable(1) == ["b"]  # floor(3/3) = 1 place, b's: the anchor is ranked as any trial
    assert s.decide("anchor", 3, loss(2.9), anchor=True) == GO and s.promoted[3] == {"anchor"}
    assert s.decide("d", 1, loss(float("nan")), anchor=True) == STOP  # a diverged anchor stops


def test_higher_rungs_promote_first_and_a_diverged_trial_stops() -> None:
    s = PromotionASHA({"val_loss": "min"}, max_t=4, grace_period=1, reduction_factor=2)
    assert s.decide("a", 1, loss(3.0)) == PAUSE  # floor(1/2) = 0
    assert s.decide("b", 1, loss(2.0)) == GO  # floor(2/2) = 1: b, best, at once
    assert s.decide("x", 1, loss(4.0)) == PAUSE and s.promotable(1) == []  # floor(3/2) = 1: b's
    assert s.decide("y", 1, loss(3.5)) == PAUSE and s.promotable(1) == ["a"]  # floor(4/2) = 2: b, a
    assert s.decide("b", 2, loss(1.5)) == PAUSE  # rung 2: floor(1/2) = 0
    assert s.decide("e", 2, loss(2.5)) == PAUSE and s.promotable(2) == ["b"]  # (e skipped rung 1: a restored trial)
    # a free slot resumes rung 2's b before rung 1's a, and only trials that are paused
    assert s.next_promotion({"a", "x", "y", "e"}) == "a"  # b is not paused (say it just restarted): skipped
    assert s.next_promotion({"b", "x", "y", "e"}) == "b"
    assert s.next_promotion({"x", "y", "e"}) is None
    assert s.decide("c", 1, loss(float("nan"))) == STOP  # recorded as the worst, so it counts at the rung:
    assert s.promotable(1) == [] and s.decide("d", 1, loss(5.0)) == PAUSE  # floor(6/2) = 3: b, a, y
    assert s.promotable(1) == ["y"] and s.num_stopped == 1


def test_several_objectives_rank_as_mo_asha() -> None:
    s = PromotionASHA({"val_loss": "min", "flops": "min"}, max_t=4, grace_period=1, reduction_factor=2)
    assert s.decide("big", 1, {"val_loss": 1.0, "flops": 100.0}) == PAUSE
    # a trade-off: both on the first front; boundary points, then arrival: big is promoted, not small
    assert s.decide("small", 1, {"val_loss": 2.0, "flops": 1.0}) == PAUSE and s.promotable(1) == ["big"]
    assert s.decide("worse", 1, {"val_loss": 3.0, "flops": 200.0}) == PAUSE  # dominated: floor(3/2) = 1
    assert s.decide("best", 1, {"val_loss": 0.5, "flops": 0.5}) == GO  # floor(4/2) = 2 and it dominates all


def test_records_survive_a_restore(tmp_path: Path) -> None:
    state = tmp_path / "promotion_asha.json"
    s = PromotionASHA({"val_loss": "min"}, max_t=9, grace_period=1, reduction_factor=3, state_file=state)
    for trial_id, value in (("a", 2.0), ("b", 1.0), ("c", 3.0)):
        s.decide(trial_id, 1, loss(value))
    assert s.next_promotion({"a", "b", "c"}) == "b"
    # Tuner.restore unpickles the scheduler as it was at the start; the records come back from the file
    r = PromotionASHA({"val_loss": "min"}, max_t=9, grace_period=1, reduction_factor=3, state_file=state)
    assert r.decide("b", 1, loss(9.0)) == GO  # b was recorded and promoted before the restore
    assert r.waiting == {"a": 1, "c": 1} and r.promoted[1] == {"b"} and r.num_paused == 3
    assert r.decide("d", 1, loss(2.5)) == PAUSE  # floor(4/3) = 1 is b's: d waits
    assert r.decide("e", 1, loss(0.1)) == GO  # floor(5/3) = 1: e, best, at once
    assert r.rungs[1].keys() == {"a", "b", "c", "d", "e"}


class Controller:
    """Stand-in for the view of Ray's controller a scheduler gets: trials, the search algorithm, stop_trial."""

    def __init__(self, statuses: dict[str, str], finished: bool = False) -> None:
        self.trials = [SimpleNamespace(trial_id=t, status=s) for t, s in statuses.items()]
        self.hooks: list[tuple[str, str]] = []
        self.stopped: list[str] = []
        searcher = SimpleNamespace(on_pause=lambda t: self.hooks.append(("on_pause", t)),
                                   on_unpause=lambda t: self.hooks.append(("on_unpause", t)))
        self.search_alg = SimpleNamespace(searcher=searcher, is_finished=lambda: finished)

    def get_trials(self) -> list[Any]:
        return self.trials

    def stop_trial(self, trial: Any) -> None:
        self.stopped.append(trial.trial_id)
        trial.status = Trial.TERMINATED


def chosen_id(s: PromotionASHA, c: Controller) -> str | None:
    trial = s.choose_trial_to_run(c)
    return None if trial is None else str(trial.trial_id)


def test_choose_trial_to_run_promotes_first_then_starts_new_trials() -> None:
    s = PromotionASHA({"val_loss": "min"}, max_t=9, grace_period=1, reduction_factor=3)
    c = Controller({"a": Trial.PAUSED, "b": Trial.PAUSED, "c": Trial.PAUSED, "p": Trial.PENDING})
    for trial_id, value in (("a", 2.0), ("b", 1.0)):
        assert s.on_trial_result(c, SimpleNamespace(trial_id=trial_id), {"iteration": 1, "val_loss": value}) == PAUSE
    assert c.hooks == [("on_pause", "a"), ("on_pause", "b")]
    assert chosen_id(s, c) == "p"  # nothing promotable yet: a new trial
    s.on_trial_result(c, SimpleNamespace(trial_id="c"), {"iteration": 1, "val_loss": 3.0})
    assert chosen_id(s, c) == "b" and c.hooks[-1] == ("on_unpause", "b")
    c.trials[1].status = c.trials[3].status = Trial.RUNNING
    assert s.choose_trial_to_run(c) is None and c.stopped == []  # a and c wait; trials still run


def test_when_the_search_has_no_more_trials_the_waiting_ones_stop() -> None:
    s = PromotionASHA({"val_loss": "min"}, max_t=9, grace_period=1, reduction_factor=3)
    for trial_id, value in (("a", 2.0), ("b", 1.0)):
        s.decide(trial_id, 1, loss(value))
    running = Controller({"a": Trial.PAUSED, "b": Trial.PAUSED, "r": Trial.RUNNING}, finished=True)
    assert s.choose_trial_to_run(running) is None and running.stopped == []  # r may yet make one promotable
    idle = Controller({"a": Trial.PAUSED, "b": Trial.PAUSED, "r": Trial.TERMINATED}, finished=True)
    assert s.choose_trial_to_run(idle) is None and idle.stopped == ["a", "b"] and s.waiting == {}
    more = Controller({"x": Trial.PAUSED}, finished=False)
    assert chosen_id(s, more) == "x"  # paused by something else: it goes on


def test_a_restored_waiting_trial_is_paused_again() -> None:
    s = PromotionASHA({"val_loss": "min"}, max_t=9, grace_period=1, reduction_factor=3)
    s.decide("a", 1, loss(2.0))
    statuses: list[str] = []

    class Stub:  # what on_trial_add uses of a Ray Trial
        def __init__(self, trial_id: str, iteration: int = 1) -> None:
            self.trial_id, self.status = trial_id, Trial.PENDING
            self.last_result = {"iteration": iteration}

        def set_status(self, status: str) -> None:
            statuses.append(f"{self.trial_id} {status}")
            self.status = status

    a, b = Stub("a"), Stub("b")
    s.on_trial_add(None, a)  # Tuner.restore re-queued a, waiting at rung 1, as PENDING
    s.on_trial_add(None, b)  # a new trial
    assert a.status == Trial.PAUSED and b.status == Trial.PENDING and statuses == ["a PAUSED"]
    # run anyway (by whatever means): it goes no further than its rung unpromoted
    assert s.on_trial_result(None, a, {"iteration": 2, "val_loss": 1.0}) == PAUSE and s.waiting == {"a": 1}
    # Ray's saved state lags the rung records: c waits at rung 3 but Ray last saw it at iteration 2. It runs from its
    # checkpoint to the rung again (re-reporting the rows the killed driver lost) and waits there, not judged twice.
    for trial_id, value in (("x", 1.0), ("y", 2.0), ("c", 3.0)):
        s.decide(trial_id, 3, loss(value))
    c = Stub("c", iteration=2)
    s.on_trial_add(None, c)
    assert c.status == Trial.PENDING and s.waiting["c"] == 3
    assert s.on_trial_result(None, c, {"iteration": 3, "val_loss": 0.1}) == PAUSE and s.rungs[3]["c"] == [3.0]
    assert s.num_paused == 4  # a, x, y, c: the pauses again are not new pauses


def test_optuna_hears_a_paused_trial_as_pruned_and_its_promotion_as_a_new_trial() -> None:
    searcher = make_searcher(load_space("smoke"), seed=0)
    config = searcher.suggest("t1")
    searcher.suggest("t2")
    assert config is not None
    searcher.on_trial_result("t1", {"iteration": 1, "val_loss": 3.0})
    # Ray asks the scheduler (which pauses t1) before it gives the searcher the rung's row
    searcher.on_pause("t1")
    searcher.on_trial_result("t1", {"iteration": 2, "val_loss": 2.5})
    study: Any = searcher._ot_study
    first = study.trials[0]
    assert first.state == TrialState.PRUNED and first.intermediate_values == {1: 3.0, 2: 2.5}
    searcher.on_unpause("t1")
    resumed = study.trials[-1]
    assert resumed.state == TrialState.RUNNING and resumed.params == first.params
    assert resumed.intermediate_values == {1: 3.0, 2: 2.5} and len(study.trials) == 3
    searcher.on_trial_result("t1", {"iteration": 3, "val_loss": 2.0})
    searcher.on_trial_complete("t1", {"iteration": 3, "val_loss": 2.0, "trial_status": "completed"})
    assert study.trials[-1].state == TrialState.COMPLETE and study.trials[-1].value == 2.0
    # paused and then stopped by the scheduler at the end of the search: told once, at the pause
    searcher.on_trial_result("t2", {"iteration": 1, "val_loss": 4.0})
    searcher.on_pause("t2")
    searcher.on_trial_result("t2", {"iteration": 2, "val_loss": 3.5})
    searcher.on_trial_complete("t2", {"iteration": 2, "val_loss": 3.5})
    states = [t.state for t in study.trials]
    assert states == [TrialState.PRUNED, TrialState.PRUNED, TrialState.COMPLETE]


@pytest.mark.parametrize("bad", [{"val_loss": "up"}, {}])
def test_rejects_bad_objectives(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        PromotionASHA(bad)
