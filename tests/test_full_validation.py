"""The end-of-search evaluation on real checkpoints of tiny trained models, in a folder laid out as Ray's."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tuning.engine import full_validation
from tuning.engine.config import TrainConfig
from tuning.engine.evaluate import evaluate_checkpoint
from tuning.engine.train import train
from tuning.files import CHECKPOINT_WEIGHTS, EVALUATION_DIR, EXPERIMENT_META, FULL_VALIDATION
from tuning.report.results import load_experiment


def _trial(experiment: Path, trial_id: str, **overrides: Any) -> tuple[Path, list[dict[str, Any]]]:
    """A trial folder as Ray leaves it (params.json, checkpoint_000000/) holding a tiny model trained on nextchar."""
    folder = experiment / trial_id
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(overrides))
    # val_max_chars: the trial validates on a prefix, as the shakespeare space does, so the two figures differ
    config = TrainConfig(**{**dict(corpus="nextchar", normalize_whitespace=True, seq_len=16, embed_dim=16,
                                   hidden_size=32, batch_size=16, chars_per_iter=2048, max_iters=2, lr=1e-2,
                                   sample_chars=5, threads=1, val_max_chars=40), **overrides})
    rows: list[dict[str, Any]] = []
    train(config, lambda metrics, _: rows.append(metrics), checkpoint_dir=folder / "checkpoint_000000")
    return folder / "checkpoint_000000", rows


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    exp = tmp_path_factory.mktemp("exp") / "e"
    gru, gru_rows = _trial(exp, "aaaa0001", cell="gru")
    lstm, _ = _trial(exp, "aaaa0002", cell="lstm", seq_len=12)
    damaged, _ = _trial(exp, "aaaa0003", cell="rnn")
    weights = damaged / CHECKPOINT_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])  # cut short, as by a full disk
    (exp / "aaaa0004").mkdir()
    (exp / "aaaa0004" / "params.json").write_text("{}")  # a trial stopped before its first checkpoint
    (exp / EXPERIMENT_META).write_text(json.dumps({"space": "test"}))
    return {"dir": exp, "gru": gru, "lstm": lstm, "gru_rows": gru_rows}


def _run(exp: Path, ids: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str, str]:
    out = io.StringIO()
    result = full_validation.evaluate_trials(exp, ids, threads=1, out=out)
    return result, out.getvalue(), capsys.readouterr().err


def test_figures_are_evaluate_checkpoints_and_bad_trials_are_skipped(
        experiment: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    exp = experiment["dir"]
    loads: list[tuple[Any, ...]] = []
    real_load = full_validation.load_corpus

    def counted_load(*args: Any) -> Any:  # the real loader, counted
        loads.append(args)
        return real_load(*args)

    monkeypatch.setattr(full_validation, "load_corpus", counted_load)
    threads = torch.get_num_threads()
    result, out, err = _run(exp, ["aaaa0001", "aaaa0002", "aaaa0003", "aaaa0004", "nosuch"], capsys)

    assert loads == [("nextchar", True)]  # once for every trial
    assert torch.get_num_threads() == threads
    assert out.startswith("evaluating 3 trials on the whole validation split (")
    assert "evaluated 2 of 3 on the whole validation split in " in out
    skipped = err.strip().splitlines()
    assert len(skipped) == 3, err
    assert any("aaaa0004" in line and "no checkpoint" in line for line in skipped)
    assert any("nosuch" in line and "no trial folder" in line for line in skipped)
    assert any("aaaa0003" in line and "damaged checkpoint" in line for line in skipped)

    written = json.loads((exp / EVALUATION_DIR / FULL_VALIDATION).read_text())
    assert written == json.loads(json.dumps(result))
    assert set(written["trials"]) == {"aaaa0001", "aaaa0002"}
    for trial_id, checkpoint in (("aaaa0001", experiment["gru"]), ("aaaa0002", experiment["lstm"])):
        expected = evaluate_checkpoint(checkpoint)
        got = written["trials"][trial_id]
        for key in ("val_loss", "val_acc_last", "iteration", "windows", "validation_chars"):
            assert got[key] == expected[key], (trial_id, key)
        assert got["checkpoint"] == f"{trial_id}/checkpoint_000000"
        assert got["iteration"] == 2 and got["windows"] * got["seq_len"] == got["validation_chars"] > 40
    # the whole split, not the 40-character prefix the trial reported during training
    assert written["trials"]["aaaa0001"]["val_loss"] != pytest.approx(experiment["gru_rows"][-1]["val_loss"])

    _, trials, _ = load_experiment(exp)
    row = trials.set_index("trial_id").loc["aaaa0001"]
    assert row["full_val_loss"] == written["trials"]["aaaa0001"]["val_loss"]
    assert row["full_val_acc_last"] == written["trials"]["aaaa0001"]["val_acc_last"]
    assert row["full_val_iteration"] == 2
    assert str(trials["full_val_iteration"].dtype) == "Int64" and str(trials["full_val_loss"].dtype) == "float64"
    assert trials.set_index("trial_id")["full_val_loss"].isna().to_dict() == {
        "aaaa0001": False, "aaaa0002": False, "aaaa0003": True, "aaaa0004": True}


def test_rerun_keeps_trials_evaluated_at_the_same_iteration(
        experiment: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    exp = experiment["dir"]
    path = exp / EVALUATION_DIR / FULL_VALIDATION
    _run(exp, ["aaaa0001", "aaaa0002"], capsys)
    data = json.loads(path.read_text())
    data["trials"]["aaaa0001"]["val_loss"] = 99.0  # marks an entry a new evaluation would overwrite
    data["trials"]["aaaa0002"]["val_loss"] = 99.0
    data["trials"]["aaaa0002"]["iteration"] = 1  # an earlier checkpoint's figures: evaluated again
    data["trials"]["elsewhere"] = {"val_loss": 1.0, "iteration": 3}  # another trial's entry is kept
    path.write_text(json.dumps(data))

    _, out, err = _run(exp, ["aaaa0001", "aaaa0002"], capsys)
    after = json.loads(path.read_text())["trials"]
    assert out.startswith("evaluating 1 trial on the whole validation split") and err == ""
    assert after["aaaa0001"]["val_loss"] == 99.0
    assert after["aaaa0002"]["val_loss"] == evaluate_checkpoint(experiment["lstm"])["val_loss"]
    assert after["aaaa0002"]["iteration"] == 2
    assert after["elsewhere"] == {"val_loss": 1.0, "iteration": 3}

    _, out, err = _run(exp, ["aaaa0001", "aaaa0002"], capsys)
    assert out == "" and err == ""  # nothing left to evaluate: no work, no lines
