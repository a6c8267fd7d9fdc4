"""A Pareto-aware asynchronous successive-halving scheduler for Ray Tune (MO-ASHA).

Ray Tune's schedulers take one metric. This one follows MO-ASHA (Schmucker, Donini, Zafar, Salinas,
Archambeau 2021, "Multi-objective asynchronous successive halving", arXiv:2106.12639): rungs sit where ASHA
puts them (``grace · rf^k`` iterations, Li et al. 2020); when a trial reaches a rung its objective vector is
recorded there, and it continues only if it ranks in the top ``ceil(n / rf)`` of the ``n`` vectors recorded
at that rung so far. The ranking is NSGA-II's (Deb et al. 2002): non-dominated sorting first, then, inside
a front, larger crowding distance first; equal keys keep arrival order. Costs known before training (FLOPs,
parameters) are in every result, so they count at every rung.

Cost anchors (:mod:`tuning.spec.anchor`: the cheapest model of the space, or of each family) are recorded at every rung
like any trial, so they count in the others' ranking, but are never stopped there: an anchor exists to put the cheap
end of the front on it, and only trials that complete the full budget are on the front. A trial is an anchor when its
config has an anchor's size parameters (a sampled trial of the same architecture counts as one too).

Ray's own ASHA keeps its rungs in memory only, so a restored experiment forgets them; this scheduler writes
them to a JSON file in the experiment directory after every decision and reads them back on restore.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tuning.files import atomic_write_json
from tuning.spec.pareto import crowding_distance, non_dominated_sort
from tuning.spec.rungs import asha_rungs


def promotion_order(points: np.ndarray) -> np.ndarray:
    """Indices of ``points`` (minimisation vectors) from best to worst: rank, then crowding, then arrival."""
    ranks = non_dominated_sort(points)
    crowd = np.zeros(len(points))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        if len(members):
            distance = crowding_distance(points[members])
            crowd[members] = np.nan_to_num(distance, nan=-1.0, posinf=np.inf)
    return np.array(sorted(range(len(points)), key=lambda i: (ranks[i], -crowd[i], i)), dtype=int)


class ParetoASHA(FIFOScheduler):
    """MO-ASHA as a Ray Tune ``TrialScheduler``.

    Args:
        objectives: ``{metric: "min" | "max"}``, in priority order for display only.
        time_attr: the result key counting training progress (our ``iteration``).
        max_t, grace_period, reduction_factor: as Ray's ``ASHAScheduler``.
        state_file: where rung records persist (None keeps them in memory).
        anchors: the cost anchors' size parameters (:func:`tuning.spec.anchor.anchor_points`): trials with them run on.
    """

    def __init__(self, objectives: dict[str, str], *, time_attr: str = "iteration", max_t: int = 16,
                 grace_period: int = 1, reduction_factor: int = 3, state_file: Path | str | None = None,
                 anchors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__()
        if len(objectives) < 1 or any(m not in ("min", "max") for m in objectives.values()):
            raise ValueError(f"objectives must map metrics to 'min' or 'max', got {objectives!r}")
        self.objectives = dict(objectives)
        self.time_attr = time_attr
        self.max_t, self.rf = max_t, reduction_factor
        self.rungs: dict[int, dict[str, list[float]]] = {m: {} for m in asha_rungs(max_t, grace_period,
                                                                                    reduction_factor)}
        self.state_file = Path(state_file) if state_file else None
        self.anchors = [dict(a) for a in anchors]
        self.num_stopped = 0
        self._loaded = False

    # -- the decision, free of Ray: scripted tests drive this directly ---------------------------------------

    def vector(self, result: dict[str, Any]) -> list[float] | None:
        values = []
        for metric, mode in self.objectives.items():
            value = result.get(metric)
            if not isinstance(value, (int, float)):
                return None
            values.append(float(value) if mode == "min" else -float(value))
        return values

    def is_anchor(self, config: Mapping[str, Any]) -> bool:
        return any(all(config.get(k) == v for k, v in a.items()) for a in self.anchors)

    def decide(self, trial_id: str, iteration: int, result: dict[str, Any], anchor: bool = False) -> str:
        """Record the trial at the highest rung it has newly reached and say whether it goes on (an ``anchor``
        always does, unless it diverged)."""
        self._ensure_loaded()
        vector = self.vector(result)
        if vector is None:
            return TrialScheduler.CONTINUE
        for milestone in sorted(self.rungs, reverse=True):
            recorded = self.rungs[milestone]
            if iteration < milestone:
                continue
            if trial_id in recorded:
                return TrialScheduler.CONTINUE  # decided at this rung already (e.g. a repeated row)
            recorded[trial_id] = vector
            ids = list(recorded)
            order = promotion_order(np.array([recorded[i] for i in ids], dtype=float))
            keep = math.ceil(len(ids) / self.rf)
            promoted = {ids[i] for i in order[:keep]}
            action = TrialScheduler.CONTINUE
            if (trial_id not in promoted and not anchor) or not all(math.isfinite(v) for v in vector):
                action = TrialScheduler.STOP
                self.num_stopped += 1
            self._save()
            return action
        return TrialScheduler.CONTINUE

    # -- Ray Tune's TrialScheduler interface ------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # objectives are fixed at construction

    @property
    def metric(self) -> str:
        return next(iter(self.objectives))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if self.time_attr not in result:
            return TrialScheduler.CONTINUE
        return self.decide(trial.trial_id, int(result[self.time_attr]), result,
                           anchor=self.is_anchor(getattr(trial, "config", None) or {}))

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        pass  # a finished trial reached max_t: no rung left to record it in

    def debug_string(self) -> str:
        sizes = ", ".join(f"iter {m}: {len(r)}" for m, r in sorted(self.rungs.items()))
        return f"Using ParetoASHA on {self.objectives}: num_stopped={self.num_stopped}; recorded at {sizes}"

    def save(self, checkpoint_path: str) -> None:
        atomic_write_json(Path(checkpoint_path), self._state())

    def restore(self, checkpoint_path: str) -> None:
        self._load(json.loads(Path(checkpoint_path).read_text()))

    # -- persistence ------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"objectives": self.objectives, "num_stopped": self.num_stopped,
                "rungs": {str(m): r for m, r in self.rungs.items()}}

    def _load(self, state: dict[str, Any]) -> None:
        for milestone, recorded in state.get("rungs", {}).items():
            self.rungs.setdefault(int(milestone), {}).update({k: list(v) for k, v in recorded.items()})
        self.num_stopped = max(self.num_stopped, int(state.get("num_stopped", 0)))

    def _ensure_loaded(self) -> None:
        # Tuner.restore unpickles the scheduler as it was when the experiment started; read the rungs back here.
        if not self._loaded:
            self._loaded = True
            if not self.state_file:
                return
            # experiments from before 2026-11-30 kept the file at the experiment's root (see files.SCHEDULER_DIR)
            for path in (self.state_file, self.state_file.parent.parent / self.state_file.name):
                if path.is_file():
                    self._load(json.loads(path.read_text()))
                    return

    def _save(self) -> None:
        if self.state_file:
            atomic_write_json(self.state_file, self._state())
