"""The experiment state a killed driver leaves, made with Ray's own Trial and checkpoint manager, then repaired.

No Ray runtime is needed: the state file is written the way ``TuneController.save_to_dir`` writes it, from a
real ``Trial`` whose real ``_CheckpointManager`` (num_to_keep=1) deletes the superseded checkpoint itself, and
``result.json`` reaches storage only with the state, as the driver's staging copy does.
The end-to-end case (a real driver killed, then ``--resume``) is in ``tests/test_search.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuning.files import CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS, RESULT_FILE
from tuning.report.results import parse_result_lines
from tuning.tune.ray_state import (
    checkpoints_on_disk,
    choose_checkpoint,
    repair_checkpoint_references,
    repair_trial_count,
)

STATE_FILE = "experiment_state-2026-11-29_12-00-00.json"  # TuneController.CKPT_FILE_TMPL


def _checkpoint(trial_dir: Path, index: int, whole: bool = True, history: list[dict[str, Any]] | None = None) -> Path:
    """A checkpoint folder as the worker persists it; ``whole=False``: its copy was cut short after one file."""
    folder = trial_dir / f"checkpoint_{index:06d}"
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_WEIGHTS).write_bytes(b"weights")
    if whole:
        (folder / CHECKPOINT_CONFIG).write_text(json.dumps({"iteration": len(history or []), "history": history or []}))
    return folder


class Experiment:
    """One trial of an experiment under ``tmp_path/exp``, checkpointing like a Ray Tune trial."""

    def __init__(self, tmp_path: Path) -> None:
        import pyarrow.fs
        from ray.train import CheckpointConfig
        from ray.train._internal.storage import StorageContext
        from ray.tune.execution.placement_groups import PlacementGroupFactory
        from ray.tune.experiment.trial import Trial

        self.fs = pyarrow.fs.LocalFileSystem()
        self.exp = tmp_path / "exp"
        storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="t0000001",
                                 storage_filesystem=self.fs)
        self.trial = Trial("trainable", config={"seed": 1}, trial_id="t0000001", storage=storage, stub=True,
                           checkpoint_config=CheckpointConfig(num_to_keep=1),  # type: ignore[arg-type]
                           placement_group_factory=PlacementGroupFactory([{"CPU": 1}]))
        self.trial.create_placement_group_factory()  # what TuneController does before a trial starts
        self.dir = self.exp / "t0000001"
        self.dir.mkdir(parents=True)
        self.history: list[dict[str, Any]] = []  # what the trainer puts in each checkpoint
        self.staged: list[dict[str, Any]] = []  # result.json in the driver's staging folder

    def report(self, whole: bool = True) -> None:
        """The next iteration's result with a checkpoint: the worker persists it, the driver logs the row (to
        its staging folder) and registers the checkpoint, which deletes the one before."""
        from ray.train import Checkpoint
        from ray.train._internal.session import _TrainingResult

        assert self.trial.storage is not None
        iteration = len(self.history) + 1
        self.history.append({"iteration": iteration, "val_loss": 4.0 / iteration, "timestamp": 1000 + iteration})
        index = self.trial.storage.current_checkpoint_index + 1  # what the worker's StorageContext names it
        folder = _checkpoint(self.dir, index, whole, list(self.history))
        metrics = {**self.history[-1], "training_iteration": iteration, "checkpoint_dir_name": folder.name}
        self.staged.append(metrics)
        self.trial.on_checkpoint(_TrainingResult(checkpoint=Checkpoint(str(folder), filesystem=self.fs),
                                                 metrics=metrics))

    def save_state(self) -> None:
        """The driver's snapshot: the state file and, copied with it, result.json."""
        state = {"trial_data": [list(self.trial.get_json_state())], "runner_data": {}, "stats": {"start_time": 0}}
        (self.exp / STATE_FILE).write_text(json.dumps(state, indent=2))
        (self.dir / RESULT_FILE).write_text("".join(json.dumps(row) + "\n" for row in self.staged))

    def restored(self) -> Any:
        """The trial as ``TuneController._restore_trials`` reads it back."""
        from ray.tune.experiment.trial import Trial

        trial_json, meta_json = json.loads((self.exp / STATE_FILE).read_text())["trial_data"][0]
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(meta_json)
        return trial

    def curve(self) -> list[int]:
        """The iterations in result.json, in file order, as tuning.report.results reads them."""
        return [row["iteration"] for row in parse_result_lines((self.dir / RESULT_FILE).read_text())]


def killed_after_second_checkpoint(tmp_path: Path) -> Experiment:
    """The race in its smallest form: the snapshot names checkpoint_000000; checkpoint_000001 was registered
    (deleting checkpoint_000000) and its row logged only to staging; then the driver died."""
    e = Experiment(tmp_path)
    e.report()
    e.save_state()
    e.report()
    return e


def test_killed_between_delete_and_save_continues_from_the_newer_checkpoint(tmp_path: Path) -> None:
    e = Experiment(tmp_path)
    e.report()
    e.report()
    e.save_state()  # the last snapshot: latest checkpoint_000001, result.json rows 1-2
    e.report()  # checkpoint_000002 registered, checkpoint_000001 deleted by Ray; then the driver is killed
    assert not (e.dir / "checkpoint_000001").exists() and (e.dir / "checkpoint_000002").exists()
    assert e.restored().checkpoint.path.endswith("checkpoint_000001")  # what Ray would fail to restore

    repairs = repair_checkpoint_references(str(e.exp))

    assert [(r.trial_id, r.missing, r.now, r.rows) for r in repairs] == [
        ("t0000001", "checkpoint_000001", "checkpoint_000002", 1)]
    assert "checkpoint_000001 is gone" in repairs[0].describe() and "\n" not in repairs[0].describe()
    assert e.curve() == [1, 2, 3]  # the row the killed driver never copied, restored from the checkpoint
    trial = e.restored()
    assert trial.checkpoint.path == str(e.dir / "checkpoint_000002")
    restoring = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    assert restoring.metrics["iteration"] == 3 and restoring.metrics["checkpoint_dir_name"] == "checkpoint_000002"
    assert trial.storage.current_checkpoint_index == 2  # the next checkpoint is checkpoint_000003, a new folder
    # the resumed trial registers its next checkpoint: Ray keeps it and deletes the repaired one
    e.trial = trial
    e.report()
    assert sorted(p.name for p in e.dir.glob("checkpoint_*")) == ["checkpoint_000003"]


def _persist_unregistered(e: Experiment) -> None:
    """The next checkpoint as the worker persists it before ``tune.report`` returns; its result never reaches the
    driver's books (still in flight when a SIGINT ended Ray's loop, or when a kill came)."""
    assert e.trial.storage is not None
    iteration = len(e.history) + 1
    e.history.append({"iteration": iteration, "val_loss": 4.0 / iteration, "timestamp": 1000 + iteration})
    _checkpoint(e.dir, e.trial.storage.current_checkpoint_index + 1, True, list(e.history))


@pytest.mark.parametrize("registered", [0, 1])
def test_a_newer_checkpoint_the_driver_never_registered_is_taken(tmp_path: Path, registered: int) -> None:
    """Before the fix the resumed trial went on from the checkpoint the state named, or from nothing (training
    iteration 1 again over its own checkpoint_000000), and its result.json lacked the rows."""
    e = Experiment(tmp_path)
    for _ in range(registered):
        e.report()
    e.save_state()
    _persist_unregistered(e)
    repairs = repair_checkpoint_references(str(e.exp))
    newest = f"checkpoint_{registered:06d}"
    assert [(r.missing, r.now, r.rows, r.unregistered) for r in repairs] == [(None, newest, 1, True)]
    assert "had not registered" in repairs[0].describe()
    assert e.curve() == list(range(1, registered + 2))
    trial = e.restored()
    assert trial.checkpoint.path == str(e.dir / newest)
    assert trial.run_metadata.checkpoint_manager.latest_checkpoint_result.metrics["iteration"] == registered + 1
    assert trial.storage.current_checkpoint_index == registered
    assert repair_checkpoint_references(str(e.exp)) == []
    e.trial = trial
    e.report()  # the resumed trial's next checkpoint is a new folder; Ray drops the older ones
    assert f"checkpoint_{registered + 1:06d}" in {p.name for p in e.dir.glob("checkpoint_*")}


def test_a_second_repair_finds_nothing_to_do(tmp_path: Path) -> None:
    e = killed_after_second_checkpoint(tmp_path)
    assert len(repair_checkpoint_references(str(e.exp))) == 1
    before = (e.exp / STATE_FILE).read_bytes(), e.curve()
    assert repair_checkpoint_references(str(e.exp)) == []
    assert ((e.exp / STATE_FILE).read_bytes(), e.curve()) == before


def test_nothing_missing_leaves_the_state_file_untouched(tmp_path: Path) -> None:
    e = Experiment(tmp_path)
    e.report()
    e.report()
    e.save_state()
    _checkpoint(e.dir, 2, whole=False)  # persisted in part, never registered: checkpoint_000001 still exists
    before = (e.exp / STATE_FILE).read_bytes()
    assert repair_checkpoint_references(str(e.exp)) == []
    assert (e.exp / STATE_FILE).read_bytes() == before


def test_rows_lost_before_a_sound_state_are_restored(tmp_path: Path) -> None:
    # the state names an existing checkpoint, but the trial's rows never left the driver's staging folder (seen
    # in the promotion-ASHA kill test: a trial's first result.json copy came after the state naming its checkpoint)
    e = Experiment(tmp_path)
    e.report()
    e.report()
    e.save_state()
    (e.dir / RESULT_FILE).unlink()
    state = (e.exp / STATE_FILE).read_text()
    repairs = repair_checkpoint_references(str(e.exp))
    assert [(r.missing, r.now, r.rows) for r in repairs] == [(None, "checkpoint_000001", 2)]
    assert "2 result row(s) restored from checkpoint_000001" in repairs[0].describe()
    assert e.curve() == [1, 2]
    assert json.loads((e.exp / STATE_FILE).read_text()) == json.loads(state)  # nothing in the state changed
    assert e.restored().checkpoint.path.endswith("checkpoint_000001")
    assert repair_checkpoint_references(str(e.exp)) == []


def test_no_complete_checkpoint_left_starts_the_trial_over(tmp_path: Path) -> None:
    e = Experiment(tmp_path)
    e.report()
    e.save_state()
    e.report(whole=False)  # registered, although its copy to storage was cut short: one file of two
    repairs = repair_checkpoint_references(str(e.exp))
    assert [(r.missing, r.now, r.rows) for r in repairs] == [("checkpoint_000000", None, 0)]
    assert "starts over" in repairs[0].describe()
    trial = e.restored()
    assert trial.checkpoint is None
    assert not list(e.dir.glob("checkpoint_*"))  # the partial folder went: the trial rewrites it from scratch
    assert trial.storage.current_checkpoint_index == -1  # its first checkpoint is checkpoint_000000 again


def test_a_partial_newer_checkpoint_is_removed(tmp_path: Path) -> None:
    e = killed_after_second_checkpoint(tmp_path)
    _checkpoint(e.dir, 2, whole=False)  # the next copy, cut short by the kill
    repairs = repair_checkpoint_references(str(e.exp))
    assert [(r.missing, r.now, r.rows) for r in repairs] == [("checkpoint_000000", "checkpoint_000001", 1)]
    assert sorted(p.name for p in e.dir.glob("checkpoint_*")) == ["checkpoint_000001"]
    assert e.restored().storage.current_checkpoint_index == 1
    assert e.curve() == [1, 2]


def test_a_checkpoint_without_rows_still_resumes(tmp_path: Path) -> None:
    # checkpoints written before they carried their rows: the trial goes on, its curve keeps the hole
    e = killed_after_second_checkpoint(tmp_path)
    (e.dir / "checkpoint_000001" / CHECKPOINT_CONFIG).write_text("{}")
    repairs = repair_checkpoint_references(str(e.exp))
    assert [(r.now, r.rows) for r in repairs] == [("checkpoint_000001", 0)]
    assert e.restored().checkpoint.path.endswith("checkpoint_000001")
    assert e.curve() == [1]


def test_rows_follow_a_last_line_cut_short(tmp_path: Path) -> None:
    e = killed_after_second_checkpoint(tmp_path)
    with (e.dir / RESULT_FILE).open("a") as f:
        f.write('{"iteration": 2, "val_lo')  # a writer killed mid-line
    repair_checkpoint_references(str(e.exp))
    lines = (e.dir / RESULT_FILE).read_text().splitlines()
    assert lines[-2] == '{"iteration": 2, "val_lo' and json.loads(lines[-1])["iteration"] == 2
    assert e.curve() == [1, 2]


def test_a_uri_experiment_is_repaired_through_its_file_system(tmp_path: Path) -> None:
    # --storage-path s3://… takes the same path: pyarrow's file system for the URI, paths without the scheme
    e = killed_after_second_checkpoint(tmp_path)
    repairs = repair_checkpoint_references(f"file://{e.exp}")
    assert [(r.missing, r.now, r.rows) for r in repairs] == [("checkpoint_000000", "checkpoint_000001", 1)]
    assert e.restored().checkpoint.path == str(e.dir / "checkpoint_000001")
    assert e.curve() == [1, 2]


def test_an_experiment_without_state_is_left_alone(tmp_path: Path) -> None:
    assert repair_checkpoint_references(str(tmp_path)) == []


def test_checkpoints_on_disk(tmp_path: Path) -> None:
    import pyarrow.fs

    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 2, whole=False)
    (tmp_path / "checkpoint_tmp").mkdir()  # not Ray's name pattern: ignored
    (tmp_path / "checkpoint_000003").write_text("")  # a file, not a folder
    fs = pyarrow.fs.LocalFileSystem()
    assert checkpoints_on_disk(fs, str(tmp_path)) == [("checkpoint_000002", False), ("checkpoint_000010", True)]
    assert checkpoints_on_disk(fs, str(tmp_path / "absent")) == []


@pytest.mark.parametrize(("on_disk", "expected"), [
    ([], None),
    ([("c1", True), ("c2", True)], "c2"),
    ([("c1", True), ("c2", False)], "c1"),  # c2 is partial
    ([("c1", False)], None),
])
def test_choose_checkpoint(on_disk: list[tuple[str, bool]], expected: str | None) -> None:
    assert choose_checkpoint(on_disk) == expected


def _search_algorithm(max_concurrent: int = 3) -> Any:
    """Ray's SearchGenerator around Ray's ConcurrencyLimiter and our Optuna searcher, as a search builds them."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.search_generator import SearchGenerator

    from tuning.spec.space import load_space
    from tuning.tune.searcher import make_searcher

    return SearchGenerator(ConcurrencyLimiter(make_searcher(load_space("smoke"), 0), max_concurrent=max_concurrent))


def _saved_apart(exp: Path, listed: list[str], proposed: list[str]) -> None:
    """What a driver killed mid-save leaves: a state file listing ``listed`` beside a search state that had
    created (and holds live) ``proposed``, each written as TuneController.save_to_dir writes it."""
    exp.mkdir(parents=True, exist_ok=True)
    generator = _search_algorithm()
    generator._total_samples = 3  # num_samples
    for trial_id in proposed:
        assert generator.searcher.suggest(trial_id)
        generator._counter += 1  # SearchGenerator.create_trial's count
    generator.save_to_dir(str(exp), session_str="2026-11-29_12-00-00")
    trial_data = [[json.dumps({"trial_id": trial_id}), "{}"] for trial_id in listed]
    (exp / STATE_FILE).write_text(json.dumps({"trial_data": trial_data, "runner_data": {}, "stats": {}}))


def _restored_search(exp: Path) -> Any:
    generator = _search_algorithm()
    generator.restore_from_dir(str(exp))
    return generator


def test_a_trial_listed_but_not_counted_is_counted(tmp_path: Path) -> None:
    # search state saved before the third trial was created, state file after: Ray would create a fourth
    _saved_apart(tmp_path, listed=["a", "b", "c"], proposed=["a", "b"])
    assert _restored_search(tmp_path)._counter == 2  # what Ray's restore would read
    note = repair_trial_count(str(tmp_path))
    assert note is not None and "trials created 2 -> 3" in note and "\n" not in note
    restored = _restored_search(tmp_path)
    assert restored._counter == 3 and restored.is_finished()
    assert restored.searcher.live_trials == {"a", "b"}  # c is not held: its end frees no slot it never took


def test_a_trial_counted_but_not_listed_frees_its_count_and_slot(tmp_path: Path) -> None:
    # the copy to storage took the new search state but not the new state file: c is lost, and would hold a slot
    _saved_apart(tmp_path, listed=["a", "b"], proposed=["a", "b", "c"])
    note = repair_trial_count(f"file://{tmp_path}")  # through the experiment's file system, as --storage-path URIs
    assert note is not None and "trials created 3 -> 2" in note and "unlisted trial(s) c" in note
    restored = _restored_search(tmp_path)
    assert restored._counter == 2 and not restored.is_finished()  # Ray creates the third trial again
    assert restored.searcher.live_trials == {"a", "b"} and restored.searcher.num_unfinished_live_trials == 2
    assert repair_trial_count(str(tmp_path)) is None  # repaired once, then they agree


def test_agreeing_states_are_left_untouched(tmp_path: Path) -> None:
    _saved_apart(tmp_path, listed=["a", "b"], proposed=["a", "b"])
    search_file = next(tmp_path.glob("search_gen_state-*.json"))
    before = search_file.read_bytes()
    assert repair_trial_count(str(tmp_path)) is None
    assert search_file.read_bytes() == before
    assert repair_trial_count(str(tmp_path / "none")) is None  # no experiment there
