"""Chosen trials' checkpoints evaluated on the whole validation split, at the end of a search.

During a search each trial validates on a prefix of the split (``val_max_chars``) to save time, and a prefix
scores easier than the whole split; the figures to quote for the trials a report shows come from this step. It
writes ``EXPERIMENT_DIR/evaluation/full_validation.json``::

    {"trials": {trial_id: {"val_loss": float, "val_acc_last": float, "iteration": int, "windows": int,
                           "validation_chars": int, "checkpoint": str, ...}}}

``checkpoint`` is relative to the experiment directory (the step may run on a temporary copy of a bucket's
experiment). No Ray here: the driver calls it after the trials end, and it runs as well on a copied experiment.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import torch

from tuning.engine.config import TrainConfig
from tuning.engine.data import Corpus, load_corpus
from tuning.engine.evaluate import evaluate_checkpoint
from tuning.files import CHECKPOINT_CONFIG, EVALUATION_DIR, FULL_VALIDATION, atomic_write_json
from tuning.machine import usable_cpus
from tuning.report.results import read_full_validation, trial_dirs


def latest_checkpoint(trial_dir: Path) -> Path | None:
    """The trial's newest ``checkpoint_*`` folder (Ray numbers them zero-padded, so by name), or None."""
    found = sorted(p for p in Path(trial_dir).glob("checkpoint_*") if p.is_dir())
    return found[-1] if found else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def evaluate_trials(experiment_dir: Path, trial_ids: Iterable[str], *, threads: int | None = None,
                    out: TextIO | None = None) -> dict[str, Any]:
    """Evaluate each trial's latest checkpoint on the whole validation split; merge the figures into the file.

    A trial already in the file at its checkpoint's iteration is not evaluated again (a resumed search repeats
    this step). A trial without a checkpoint, or with one that cannot be read or evaluated, is skipped with one
    line on stderr naming it: one damaged trial must not cost the others their figures. Runs on the CPU with
    ``threads`` torch threads (default: every core this process may use; the trials are done by then), and
    puts the previous thread count back. Progress goes to ``out`` (default stdout). Returns the file's content.
    """
    experiment_dir = Path(experiment_dir)
    out = sys.stdout if out is None else out
    path = experiment_dir / EVALUATION_DIR / FULL_VALIDATION
    done = read_full_validation(experiment_dir)
    folders = trial_dirs(experiment_dir)

    def skip(trial_id: str, why: str) -> None:
        print(f"whole-split evaluation: skipped trial {trial_id}: {why}", file=sys.stderr)

    todo: list[tuple[str, Path, tuple[str, bool]]] = []
    for trial_id in dict.fromkeys(trial_ids):  # once each, in the order given
        folder = folders.get(trial_id)
        checkpoint = latest_checkpoint(folder) if folder is not None else None
        if checkpoint is None:
            skip(trial_id, "no trial folder" if folder is None else f"no checkpoint in {folder}")
            continue
        try:  # the small JSON only: enough to tell a checkpoint evaluated before and to pick the corpus
            saved = json.loads((checkpoint / CHECKPOINT_CONFIG).read_text(encoding="utf-8"))
            iteration = int(saved["iteration"])
            config = TrainConfig.from_dict(saved["train_config"])
        except Exception as exc:  # whatever is wrong with it, this trial only is skipped
            skip(trial_id, f"damaged checkpoint {checkpoint} ({_first_line(exc)})")
            continue
        if done.get(trial_id, {}).get("iteration") == iteration:
            continue
        todo.append((trial_id, checkpoint, (config.corpus, config.normalize_whitespace)))

    corpora: dict[tuple[str, bool], Corpus] = {}
    for trial_id, _, key in todo:  # each corpus once for all trials, not once per trial
        if key not in corpora:
            try:
                corpora[key] = load_corpus(*key)
            except Exception as exc:  # its trials are skipped below, one line each
                skip(trial_id, f"corpus {key[0]} ({_first_line(exc)})")
    todo = [item for item in todo if item[2] in corpora]
    if not todo:
        if not path.is_file():  # the file says the step ran, even with nothing to evaluate
            atomic_write_json(path, {"trials": done})
        return {"trials": done}

    sizes = sorted({f"{len(c.val_ids):,}" for c in corpora.values()})
    print(f"evaluating {len(todo)} trial{'s' if len(todo) != 1 else ''} on the whole validation split "
          f"({' / '.join(sizes)} characters)…", file=out, flush=True)
    started = time.perf_counter()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or usable_cpus())
    try:
        evaluated = 0
        for trial_id, checkpoint, key in todo:
            begun = time.perf_counter()
            try:
                metrics = evaluate_checkpoint(checkpoint, corpus=corpora[key])
            except Exception as exc:  # as above: the other trials still get their figures
                skip(trial_id, f"damaged checkpoint {checkpoint} ({_first_line(exc)})")
                continue
            done[trial_id] = {**metrics, "checkpoint": str(checkpoint.relative_to(experiment_dir)),
                              "eval_time_s": time.perf_counter() - begun}
            evaluated += 1
            atomic_write_json(path, {"trials": done})  # after each: a killed driver keeps the ones finished
    finally:
        torch.set_num_threads(previous)
    if not path.is_file():
        atomic_write_json(path, {"trials": done})
    print(f"evaluated {evaluated} of {len(todo)} on the whole validation split in "
          f"{time.perf_counter() - started:.1f} s", file=out, flush=True)
    return {"trials": done}
