"""The run-folder contract and atomic writes.

Every file name the service writes is declared here once, so that the search driver, the reporter and the
tests agree on them (STYLE.md, point 7).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Inside an experiment directory (``<storage>/<name>/``).
EXPERIMENT_META = "tuning_experiment.json"  # our metadata: space, command, hardware, start/finish times
# Our schedulers' rung records. Not at the experiment's root: on a restore Ray copies the root's .json and .pkl files
# into its staging folder and uploads them back over the root on every state save, so a file there reverts to its
# pre-restore content (Ray 2.60, ExperimentStateManager.sync_down_experiment_state).
SCHEDULER_DIR = "scheduler"
PARETO_STATE = "pareto_asha.json"  # MO-ASHA's rung records
PROMOTION_STATE = "promotion_asha.json"  # promotion-type ASHA's rungs, promotions and waiting trials
# The end-of-search evaluation of chosen trials' checkpoints on the whole validation split (a subfolder for the
# same reason as SCHEDULER_DIR): {"trials": {trial_id: {"val_loss", "val_acc_last", "iteration", "windows", ...}}}.
EVALUATION_DIR = "evaluation"
FULL_VALIDATION = "full_validation.json"
# Inside a trial directory, written by Ray.
RESULT_FILE = "result.json"  # Ray's JsonLoggerCallback: one JSON object per reported result
# Inside a checkpoint directory.
CHECKPOINT_WEIGHTS = "model.pt"
CHECKPOINT_CONFIG = "config.json"
# Inside a report directory.
TRIALS_TABLE = "trials.parquet"
HISTORY_TABLE = "history.parquet"
PARETO_TABLE = "pareto.parquet"
REPORT_MD = "report.md"
PLOT_FRONT = "accuracy_vs_flops.png"
PLOT_CURVES = "learning_curves.png"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic on POSIX file systems, so a reader (or a crash) sees either the old file or the
    new one, never half of one. On failure the temporary file is removed and the old file is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, write)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
