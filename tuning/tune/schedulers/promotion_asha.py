"""ASHA of the promotion type for Ray Tune: a trial pauses at each rung until it ranks in the top 1/rf there.

Li et al. (2020, "A System for Massively Parallel Hyperparameter Tuning", MLSys; Algorithm 2) state ASHA as a
promotion scheme: when a worker is free it resumes the best not-yet-promoted trial of the highest rung whose top
``floor(n / rf)`` of ``n`` recorded trials holds one, and otherwise starts a new configuration. Ray Tune's
``ASHAScheduler`` implements the *stopping* variant instead: a trial reaching a rung continues if it is in the top
``1/rf`` of the trials recorded there *so far*, so the first trial at every rung always continues — the search's
first full-budget trials are its first random draws — and a trial that stops is never revived
(ray-project/ray#4401, #32634: promotion-type ASHA is an open request). Here no trial passes a rung before ``rf``
trials have been recorded there, and a paused trial resumes from its checkpoint whenever later arrivals leave it
in the top ``floor(n / rf)``.

Rules and bookkeeping:

- Rungs, ranking and persistence are :class:`tuning.tune.schedulers.mo_asha.ParetoASHA`'s: one objective sorts by
  value, several by NSGA-II rank then crowding; the records (and which trials were promoted or wait) are written to the
  state file after every decision, so ``--resume`` keeps them.
- A trial that reaches a rung and is promotable at once continues without a pause (no checkpoint round trip); so
  does a cost anchor (:class:`tuning.tune.schedulers.mo_asha.ParetoASHA`), counted as promoted there.
- A pause frees the trial's slot for the searcher (``on_pause`` / ``on_unpause``, the hooks Ray's BOHB uses), and
  Optuna is told the paused trial as PRUNED at that step (see :class:`tuning.tune.searcher.PrunedAwareOptunaSearch`).
- When the searcher has no new trials left, no trial is running and none is promotable, the trials still waiting
  at rungs are stopped: they were not good enough, and the experiment ends as Ray's ASHA would end it.
- ``Tuner.restore`` re-queues paused trials as pending; those that were waiting are paused again as they are added,
  or at their first report if Ray's saved state is older than their rung. A waiting trial never passes its rung
  unpromoted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from tuning.tune.schedulers.mo_asha import ParetoASHA, promotion_order


class PromotionASHA(ParetoASHA):
    """Promotion-type ASHA as a Ray Tune ``TrialScheduler``; the arguments are :class:`ParetoASHA`'s."""

    def __init__(self, objectives: dict[str, str], **kwargs: Any) -> None:
        super().__init__(objectives, **kwargs)
        self.promoted: dict[int, set[str]] = {m: set() for m in self.rungs}
        self.waiting: dict[str, int] = {}  # trial id -> the rung it is paused at
        self.num_paused = self.num_resumed = 0

    # -- the decisions, free of Ray: scripted tests drive these directly ----------------------------------------

    def promotable(self, milestone: int) -> list[str]:
        """Trials in the top ``floor(n / rf)`` of the rung, best first, not promoted from it yet."""
        recorded = self.rungs[milestone]
        ids = list(recorded)
        keep = len(ids) // self.rf
        if not keep:
            return []
        order = promotion_order(np.array([recorded[i] for i in ids], dtype=float))
        return [ids[i] for i in order[:keep] if ids[i] not in self.promoted[milestone]]

    def decide(self, trial_id: str, iteration: int, result: dict[str, Any], anchor: bool = False) -> str:
        """Record the trial at the highest rung it has newly reached: CONTINUE if promotable now (or an ``anchor``,
        which counts as promoted there), else PAUSE."""
        self._ensure_loaded()
        rung = self.waiting.get(trial_id)
        if rung is not None and iteration >= rung:
            # Running though it waits: Ray restarted it after a restore from a state older than the rung records
            # (see on_trial_add). It goes no further than its rung until it is promoted.
            return TrialScheduler.PAUSE
        vector = self.vector(result)
        if vector is None:
            return TrialScheduler.CONTINUE
        for milestone in sorted(self.rungs, reverse=True):
            if iteration < milestone:
                continue
            recorded = self.rungs[milestone]
            if trial_id in recorded:
                return TrialScheduler.CONTINUE  # decided at this rung already (a repeated row, or promoted)
            if not all(math.isfinite(v) for v in vector):
                # A diverged trial counts at the rung (ranked last), so it does not hold back promotions of others.
                recorded[trial_id] = [math.inf] * len(vector)
                self.num_stopped += 1
                self._save()
                return TrialScheduler.STOP
            recorded[trial_id] = vector
            if anchor or trial_id in self.promotable(milestone):
                self.promoted[milestone].add(trial_id)
                action = TrialScheduler.CONTINUE
            else:
                self.waiting[trial_id] = milestone
                self.num_paused += 1
                action = TrialScheduler.PAUSE
            self._save()
            return action
        return TrialScheduler.CONTINUE

    def next_promotion(self, paused: set[str]) -> str | None:
        """The paused trial to resume now, if any: the best promotable one of the highest rung. Marks it promoted."""
        self._ensure_loaded()
        for milestone in sorted(self.rungs, reverse=True):
            for trial_id in self.promotable(milestone):
                if trial_id in paused and self.waiting.get(trial_id) == milestone:
                    self.promoted[milestone].add(trial_id)
                    del self.waiting[trial_id]
                    self.num_resumed += 1
                    self._save()
                    return trial_id
        return None

    # -- Ray Tune's TrialScheduler interface ------------------------------------------------------------------

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        # Tuner.restore re-queues paused trials as PENDING, and Ray starts every PENDING trial by itself: a trial
        # that was waiting at a rung when the driver stopped is set back to PAUSED here, before Ray files it as
        # pending, so that it keeps waiting.
        self._ensure_loaded()
        rung = self.waiting.get(trial.trial_id)
        if rung is None or trial.status != Trial.PENDING:
            return
        # Ray's state may lag behind the rung records (saved every ~10 s; the records after every decision): a trial
        # whose restored progress is short of its rung re-runs to it from its checkpoint (re-reporting the rows the
        # killed driver lost) and waits there again (decide).
        done = int((getattr(trial, "last_result", None) or {}).get(self.time_attr, 0))
        if done >= rung:
            trial.set_status(Trial.PAUSED)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.PAUSE:
            _searcher_hook(tune_controller, "on_pause", trial.trial_id)
        return action

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = list(tune_controller.get_trials())
        paused = {t.trial_id: t for t in trials if t.status == Trial.PAUSED}
        chosen = self.next_promotion(set(paused))
        if chosen is not None:
            _searcher_hook(tune_controller, "on_unpause", chosen)
            return paused[chosen]
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        for trial_id, trial in paused.items():
            if trial_id not in self.waiting:  # paused by something else (e.g. restored as paused): let it go on
                return trial
        search = getattr(tune_controller, "search_alg", None)
        running = any(t.status == Trial.RUNNING for t in trials)
        if paused and not running and search is not None and search.is_finished():
            for trial_id, trial in paused.items():
                self.waiting.pop(trial_id, None)
                tune_controller.stop_trial(trial)
            self._save()
        return None

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.waiting.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        sizes = ", ".join(f"iter {m}: {len(r)} ({len(self.promoted[m])} promoted)"
                          for m, r in sorted(self.rungs.items()))
        return (f"Using promotion-type ASHA on {self.objectives}: {len(self.waiting)} waiting, "
                f"{self.num_paused} paused, {self.num_resumed} resumed, num_stopped={self.num_stopped}; "
                f"recorded at {sizes}")

    # -- persistence ------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "promoted": {str(m): sorted(p) for m, p in self.promoted.items()},
                "waiting": dict(self.waiting), "num_paused": self.num_paused, "num_resumed": self.num_resumed}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        for milestone, ids in state.get("promoted", {}).items():
            self.promoted.setdefault(int(milestone), set()).update(ids)
        self.waiting.update({k: int(v) for k, v in state.get("waiting", {}).items()})
        self.num_paused = max(self.num_paused, int(state.get("num_paused", 0)))
        self.num_resumed = max(self.num_resumed, int(state.get("num_resumed", 0)))


def _searcher_hook(tune_controller: Any, hook: str, trial_id: str) -> None:
    """Call the searcher's ``on_pause`` / ``on_unpause`` (Ray's BOHB scheduler reaches it the same way)."""
    search = getattr(tune_controller, "search_alg", None)
    searcher = getattr(search, "searcher", None)
    if searcher is not None and hasattr(searcher, hook):
        getattr(searcher, hook)(trial_id)
