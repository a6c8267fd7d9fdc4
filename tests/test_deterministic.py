"""``--deterministic``: two searches with the same seed end alike, with real Ray, Optuna and trial processes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tuning.files import EXPERIMENT_META, TRIALS_TABLE
from tuning.tune import driver as search

SAMPLED = ["cell", "seq_len", "hidden_size", "lr"]  # the smoke space's params


def trials_in_order(exp: Path) -> pd.DataFrame:
    """The report's trials in the order the searcher proposed them; ids differ between runs.

    The order is the counter that starts each trial's ``experiment_tag`` in Ray's state file, whose list of trials
    is in no particular order.
    """
    state = json.loads(max(exp.glob("experiment_state-*.json"), key=lambda p: p.name).read_text())
    tags = {(t := json.loads(entry[0]))["trial_id"]: int(t["experiment_tag"].split("_", 1)[0])
            for entry in state["trial_data"]}
    order = sorted(tags, key=tags.__getitem__)
    trials = pd.read_parquet(exp / "report" / TRIALS_TABLE).set_index("trial_id")
    return trials.loc[order, [*SAMPLED, "status", "iteration", "val_loss"]].reset_index(drop=True)


@pytest.mark.usefixtures("ray_session")
def test_two_deterministic_searches_with_one_seed_end_alike(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for name in ("first", "second"):
        code = search.main(["--space", "smoke", "--seed", "0", "--deterministic", "--quiet", "--gpus-per-trial", "0",
                            "--storage-path", str(tmp_path), "--name", name])
        assert code == 0
        assert json.loads((tmp_path / name / EXPERIMENT_META).read_text())["deterministic"] is True
        runs.append(trials_in_order(tmp_path / name))
    pd.testing.assert_frame_equal(runs[0], runs[1], check_exact=True)
    assert len(runs[0]) == 4
    assert "progress:" not in capsys.readouterr().out  # --quiet prints no progress line
