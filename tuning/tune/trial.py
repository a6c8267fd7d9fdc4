"""The trial function Ray Tune runs, and the watchdog that ends a trial that stops reporting.

The function wraps the Ray-free trainer (:func:`tuning.engine.train.train`): Ray Tune's ``tune.report`` is its
``report`` callback.
"""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ray import tune

from tuning.engine.config import TrainConfig
from tuning.engine.data import Corpus
from tuning.engine.train import train

logger = logging.getLogger(__name__)


class TrialHung(RuntimeError):
    """Raised into a trial that went longer than its watchdog timeout without reporting."""


class Watchdog:
    """Ends a trial that stops reporting: Ray Tune has no per-trial timeout of its own.

    On timeout it raises :class:`TrialHung` in the training thread (so Ray records a readable error and
    applies ``max_failures``); if the thread is stuck in C code and cannot take the exception, the worker
    process exits after a grace period, which Ray also records as a trial failure.
    """

    def __init__(self, timeout_s: float, grace_s: float = 10.0) -> None:
        self.timeout_s, self.grace_s = timeout_s, grace_s
        self.last = time.monotonic()
        self.target = threading.get_ident()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="tuning-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()

    def beat(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self.done.wait(min(1.0, self.timeout_s / 4)):
            silent = time.monotonic() - self.last
            if silent < self.timeout_s:
                continue
            message = f"watchdog: no report for {silent:.0f} s (--trial-timeout-s {self.timeout_s:g})"
            logger.error(message)
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.target), ctypes.py_object(TrialHung))
            if not self.done.wait(self.grace_s):
                os._exit(3)  # the thread ignored the exception: stuck outside Python
            return


def trainable(config: dict[str, Any], corpus: Corpus, trial_timeout_s: float = 0.0) -> None:
    """One trial: the engine with Ray's report and checkpoint plumbing around it.

    ``corpus`` arrives through ``tune.with_parameters`` (Ray's object store), so worker nodes need neither
    the file nor internet access. ``trial_timeout_s`` > 0 arms a :class:`Watchdog`.
    """
    cfg = TrainConfig.from_dict(config)
    watchdog = Watchdog(trial_timeout_s) if trial_timeout_s > 0 else None

    with tempfile.TemporaryDirectory(prefix="tuning-trial-") as scratch:
        def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
            # Ray copies the directory into the experiment's storage before report() returns.
            checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
            tune.report(metrics, checkpoint=checkpoint)
            if watchdog:
                watchdog.beat()

        def run() -> None:
            restored = tune.get_checkpoint()
            if restored is None:
                train(cfg, report, corpus=corpus, checkpoint_dir=Path(scratch))
            else:
                with restored.as_directory() as resume_dir:
                    train(cfg, report, corpus=corpus, resume_from=Path(resume_dir), checkpoint_dir=Path(scratch))

        if watchdog is None:
            run()
            return
        try:
            with watchdog:
                run()
        except TrialHung:
            raise TrialHung(f"watchdog: no report within {trial_timeout_s:g} s (--trial-timeout-s); "
                            "trial ended") from None
