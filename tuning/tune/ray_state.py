"""Before a restore: point every trial in Ray Tune's experiment state at a checkpoint that still exists.

Why this is needed. With ``CheckpointConfig(num_to_keep=1)`` Ray's driver deletes a trial's previous checkpoint
the moment it registers the next one (``_CheckpointManager.register_checkpoint``), but it writes the experiment
state file only afterwards (on its next loop step, or every ≥ 10 s) and copies it to storage in a background
thread (``ray/tune/execution/experiment_state.py``). A driver killed in that window leaves a state file whose
latest checkpoint of a trial is gone, while the newer one sits beside it; Ray 2.60's restore then fails that
trial on every retry ("Could not recover from checkpoint as it does not exist on storage anymore",
``Trainable.restore``) and the resumed search ends with the trial errored or unfinished. Ray once fell back
to the latest available checkpoint (ray-project/ray#29099, 2022); Ray 2.60, which we use, has no such fallback.
This module supplies it, for exactly the trials whose referenced checkpoint is missing.

Continuing from the newer checkpoint needs one more repair. The driver writes ``result.json`` (the learning
curve) into a local staging folder and copies it to storage together with the state file, so the rows reported
since the last copy die with the driver. Our checkpoints carry every metrics row up to their iteration
(:mod:`tuning.engine.checkpoint`); the rows ``result.json`` lacks are appended from there, and the resumed curve has no
hole.

A checkpoint can also be newer than every one the state names, and whole: the worker persists it to storage
before ``tune.report`` returns, and the driver registers it only when it processes that result. A driver
stopped in between (``SIGINT``: Ray ends its loop without waiting for results in flight; a kill) leaves a trial
whose state names an older checkpoint or none, and ``result.json`` without the rows, so the resumed trial
trained its first iterations again over its own checkpoint folders. The newest whole checkpoint of an unfinished
trial is taken instead, with its rows.

The state file's layout is Ray's: ``trial_data`` is a list of ``[trial_json, run_metadata_json]`` pairs, each
written with ``TuneFunctionEncoder`` (objects it cannot encode become cloudpickle blobs); we decode and
re-encode only the two fields we change (the trial's ``storage`` and its ``checkpoint_manager``) and leave
every other byte as Ray wrote it. Unpickling runs code from the blobs, as Ray's own restore of the same file
does a moment later; the file is this experiment's own state.

The search algorithm's state needs the same care (:func:`repair_trial_count`). ``TuneController.save_to_dir``
writes the state file, then the search algorithm's (``search_gen_state-*.json``: the count of trials created,
against ``num_samples``, and the concurrency limiter's live trials), and the background copy to storage moves the
files one by one, so a killed driver can leave the two from different moments. Ray's restore trusts both: a count
below the trials listed starts one trial too many, a count above starts too few, and a live trial the state file
never listed holds a concurrency slot for ever. The state file's trial list is taken as the truth.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tuning.files import CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS, RESULT_FILE
from tuning.report.results import parse_result_lines

CHECKPOINT_DIR = re.compile(r"checkpoint_(\d{6})")  # StorageContext._make_checkpoint_dir_name: f"checkpoint_{i:06d}"
CHECKPOINT_DIR_KEY = "checkpoint_dir_name"  # ray.train.constants.CHECKPOINT_DIR_NAME, added to a result with one
SEARCH_STATE = re.compile(r"search_gen_state-.+\.json")  # SearchGenerator.CKPT_FILE_TMPL, a cloudpickle file


@dataclass(frozen=True)
class Repair:
    trial_id: str
    missing: str | None  # the checkpoint directory the state named; None: it exists, only rows were restored
    now: str | None  # the one the trial continues from; None: no complete one left, the trial starts over
    rows: int = 0  # learning-curve rows restored into result.json from that checkpoint
    unregistered: bool = False  # ``now`` is newer than any checkpoint the state named (``missing`` is None)

    def describe(self) -> str:
        if self.unregistered:
            restored = f", {self.rows} result row(s) restored from it" if self.rows else ""
            return (f"resume: trial {self.trial_id}: continues from {self.now}, which the driver had not registered "
                    f"when it stopped{restored}")
        if self.missing is None:
            return (f"resume: trial {self.trial_id}: {self.rows} result row(s) restored from {self.now} (the driver "
                    "stopped before copying them)")
        then = f"continues from {self.now}" if self.now else "starts over (no complete checkpoint left)"
        restored = f", {self.rows} result row(s) restored from it" if self.rows else ""
        return (f"resume: trial {self.trial_id}: {self.missing} is gone (the driver stopped between deleting it "
                f"and saving its state); the trial {then}{restored}")


def checkpoint_index(name: str) -> int | None:
    match = CHECKPOINT_DIR.fullmatch(name)
    return int(match.group(1)) if match else None


def checkpoints_on_disk(fs: Any, trial_path: str) -> list[tuple[str, bool]]:
    """``(name, whole)`` for each checkpoint folder of a trial, oldest first; whole: it holds both of our files
    (a copy to storage cut short by the kill may hold one)."""
    import pyarrow.fs

    infos = fs.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    names = sorted((i.base_name for i in infos
                    if i.type == pyarrow.fs.FileType.Directory and checkpoint_index(i.base_name) is not None),
                   key=lambda n: checkpoint_index(n) or 0)
    found = []
    for name in names:
        files = fs.get_file_info([f"{trial_path}/{name}/{part}" for part in (CHECKPOINT_WEIGHTS, CHECKPOINT_CONFIG)])
        found.append((name, all(info.type == pyarrow.fs.FileType.File for info in files)))
    return found


def choose_checkpoint(on_disk: list[tuple[str, bool]]) -> str | None:
    """The newest whole checkpoint; None when there is none (the trial starts over)."""
    return next((name for name, whole in reversed(on_disk) if whole), None)


def _read_text(fs: Any, path: str) -> str | None:
    import pyarrow.fs

    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return str(stream.read().decode("utf-8"))


def restore_rows(fs: Any, trial_path: str, name: str, trial_id: str) -> tuple[dict[str, Any] | None, int]:
    """Append to the trial's ``result.json`` the rows checkpoint ``name`` holds past the last one logged.

    Returns the row of the checkpoint's own iteration (``None`` for a checkpoint without rows: written before
    checkpoints carried them) and how many rows were appended. Written whole through ``fs`` (temporary file and
    rename on a local folder), so a kill leaves the old file."""
    config = _read_text(fs, f"{trial_path}/{name}/{CHECKPOINT_CONFIG}")
    history = json.loads(config).get("history", []) if config else []
    if not history:
        return None, 0
    text = _read_text(fs, f"{trial_path}/{RESULT_FILE}") or ""
    logged = max((int(r.get("iteration", 0)) for r in parse_result_lines(text)), default=0)
    rows = [{**row, "trial_id": trial_id, "training_iteration": row["iteration"]} for row in history]
    rows[-1][CHECKPOINT_DIR_KEY] = name  # the last row is the checkpoint's own iteration
    missing = [row for row in rows if int(row["iteration"]) > logged]
    if missing:
        if text and not text.endswith("\n"):
            text += "\n"  # after a last line cut short, which readers skip
        text += "".join(json.dumps(row) + "\n" for row in missing)
        with fs.open_output_stream(f"{trial_path}/{RESULT_FILE}") as stream:
            stream.write(text.encode("utf-8"))
    return rows[-1], len(missing)


def _base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _missing(fs: Any, path: str) -> bool:
    import pyarrow.fs

    return bool(fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound)


def _decode(field: Any) -> Any:
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    return _loads_with_cloudpickle(json.dumps(field))


def _encode(obj: Any) -> Any:
    from ray.tune.utils.serialization import TuneFunctionEncoder

    return json.loads(json.dumps(obj, cls=TuneFunctionEncoder))


def _repair_trial(fs: Any, experiment_path: str, trial_json: str, meta_json: str) -> tuple[str, str, Repair] | None:
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    meta = json.loads(meta_json)
    manager = _decode(meta["checkpoint_manager"])
    latest = manager.latest_checkpoint_result
    trial = json.loads(trial_json)
    finished = trial.get("status") in ("TERMINATED", "ERROR")  # Trial.TERMINATED / Trial.ERROR
    if latest is None and finished:
        return None
    storage = _decode(trial["storage"])
    # The trial's folder under *this* experiment path: Ray rewrites the stored prefix on restore when the
    # experiment has moved (Trial.set_storage), so only the trial folder's name is taken from the state.
    trial_path = f"{experiment_path}/{storage.trial_dir_name}"
    trial_id = str(trial.get("trial_id", storage.trial_dir_name))
    on_disk = checkpoints_on_disk(fs, trial_path)
    name = choose_checkpoint(on_disk)
    named = None if latest is None else _base_name(latest.checkpoint.path)
    missing = None
    if latest is not None and not _missing(fs, latest.checkpoint.path):
        if finished or name is None or (checkpoint_index(name) or 0) <= (checkpoint_index(str(named)) or 0):
            # The state is sound, but the rows up to its checkpoint may have died in the driver's staging folder
            # (a trial's first result.json copy can come after the state file that names its checkpoint).
            _, rows = restore_rows(fs, trial_path, str(named), trial_id)
            return (trial_json, meta_json, Repair(trial_id, None, named, rows)) if rows else None
    elif latest is not None:
        missing = named
    elif name is None:
        return None  # no checkpoint named, none whole on storage: the trial starts over, as Ray would start it
    chosen_index = -1 if name is None else (checkpoint_index(name) or 0)
    # Folders past the chosen one are partial copies and in no state: the trial rewrites them, under the same
    # names; their leftovers would otherwise mix with the new files.
    for other, _ in on_disk:
        if (checkpoint_index(other) or 0) > chosen_index:
            fs.delete_dir(f"{trial_path}/{other}")
    own, rows = restore_rows(fs, trial_path, name, trial_id) if name else (None, 0)

    kept = [r for r in manager._checkpoint_results
            if r is not latest and not _missing(fs, r.checkpoint.path)]
    if latest is not None and missing is None:
        kept.append(latest)  # named and whole: Ray deletes it when the trial registers its next checkpoint
    if name is None:
        manager._latest_checkpoint_result = None
    else:
        # Ray's restore reads the checkpoint through the state's file system object (tuning.tune.atomic_fs on a local
        # folder); a checkpoint the state never named takes the trial's storage file system.
        where_fs = latest.checkpoint.filesystem if latest is not None else storage.storage_filesystem
        where = Checkpoint(path=f"{trial_path}/{name}", filesystem=where_fs)
        chosen = _TrainingResult(checkpoint=where, metrics=own or (latest.metrics if latest is not None else {}))
        kept = [r for r in kept if _base_name(r.checkpoint.path) != name] + [chosen]
        manager._latest_checkpoint_result = chosen
    manager._checkpoint_results = kept
    # The worker names its next checkpoint from this index plus one (StorageContext._update_checkpoint_index):
    # the first free name after the chosen one.
    storage.current_checkpoint_index = chosen_index
    meta["checkpoint_manager"] = _encode(manager)
    trial["storage"] = _encode(storage)
    repair = Repair(trial_id, missing, name, rows, unregistered=latest is None or missing is None)
    return json.dumps(trial, indent=2), json.dumps(meta, indent=2), repair


def _newest_state(experiment: str, filesystem: Any) -> tuple[Any, str, dict[str, Any] | None, str | None]:
    """The experiment's file system, its path there, its newest experiment state (decoded) and that file's path;
    no state and no path when the experiment has none yet."""
    from ray.train._internal.storage import get_fs_and_path
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

    fs, experiment_path = get_fs_and_path(experiment, filesystem)
    state_path = _find_newest_experiment_checkpoint(experiment_path, fs=fs)
    text = _read_text(fs, state_path) if state_path is not None else None
    return fs, experiment_path, (json.loads(text) if text is not None else None), state_path


def repair_checkpoint_references(experiment: str, filesystem: Any = None) -> list[Repair]:
    """Rewrite the newest experiment state of ``experiment`` (a path or URI, on ``filesystem`` when given) so
    that no trial names a deleted checkpoint, and append to each trial's result.json the rows its checkpoint holds
    past the last one logged. Returns what was changed; writes nothing when nothing was."""
    fs, experiment_path, state, state_path = _newest_state(experiment, filesystem)
    if state is None or state_path is None:
        return []
    repairs = []
    for pair in state.get("trial_data", []):
        fixed = _repair_trial(fs, experiment_path, pair[0], pair[1])
        if fixed is not None:
            pair[0], pair[1], repair = fixed
            repairs.append(repair)
    if repairs:
        # Through the experiment's own file system: a local folder's is tuning.tune.atomic_fs (temporary file, then
        # rename); an object store's single PUT is all-or-nothing. A kill here leaves the old state, not half.
        with fs.open_output_stream(state_path) as stream:
            stream.write(json.dumps(state, indent=2).encode("utf-8"))
    return repairs


def _trial_ids(state: dict[str, Any]) -> list[str]:
    ids = []
    for trial_json, _ in state.get("trial_data", []):
        trial_id = json.loads(trial_json).get("trial_id")
        if isinstance(trial_id, str):
            ids.append(trial_id)
    return ids


def repair_trial_count(experiment: str, filesystem: Any = None) -> str | None:
    """Make the newest search-algorithm state of ``experiment`` agree with its newest experiment state: the count
    of trials created is the number of trials listed, and no concurrency limiter holds a trial that is not listed
    (see the module's docstring). Returns what was changed, or None; writes nothing when they agree."""
    import pyarrow.fs
    from ray import cloudpickle

    fs, experiment_path, state, _ = _newest_state(experiment, filesystem)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(experiment_path, allow_not_found=True))
    names = sorted(i.base_name for i in infos
                   if i.type == pyarrow.fs.FileType.File and SEARCH_STATE.fullmatch(i.base_name))
    if state is None or not names:
        return None
    listed = _trial_ids(state)
    search_path = f"{experiment_path}/{names[-1]}"  # the one Ray restores: _load_newest_checkpoint takes the max
    with fs.open_input_stream(search_path) as stream:
        search = cloudpickle.loads(stream.read())
    changes = []
    if int(search.get("counter", len(listed))) != len(listed):
        changes.append(f"trials created {search['counter']} -> {len(listed)}")
        search["counter"] = len(listed)
    for key, wrapper in search.items():
        live = wrapper.get("live_trials") if key.startswith("name:") and isinstance(wrapper, dict) else None
        if not isinstance(live, set):
            continue
        if lost := sorted(live - set(listed)):
            live.difference_update(lost)
            if isinstance(wrapper.get("num_unfinished_live_trials"), int):
                wrapper["num_unfinished_live_trials"] = max(0, wrapper["num_unfinished_live_trials"] - len(lost))
            changes.append(f"{key[5:]} no longer holds a slot for unlisted trial(s) {', '.join(lost)}")
    if not changes:
        return None
    with fs.open_output_stream(search_path) as stream:  # whole, as in repair_checkpoint_references
        stream.write(cloudpickle.dumps(search))
    return ("resume: the driver stopped between saving its trial list and its search state; search state "
            f"repaired ({'; '.join(changes)})")


BASIC_VARIANT_STATE = re.compile(r"basic-variant-state-.+\.json")  # BasicVariantGenerator.CKPT_FILE_TMPL (grids)


def set_search_plan(experiment: str, filesystem: Any = None, num_samples: int | None = None,
                    max_concurrent: int | None = None) -> list[str]:
    """Give the newest search-algorithm state of ``experiment`` this session's trial count and concurrency, and
    reopen a search that Ray's time-budget stopper closed. Returns what changed; writes nothing when nothing did.

    Ray restores both numbers from this file (``SearchGenerator.set_state``, ``ConcurrencyLimiter.set_state``,
    ``BasicVariantGenerator.set_state``) and ignores the restored tuner's settings for them, so a resumed search
    changes them here. ``finished`` is set by ``TuneController._stop_experiment_if_needed`` when a stopper ends
    the run (a search ended by ``time_budget_s`` before :mod:`tuning.tune.resume` replaced it); the trial count
    decides alone whether more trials are sampled.
    """
    import pyarrow.fs
    from ray import cloudpickle

    fs, experiment_path, _, _ = _newest_state(experiment, filesystem)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(experiment_path, allow_not_found=True))
    changes: list[str] = []
    for pattern in (SEARCH_STATE, BASIC_VARIANT_STATE):
        names = sorted(i.base_name for i in infos
                       if i.type == pyarrow.fs.FileType.File and pattern.fullmatch(i.base_name))
        if not names:
            continue
        path = f"{experiment_path}/{names[-1]}"  # the one Ray restores
        with fs.open_input_stream(path) as stream:
            state = cloudpickle.loads(stream.read())
        before = len(changes)
        if pattern is SEARCH_STATE:
            if state.get("finished"):
                state["finished"] = False
                changes.append("search reopened")
            if num_samples is not None and state.get("total_samples") != num_samples:
                changes.append(f"trials {state.get('total_samples')} -> {num_samples}")
                state["total_samples"] = num_samples
            limiters = [w for k, w in state.items() if k.startswith("name:") and isinstance(w, dict)
                        and "max_concurrent" in w]
        else:
            limiters = [state]
        for limiter in limiters:
            if max_concurrent is not None and limiter.get("max_concurrent") != max_concurrent:
                changes.append(f"trials at once {limiter.get('max_concurrent')} -> {max_concurrent}")
                limiter["max_concurrent"] = max_concurrent
                if "fixed" in limiter:  # tuning.tune.searcher.SlotLimiter: a fixed limit, no longer the cluster's slots
                    limiter["fixed"] = max_concurrent
        if len(changes) > before:
            with fs.open_output_stream(path) as stream:  # whole, as in repair_checkpoint_references
                stream.write(cloudpickle.dumps(state))
    return changes
