"""What a search prints on the terminal while it runs, beside Ray Tune's live trial table.

Under every table Ray's ``CLIReporter`` prints, one line sums the search up: the best objective value so far, the
trials by status, the characters trained and the time left. A search whose time budget cannot finish one
full-budget trial says so once on stderr. Two of Ray's lines that mislead a user of this tool are hidden.
The line's content and the budget decision are pure functions; Ray's hooks only feed them.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ray.experimental.tqdm_ray import safe_print
from ray.tune import Callback, CLIReporter
from ray.tune.experiment import Trial

from tuning.engine.train import STATUS_COMPLETED

# Fenced (STYLE.md 14): CLIReporter.report writes its whole message through _print (ray/tune/progress_reporter.py);
# overriding it is the one place that can drop a line of that message. Ray has no option for the line.
if not callable(getattr(CLIReporter, "_print", None)):
    raise ImportError("ray.tune.CLIReporter._print is gone: tuning.tune.progress.ProgressTable must filter elsewhere")

STATUS_ORDER = ("running", "paused", "completed", "stopped", "errored")
EXTRA_STATUSES = ("pending", "never reported")  # shown only when there are some
# "Result logdir: /tmp/ray/session_…/driver_artifacts" (ray.tune.progress_reporter._trial_progress_str): Ray's
# scratch folder, not the experiment, whose path the search prints at its end.
RESULT_LOGDIR_PREFIX = "Result logdir: "
# ExperimentAnalysis._fetch_trial_dataframes warns on this logger for every trial without a result file; a trial
# that never started (still pending when the time budget ran out) has none, and it is no error.
FETCH_LOGGER = "ray.tune.analysis.experiment_analysis"
FETCH_WARNING_PREFIX = "Failed to fetch metrics for "


@dataclass(frozen=True)
class Best:
    value: float
    trial_id: str
    cell: str | None


def trial_status(ray_status: str, last_trial_status: str | None) -> str:
    """Our name for a trial's state: Ray's status, with a terminated trial split by how far it got.

    ``last_trial_status`` is the ``trial_status`` of the trial's latest result, None before its first. PAUSED is a
    trial waiting at a rung (promotion-type ASHA). A trial ended before it reported (still pending when the time
    budget ran out) is "never reported", not "stopped": it trained nothing.
    """
    if ray_status == Trial.TERMINATED:
        if last_trial_status is None:
            return "never reported"
        return "completed" if last_trial_status == STATUS_COMPLETED else "stopped"
    return {Trial.RUNNING: "running", Trial.PAUSED: "paused", Trial.ERROR: "errored"}.get(ray_status, "pending")


def count_statuses(states: Iterable[tuple[str, str | None]]) -> dict[str, int]:
    """(Ray status, last reported ``trial_status``) pairs -> trials per :func:`trial_status`, every name present."""
    counts = dict.fromkeys((*STATUS_ORDER, *EXTRA_STATUSES), 0)
    for ray_status, last in states:
        counts[trial_status(ray_status, last)] += 1
    return counts


def improves(value: float, best: Best | None, mode: str) -> bool:
    if math.isnan(value):  # a diverged trial's last row
        return False
    return best is None or (value < best.value if mode == "min" else value > best.value)


def duration(seconds: float) -> str:
    """Seconds for a person: ``45 s``, ``7 min 40 s``, ``2 h 05 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def count(n: float) -> str:
    """A large count in three digits: ``950``, ``12.3 k``, ``4.56 M``, ``1.20 G``."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f}"


def progress_line(metric: str, best: Best | None, statuses: Mapping[str, int], chars: float, elapsed_s: float,
                  budget_s: float | None) -> str:
    """The one-line summary printed under each trial table."""
    if best is None:
        best_part = f"best {metric}: none yet"
    else:
        where = f"{best.trial_id}, {best.cell}" if best.cell else best.trial_id
        best_part = f"best {metric} {best.value:.4g} ({where})"
    status_part = "trials " + ", ".join(f"{statuses.get(s, 0)} {s}" for s in STATUS_ORDER)
    status_part += "".join(f", {statuses[s]} {s}" for s in EXTRA_STATUSES if statuses.get(s))
    if budget_s is None:
        time_part = f"{duration(elapsed_s)} elapsed"
    else:
        time_part = f"{duration(budget_s - elapsed_s)} left of {duration(budget_s)}"
    return f"progress: {best_part} | {status_part} | {count(chars)} chars trained | {time_part}"


def short_budget_warning(seconds_per_iter: float, max_iters: int, budget_s: float | None) -> str | None:
    """The warning when a trial at the measured speed cannot run its full budget within the search's time budget.

    Without it a short budget ends with no completed trial and nothing said about why.
    """
    if budget_s is None:
        return None
    needed = seconds_per_iter * max_iters
    if needed <= budget_s:
        return None
    return (f"warning: at the measured ~{seconds_per_iter:.3g} s per iteration a full-budget trial ({max_iters} "
            f"iterations) needs ~{duration(needed)} but the budget is {duration(budget_s)}; no trial will finish: "
            "raise --time-budget-s, lower --max-iters, or read the report's fronts at equal budget")


def seconds_per_iter(result: Mapping[str, Any]) -> float | None:
    """A trial's mean seconds per iteration so far: training and validation, which every iteration does."""
    iteration = result.get("iteration") or 0
    if iteration < 1 or "train_time_s" not in result:
        return None
    return (float(result["train_time_s"]) + float(result.get("eval_time_s", 0.0))) / iteration


class SearchProgress(Callback):
    """Follows every result: the best objective value so far, and the one short-budget warning.

    The warning is decided once every running trial has reported an iteration, from the fastest of them, so that
    one large model starting first does not speak for the small ones.
    """

    def __init__(self, metric: str, mode: str, max_iters: int, budget_s: float | None) -> None:
        self.metric, self.mode, self.max_iters, self.budget_s = metric, mode, max_iters, budget_s
        self.best: Best | None = None
        self.started = time.time()
        self.budget_decided = False
        self.speeds: dict[str, float] = {}  # trial id -> seconds per iteration at its latest result

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self.started = time.time()  # the tuning loop starts now (the tuner was built earlier)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any],
                        **info: Any) -> None:
        self._consider(trial, result)
        if (speed := seconds_per_iter(result)) is not None:
            self.speeds[trial.trial_id] = speed
        if result.get("trial_status") == STATUS_COMPLETED:
            self.budget_decided = True  # a trial finished its budget: nothing to warn of
        if self.budget_decided:
            return
        running = {t.trial_id for t in trials if t.status == Trial.RUNNING}
        if running and running <= self.speeds.keys():
            self.budget_decided = True
            warning = short_budget_warning(min(self.speeds.values()), self.max_iters, self.budget_s)
            if warning:
                print(warning, file=sys.stderr, flush=True)

    def _consider(self, trial: Trial, result: Mapping[str, Any]) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and improves(float(value), self.best, self.mode):
            cell = trial.config.get("cell")
            self.best = Best(float(value), trial.trial_id, str(cell) if cell is not None else None)

    def line(self, trials: list[Trial]) -> str:
        for trial in trials:  # trials restored by --resume reported before this driver saw them
            if trial.last_result:
                self._consider(trial, trial.last_result)
        statuses = count_statuses((t.status, (t.last_result or {}).get("trial_status")) for t in trials)
        chars = sum(float((t.last_result or {}).get("chars_trained", 0)) for t in trials)
        return progress_line(self.metric, self.best, statuses, chars, time.time() - self.started, self.budget_s)


class ProgressTable(CLIReporter):
    """Ray's live trial table, without its scratch-folder line, and with :class:`SearchProgress`'s line under it."""

    def __init__(self, progress: SearchProgress, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.progress = progress
        self._line = ""

    def report(self, trials: list[Trial], done: bool, *sys_info: str) -> None:
        self._line = self.progress.line(trials)
        super().report(trials, done, *sys_info)  # calls _print with the table

    def _print(self, msg: str) -> None:
        lines = [line for line in msg.rstrip("\n").split("\n") if not line.startswith(RESULT_LOGDIR_PREFIX)]
        safe_print("\n".join([*lines, self._line]) + "\n\n")  # the line under its table, then Ray's spacing


class NeverStartedTrials(logging.Filter):
    """Drops Ray's "Failed to fetch metrics" entries of trials that have no result file, i.e. never started.

    Other entries (a result file that cannot be read) stay, and the warning with them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(FETCH_WARNING_PREFIX):
            return True
        entries = message.split("\n")[1:]  # "- <trial>: <repr(error)>"
        kept = [e for e in entries if ": FileNotFoundError(" not in e]
        if not kept:
            return False
        record.msg, record.args = f"{FETCH_WARNING_PREFIX}{len(kept)} trial(s):\n" + "\n".join(kept), ()
        return True


def hide_misleading_ray_warnings() -> None:
    """Install :class:`NeverStartedTrials` once on the logger that warns (its records do not come from elsewhere)."""
    logger = logging.getLogger(FETCH_LOGGER)
    if not any(isinstance(f, NeverStartedTrials) for f in logger.filters):
        logger.addFilter(NeverStartedTrials())
