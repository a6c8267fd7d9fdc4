"""Damaged checkpoints and experiment folders through the real CLIs: one line and exit status 2, or a report of
what is whole that names the damaged parts. Checkpoints are untrained models saved by ``save_checkpoint``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_cli_errors import DATA_DIR, run_error
from test_report import make_experiment

from tuning.engine.checkpoint import save_checkpoint
from tuning.engine.config import ModelConfig, TrainConfig
from tuning.engine.data import load_corpus
from tuning.engine.model import CharLM
from tuning.files import (
    CHECKPOINT_CONFIG,
    CHECKPOINT_WEIGHTS,
    EXPERIMENT_META,
    PROMOTION_STATE,
    REPORT_MD,
    RESULT_FILE,
    SCHEDULER_DIR,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained GRU on nextchar, saved as a search saves one."""
    corpus = load_corpus("nextchar", True)
    config = TrainConfig(corpus="nextchar", normalize_whitespace=True, seq_len=16, embed_dim=8, hidden_size=16)
    model = CharLM(ModelConfig(cell="gru", vocab_size=len(corpus.vocab), embed_dim=8, hidden_size=16))
    directory = tmp_path_factory.mktemp("ckpt") / "checkpoint_000000"
    save_checkpoint(directory, model, torch.optim.Adam(model.parameters()), corpus.vocab, config, 1, {})
    return directory


def damaged_copy(checkpoint: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "input" / "checkpoint"
    shutil.copytree(checkpoint, copy)
    return copy


def edit_config(directory: Path, edit: Any) -> None:
    meta = json.loads((directory / CHECKPOINT_CONFIG).read_text())
    edit(meta)
    (directory / CHECKPOINT_CONFIG).write_text(json.dumps(meta))


def test_the_whole_checkpoint_evaluates(checkpoint: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tuning.evaluate", str(checkpoint)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["seq_len"] == 16


def cut(name: str, keep: int) -> Any:
    return lambda d: (d / name).write_bytes((d / name).read_bytes()[:keep])


@pytest.mark.parametrize(("damage", "expected"), [
    (cut(CHECKPOINT_WEIGHTS, 200), "model.pt: damaged checkpoint: not a readable torch file"),
    (lambda d: (d / CHECKPOINT_WEIGHTS).write_bytes(b"\x80garbage" * 50), "not a readable torch file"),
    (lambda d: torch.save({"optimizer": {}}, d / CHECKPOINT_WEIGHTS), "no model state_dict in it"),
    (cut(CHECKPOINT_CONFIG, 40), "config.json: damaged checkpoint: not readable JSON"),
    (lambda d: (d / CHECKPOINT_CONFIG).write_text("[1, 2]"), "config.json: damaged checkpoint: not a JSON object"),
    (lambda d: edit_config(d, lambda m: m.pop("vocab")), "vocab missing or not a str"),
    (lambda d: edit_config(d, lambda m: m["model_args"].update(hiden_size=16)), "unknown model_args key 'hiden_size'"),
    (lambda d: edit_config(d, lambda m: m["model_args"].update(hidden_size=0)), "model_args: hidden_size=0"),
    (lambda d: edit_config(d, lambda m: m["model_args"].update(hidden_size=32)),
     "weights do not match model_args: head.weight is (44, 16) in the file, (44, 32)"),
    (lambda d: edit_config(d, lambda m: m["model_args"].update(cell="lstm")), "weights do not match model_args"),
    (lambda d: edit_config(d, lambda m: m["train_config"].update(lr="fast")),
     "config.json: damaged checkpoint: train_config"),
])
def test_a_damaged_checkpoint_is_one_line(checkpoint: Path, tmp_path: Path, damage: Any, expected: str) -> None:
    copy = damaged_copy(checkpoint, tmp_path)
    damage(copy)
    line = run_error(tmp_path, copy, module="tuning.evaluate")
    assert expected in line


@pytest.mark.parametrize("seq_len", ["0", "-3"])
def test_a_window_that_is_not_positive_is_refused(checkpoint: Path, tmp_path: Path, seq_len: str) -> None:
    line = run_error(tmp_path, checkpoint, f"--seq-len={seq_len}", module="tuning.evaluate")
    assert f"--seq-len={seq_len} is invalid: a positive integer" in line


# --- experiment folders: python -m tuning.report -------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ('{"space": "t", "budg', "tuning_experiment.json: damaged: not readable JSON"),
    ("[1, 2]", "tuning_experiment.json: damaged: a JSON object is needed, not list"),
    ('{"space": "t", "budget": "big"}', "tuning_experiment.json: damaged: budget must be an object of integers"),
    ('{"space": "t", "commands": "x"}', "tuning_experiment.json: damaged: commands must be a JSON array"),
])
def test_a_damaged_experiment_record_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    exp = make_experiment(tmp_path)
    (exp / EXPERIMENT_META).write_text(text)
    assert expected in run_error(tmp_path, exp, module="tuning.report")


def test_out_pointing_at_a_file_is_one_line(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)
    (tmp_path / "taken").write_text("mine")
    line = run_error(tmp_path, exp, "--out", tmp_path / "taken", module="tuning.report")
    assert "taken: a file, not a directory" in line
    line = run_error(tmp_path, exp, "--out", tmp_path / "taken" / "sub", module="tuning.report")
    assert "taken/sub: cannot be made" in line
    assert (tmp_path / "taken").read_text() == "mine"


def report_of(exp: Path) -> tuple[str, str]:
    """Run python -m tuning.report on exp; its report.md and its terminal summary."""
    proc = subprocess.run([sys.executable, "-m", "tuning.report", str(exp)], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "TUNING_DATA_DIR": DATA_DIR})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return (exp / "report" / REPORT_MD).read_text(encoding="utf-8"), proc.stdout


def test_a_trial_with_a_broken_params_file_is_named_and_the_others_reported(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)
    (exp / "bbb_00000" / "params.json").write_text('{"cell": "gr')
    (exp / "ccc_00000" / "params.json").write_text("[1]")
    md, printed = report_of(exp)
    assert "- bbb_00000/params.json: not readable JSON (JSONDecodeError); trial bbb left out" in md
    assert "ccc_00000/params.json: a JSON list, not an object; trial ccc left out" in md
    assert "`aaa`" in md or "| aaa |" in md
    assert "| bbb |" not in md and "damaged: bbb_00000/params.json" in printed


def test_non_numeric_result_values_are_blanks_and_bad_rows_named(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)
    rows = [json.loads(line) for line in (exp / "aaa_00000" / RESULT_FILE).read_text().splitlines()]
    rows[1].update(val_loss="low", chars_trained=[1, 2], train_time_s={"s": 1}, val_acc_last=None)
    rows[2]["iteration"] = "three"
    rows[3].update(params="many", trial_status=7, timestamp="now", sample=["x"])
    (exp / "aaa_00000" / RESULT_FILE).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    md, _ = report_of(exp)
    assert "aaa_00000/result.json: 1 row(s) without an integer iteration left out" in md
    assert "| aaa |" in md  # its whole rows are still reported


@pytest.mark.parametrize("text", ['{"rungs": {"2": ["bb', "[1]", '{"rungs": 5}', '{"rungs": {"x": ["a"]}}'])
def test_a_broken_scheduler_record_is_named_and_the_report_written(tmp_path: Path, text: str) -> None:
    exp = make_experiment(tmp_path, scheduler="asha_promotion")
    (exp / SCHEDULER_DIR).mkdir()
    (exp / SCHEDULER_DIR / PROMOTION_STATE).write_text(text)
    md, _ = report_of(exp)
    assert f"- {SCHEDULER_DIR}/{PROMOTION_STATE}: " in md
    assert "statuses read without it" in md and "| 1 | 1 | 0 | 0 | 1 | 1 | 0 |" in md
