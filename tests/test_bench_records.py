"""Benchmark records: a finished search's tables kept so that a later machine reuses them instead of rerunning.

The experiment is a hand-made Ray folder (test_report.make_experiment) read by the real load_experiment; the records
are real Parquet files. When search_tables must not run a search, the space file is not a space: a search started
from it fails (BenchError), so reusing nothing cannot pass for reusing a record.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_report import make_experiment

from benchmarks import records as br
from benchmarks.common import BenchError, NotMeasured, search_tables
from benchmarks.search import opening_lines
from tuning.files import EXPERIMENT_META
from tuning.report.results import load_experiment


def finished_experiment(root: Path, name: str) -> Path:
    """A finished experiment folder ``root/name`` (make_experiment's, with finished_at set as search.py does)."""
    exp = make_experiment(root)
    meta = json.loads((exp / EXPERIMENT_META).read_text())
    meta.update(started_at="2026-11-30T10:00:00+00:00", finished_at="2026-11-30T10:45:00+00:00")
    (exp / EXPERIMENT_META).write_text(json.dumps(meta))
    target = root / name
    exp.rename(target)
    return target


@pytest.fixture()
def not_a_space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("this is not a search space\n")
    return path


def test_round_trip_keeps_the_tables(tmp_path: Path, not_a_space: Path) -> None:
    _, trials, history = load_experiment(finished_experiment(tmp_path, "exp"))
    key = br.search_key(not_a_space, 2700, 0, ["--max-iters", "3"])
    br.save_record(tmp_path / "rec", key, trials, history, {"git_rev": "abc1234def+dirty", "cpu": "AMD EPYC",
                                                            "cores": 2})
    record, why = br.load_record(tmp_path / "rec", key)
    assert record is not None, why
    pd.testing.assert_frame_equal(record.trials, trials)
    pd.testing.assert_frame_equal(record.history, history)
    assert record.describe().endswith("at rev abc1234 with uncommitted changes on AMD EPYC (2 cores)")
    assert "UTC" in record.describe()
    # a tuple of flags and an int budget are the same search as the list and the float that were saved
    same, _ = br.load_record(tmp_path / "rec", {**key, "budget_s": 2700, "search_args": ("--max-iters", "3")})
    assert same is not None


def test_a_record_of_another_search_is_not_used(tmp_path: Path, not_a_space: Path) -> None:
    _, trials, history = load_experiment(finished_experiment(tmp_path, "exp"))
    key = br.search_key(not_a_space, 600, 1, [])
    br.save_record(tmp_path / "rec", key, trials, history, {})
    for other in ({**key, "budget_s": 2700.0}, {**key, "seed": 2}, {**key, "search_args": ["--max-iters", "3"]}):
        record, why = br.load_record(tmp_path / "rec", other)
        assert record is None and "different search" in why
    not_a_space.write_text("this is another text\n")
    record, why = br.load_record(tmp_path / "rec", br.search_key(not_a_space, 600, 1, []))
    assert record is None and "space_sha256 differ" in why


def test_torn_or_edited_records_are_refused(tmp_path: Path, not_a_space: Path) -> None:
    _, trials, history = load_experiment(finished_experiment(tmp_path, "exp"))
    key = br.search_key(not_a_space, 600, 0, [])
    br.save_record(tmp_path / "rec", key, trials, history, {})
    # a crash between a table and record.json leaves a table that the (old) record.json does not vouch for
    history.iloc[:-1].to_parquet(tmp_path / "rec" / "history.parquet", index=False)
    record, why = br.load_record(tmp_path / "rec", key)
    assert record is None and "torn or edited" in why
    (tmp_path / "rec" / "history.parquet").unlink()
    assert br.load_record(tmp_path / "rec", key)[0] is None
    (tmp_path / "rec" / br.RECORD_FILE).write_text("{not json")
    record, why = br.load_record(tmp_path / "rec", key)
    assert record is None and "unreadable" in why
    assert br.load_record(tmp_path / "nothing", key) == (None, f"no record in {tmp_path / 'nothing'}")


def test_record_names_keep_different_searches_apart(not_a_space: Path) -> None:
    names = {br.record_name("random-s0", br.search_key(not_a_space, b, 0, a))
             for b in (600, 2700) for a in ([], ["--max-iters", "3"])}
    assert len(names) == 4 and all(n.startswith("random-s0-") for n in names)
    assert br.record_name("random-s0", br.search_key(not_a_space, 2700, 0, [])).startswith("random-s0-2700s-")


def test_search_tables_records_then_reuses_when_the_folder_is_gone(tmp_path: Path, not_a_space: Path) -> None:
    storage, records = tmp_path / "runs", tmp_path / "records"
    storage.mkdir()
    exp = finished_experiment(storage, "random-s0")
    _, want_trials, want_history = load_experiment(exp)
    logs: list[str] = []
    trials, history, source = search_tables(str(not_a_space), storage, records, "random-s0", 600, 0, log=logs.append)
    assert source is None and "reusing finished experiment" in logs[0] and "recorded into" in logs[-1]
    folder = next(records.iterdir())
    info = json.loads((folder / br.RECORD_FILE).read_text())
    assert info["finished_at"] == "2026-11-30T10:45:00+00:00" and info["experiment"] == str(exp.resolve())
    stamp = (folder / br.RECORD_FILE).stat().st_mtime_ns
    search_tables(str(not_a_space), storage, records, "random-s0", 600, 0, log=logs.append)
    assert (folder / br.RECORD_FILE).stat().st_mtime_ns == stamp  # unchanged tables: the record is not rewritten

    shutil.rmtree(exp)  # a new machine: the experiment folder is gone, the committed record is not
    logs.clear()
    trials, history, source = search_tables(str(not_a_space), storage, records, "random-s0", 600, 0, log=logs.append)
    pd.testing.assert_frame_equal(trials, want_trials)
    pd.testing.assert_frame_equal(history, want_history)
    assert source is not None and source.startswith("recorded ") and "reusing its record" in logs[0]
    opening = opening_lines("T", ["efficiency"], False, {"random-s0": source})
    assert opening[-2:] == [f"Taken from benchmark records, not run again: random-s0 ({source}).", ""]
    assert opening_lines("T", ["efficiency"], False, None) == opening[:-2]

    # --recorded-only: the recorded search is read, one with neither folder nor record is left out, not run
    assert search_tables(str(not_a_space), storage, records, "random-s0", 600, 0, log=logs.append, run=False)[2]
    with pytest.raises(NotMeasured, match="search random-s0: neither .* nor a record in"):
        search_tables(str(not_a_space), storage, records, "random-s0", 900, 0, log=logs.append, run=False)
    assert not (storage / "random-s0").exists()
    # another budget is another search: the record does not stand in for it, so the search runs (and fails here)
    with pytest.raises(BenchError, match="search random-s0 failed"):
        search_tables(str(not_a_space), storage, records, "random-s0", 900, 0, log=logs.append)
    assert any("no record in" in line for line in logs)
    shutil.rmtree(storage / "random-s0", ignore_errors=True)  # whatever the failed start left
    # --fresh ignores the record
    with pytest.raises(BenchError, match="search random-s0 failed"):
        search_tables(str(not_a_space), storage, records, "random-s0", 600, 0, fresh=True, log=logs.append)
