"""The searcher side of a search: Optuna's sampler behind Ray Tune's ``OptunaSearch``, and its concurrency limit.

- :func:`make_searcher` builds the searcher from a space: :func:`optuna_distributions` (or, for a grid,
  :func:`grid_param_space`), the sampler (:func:`make_sampler`: TPE, NSGA-II or random) and the cost anchors.
- :class:`PrunedAwareOptunaSearch` tells Optuna which trials were pruned, not completed.
- :class:`_PicklableNSGAIISampler` lets Ray pickle an NSGA-II sampler (Optuna 5.1's lock).
- :class:`SlotLimiter` follows the cluster's trial slots as nodes join or leave.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from tuning.engine.train import STATUS_COMPLETED, STATUS_DIVERGED
from tuning.spec.anchor import anchor_points
from tuning.spec.space import SearchSpace

logger = logging.getLogger(__name__)


def optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    """The sampled parameters as Optuna distributions, for Ray Tune's OptunaSearch (its native vocabulary)."""
    dists: dict[str, Any] = {}
    for p in space.params:
        if p.type == "categorical":
            dists[p.name] = optuna.distributions.CategoricalDistribution(list(p.choices))
        elif p.type == "int":
            dists[p.name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log,  # type: ignore[arg-type]
                                                                 step=int(p.step or 1))
        elif p.type == "float":
            dists[p.name] = optuna.distributions.FloatDistribution(float(p.low), float(p.high),  # type: ignore[arg-type]
                                                                   log=p.log, step=p.step)
    return dists


def grid_param_space(space: SearchSpace) -> dict[str, Any]:
    """Grid values as Ray Tune grid_search entries (an exhaustive grid, no sampler)."""
    return {p.name: tune.grid_search(list(p.choices)) for p in space.params}


class PrunedAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about trials that did not finish their budget.

    Ray's OptunaSearch tells every trial ASHA stopped as COMPLETE with its low-budget score, so TPE learns
    from undertrained models as if they were final. Here only trials that report ``trial_status=completed``
    are COMPLETE; ASHA-stopped ones are PRUNED (their intermediate values stay reported), diverged and
    errored ones FAIL.

    In a multi-objective search each row also records how far the trial got (:func:`record_depth`), so that TPE
    ranks a trial stopped at a later rung above one stopped at an earlier rung, as it does in one-objective
    searches.
    """

    constraints: dict[str, float] = {}  # metric -> upper bound; set by make_searcher

    def on_pause(self, trial_id: str) -> None:
        """A trial paused at a rung (promotion-type ASHA, :mod:`tuning.tune.schedulers.promotion_asha`) is told to
        Optuna as PRUNED, so that TPE learns from it while it waits — most paused trials wait for ever. Ray asks the
        scheduler before it hands the searcher the rung's result, so the tell waits for that result
        (:meth:`on_trial_result`). If the trial is promoted, :meth:`on_unpause` opens a new Optuna trial with its
        parameters and intermediate values, told as usual when it ends; Optuna keeps both (a finished Optuna trial
        cannot be reopened)."""
        if trial_id not in self._completed_trials and trial_id in self._ot_trials and trial_id not in self._pause_state:
            self._pause_state[trial_id] = False  # paused, not told yet (paused again after a restore: told already)

    def on_unpause(self, trial_id: str) -> None:
        told = self._pause_state.pop(trial_id, None)
        if not told:
            return
        study: Any = self._ot_study
        number = self._ot_trials[trial_id].number
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        study.enqueue_trial(frozen.params, skip_if_exists=False)  # the next ask() takes exactly these parameters
        resumed = study.ask(fixed_distributions=self._space)
        for step, value in sorted(frozen.intermediate_values.items()):
            if isinstance(self.metric, list):
                record_depth(study, resumed, step)
            else:
                resumed.report(value, step)
        self._ot_trials[trial_id] = resumed

    def _tell_paused(self, trial_id: str) -> None:
        if self._pause_state.get(trial_id) is False:
            study: Any = self._ot_study
            study.tell(self._ot_trials[trial_id], None, state=TrialState.PRUNED)
            self._pause_state[trial_id] = True

    @property
    def _pause_state(self) -> dict[str, bool]:
        """Paused trials -> told to Optuna yet. Made on first use: a searcher pickled by an older version (an
        experiment to ``--resume``) lacks it."""
        if "_paused_trials" not in self.__dict__:
            self.__dict__["_paused_trials"] = {}
        state: dict[str, bool] = self.__dict__["_paused_trials"]
        return state

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._pause_state:  # stopped while paused: Optuna hears of it at the pause
            self._tell_paused(trial_id)
            del self._pause_state[trial_id]
            self._completed_trials.add(trial_id)
            return
        if trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result, error)  # Ray warns of the second completion
        if trial_id not in self._ot_trials:
            # a trial the restored searcher never proposed (see on_trial_result): Ray's own method would raise
            # KeyError and fail the resumed search; Optuna has no trial to tell
            logger.info("trial %s ended but this searcher never proposed it (resumed search); not told", trial_id)
            return
        ot_trial = self._ot_trials[trial_id]
        study: Any = self._ot_study
        if self.constraints:
            # A cost not reported yet (latency comes at the end) counts as satisfied.
            for metric, bound in self.constraints.items():
                # Optuna 5: a constraint value > 0 is a violation; the samplers read these themselves.
                ot_trial.set_constraint(metric, float((result or {}).get(metric, 0.0)) - bound)
        status = (result or {}).get("trial_status")
        values: Any = None
        if error or status == STATUS_DIVERGED or result is None:
            state = TrialState.FAIL
        elif status == STATUS_COMPLETED:
            state = TrialState.COMPLETE
            values = [result[m] for m in self.metric] if isinstance(self.metric, list) else result[self.metric]
        else:
            state = TrialState.PRUNED
        try:
            study.tell(ot_trial, values, state=state)
        except ValueError as exc:  # e.g. a NaN objective: Optuna refuses it; the trial is then a failure
            logger.warning("optuna refused trial %s (%s); telling it as failed", trial_id, exc)
            study.tell(ot_trial, None, state=TrialState.FAIL)
        self._completed_trials.add(trial_id)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if self._pause_state.get(trial_id):
            return  # told already (a stray row after the pause)
        if trial_id not in self._ot_trials:
            # a trial the restored searcher never proposed: a killed driver saved the searcher before the trial
            # began and the experiment state after; Optuna has no trial to report to (nor, at the end, to tell)
            return
        if isinstance(self.metric, list):
            if trial_id not in self._completed_trials and "iteration" in result:
                record_depth(self._ot_study, self._ot_trials[trial_id], int(result["iteration"]))
        else:
            value = result.get(self.metric)
            if value is not None and value == value:  # NaN: a diverged trial's last row; Optuna would choke on it
                super().on_trial_result(trial_id, {**result, "training_iteration": result.get("iteration", 0)})
        self._tell_paused(trial_id)


def record_depth(study: Any, ot_trial: Any, step: int) -> None:
    """Note on a trial of a multi-objective study that it reached ``step``, so that TPE can rank it once pruned.

    TPE fills its "good" group with the best complete trials, then the best pruned ones, ranked by the last step
    they reached and then by their value at it (Optuna's ``_get_pruned_trial_score`` in
    ``optuna/samplers/_tpe/sampler.py``, from optuna/optuna#439). A multi-objective trial cannot report values
    (``Trial.report`` raises), so all its pruned trials tied, and the tie fell to trial number: while few trials
    had completed, the good group was the *first* trials stopped, whatever they were — early random draws —
    and a search could drift to whatever those were (the 45-minute #8 benchmark, seed 1 with the cost anchor:
    2 complete trials out of 136, the sampler moved to large LSTMs). So each row stores a NaN at its step through
    the storage: NaN is the value that TPE ranks without asking for the study's one direction (it has several),
    which leaves depth — the rung the scheduler let the trial reach — as the rank; equal depths keep trial order.
    """
    storage = study._storage
    if storage.get_trial(ot_trial._trial_id).state == TrialState.RUNNING:
        storage.set_trial_intermediate_value(ot_trial._trial_id, step, float("nan"))


class _PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II that survives pickling. Ray pickles the searcher, and with it the study's sampler, when the tuner is
    built and at every searcher save; Optuna 5.1 gave its genetic samplers a ``threading.Lock`` (``_thread_lock``,
    in ``optuna/samplers/_ga/_base.py``) without the ``__getstate__`` its journal storage has for the same lock, so
    every NSGA-II search failed with ``cannot pickle '_thread.lock' object``. The lock guards in-process state only:
    a fresh one after unpickling is what Optuna's journal storage does too."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)  # absent before Optuna 5.1
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()  # unused before Optuna 5.1, where the sampler had no lock


def make_sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    # Constraints reach the samplers through Trial.set_constraint (see on_trial_complete): NSGA-II and TPE
    # then learn where the feasible region is.
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if space.sampler == "nsga2":
        return _PicklableNSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_searcher(space: SearchSpace, seed: int) -> PrunedAwareOptunaSearch:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    multi = space.is_multi_objective
    searcher = PrunedAwareOptunaSearch(
        space=optuna_distributions(space),
        metric=[o.metric for o in space.objectives] if multi else space.objective.metric,
        mode=[o.mode for o in space.objectives] if multi else space.objective.mode,
        sampler=make_sampler(space, seed),
    )
    searcher.constraints = dict(space.constraints)
    for point in anchor_points(space):
        # Ray's points_to_evaluate insists on complete points; Optuna's own queue takes a partial one and lets the
        # sampler draw the rest, in the order enqueued. The study exists already: OptunaSearch makes it when given a
        # space.
        study: Any = searcher._ot_study
        study.enqueue_trial(point)
    return searcher


def cluster_slots(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster can run at once now: its CPUs (and GPUs) over a trial's share."""
    total = ray.cluster_resources()
    count = int(total.get("CPU", 0.0) // cpus_per_trial)
    if gpus_per_trial > 0:
        # round first: 1.0 / 0.25 must be 4, not 3.9999
        count = min(count, int(round(total.get("GPU", 0.0) / gpus_per_trial, 6)))
    return max(1, count)


class SlotLimiter(ConcurrencyLimiter):
    """A concurrency limit that follows the cluster's slots as nodes join or leave.

    Ray's own limit (``TuneConfig.max_concurrent_trials``) is fixed when the search starts, so an
    autoscaling cluster's new GPU nodes would sit idle; this one re-reads the cluster every few seconds.
    """

    REFRESH_S = 5.0

    def __init__(self, searcher: OptunaSearch, cpus_per_trial: float, gpus_per_trial: float,
                 fixed: int | None = None) -> None:
        self.cpus_per_trial, self.gpus_per_trial, self.fixed = cpus_per_trial, gpus_per_trial, fixed
        self._checked = time.monotonic()
        super().__init__(searcher, max_concurrent=fixed or cluster_slots(cpus_per_trial, gpus_per_trial))

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        now = time.monotonic()
        if self.fixed is None and now - self._checked >= self.REFRESH_S:
            self._checked = now
            self.max_concurrent = cluster_slots(self.cpus_per_trial, self.gpus_per_trial)
        return super().suggest(trial_id)

    # A trial paused at a rung (promotion-type ASHA) holds no slot: the searcher may propose another in its place.
    # Ray's own ConcurrencyLimiter counts paused trials as live, so a search whose running trials have all paused
    # would wait for ever.
    def on_pause(self, trial_id: str) -> None:
        self.live_trials.discard(trial_id)
        super().on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        self.live_trials.add(trial_id)
        super().on_unpause(trial_id)
