"""The two pieces that sit between Ray Tune and the Ray-free engine: the trial function and the searcher."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from tuning.config import TrainConfig
from tuning.data import Corpus
from tuning.spaces import SearchSpace, optuna_distributions
from tuning.train import STATUS_COMPLETED, STATUS_DIVERGED, train

logger = logging.getLogger(__name__)


def trainable(config: dict[str, Any], corpus: Corpus) -> None:
    """One trial: the engine with Ray's report and checkpoint plumbing around it.

    ``corpus`` arrives through ``tune.with_parameters`` (Ray's object store), so worker nodes need neither
    the file nor internet access.
    """
    cfg = TrainConfig.from_dict(config)

    with tempfile.TemporaryDirectory(prefix="tuning-trial-") as scratch:
        def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
            # Ray copies the directory into the experiment's storage before report() returns.
            checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
            tune.report(metrics, checkpoint=checkpoint)

        restored = tune.get_checkpoint()
        if restored is None:
            train(cfg, report, corpus=corpus, checkpoint_dir=Path(scratch))
        else:
            with restored.as_directory() as resume_dir:
                train(cfg, report, corpus=corpus, resume_from=Path(resume_dir), checkpoint_dir=Path(scratch))


class PrunedAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about trials that did not finish their budget.

    Ray's OptunaSearch tells every trial ASHA stopped as COMPLETE with its low-budget score, so TPE learns
    from undertrained models as if they were final. Here only trials that report ``trial_status=completed``
    are COMPLETE; ASHA-stopped ones are PRUNED (their intermediate values stay reported), diverged and
    errored ones FAIL.
    """

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        study: Any = self._ot_study
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
        value = result.get(self.metric) if isinstance(self.metric, str) else None
        if value is None or value != value:  # NaN: a diverged trial's last row; Optuna would choke on it
            return
        super().on_trial_result(trial_id, {**result, "training_iteration": result.get("iteration", 0)})


def make_sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_searcher(space: SearchSpace, seed: int) -> PrunedAwareOptunaSearch:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return PrunedAwareOptunaSearch(
        space=optuna_distributions(space),
        metric=space.objective.metric,
        mode=space.objective.mode,
        sampler=make_sampler(space, seed),
    )
