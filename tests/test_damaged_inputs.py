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

from tests.test_cli_errors import run_error
from tuning.checkpoint import save_checkpoint
from tuning.config import TrainConfig
from tuning.data import load_corpus
from tuning.files import CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS
from tuning.model import CharLM, ModelConfig


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
