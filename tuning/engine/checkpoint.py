"""Checkpoints are data, not pickled objects: state dicts in ``model.pt`` and a JSON of everything else.

``model.pt`` loads with ``torch.load(..., weights_only=True)``; ``config.json`` holds the model's arguments,
the vocabulary (a string in index order), the training configuration, the iteration reached and the metrics
reported at every iteration up to it (so that a resume can restore learning-curve rows its driver lost:
:mod:`tuning.tune.ray_state`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from tuning.engine.config import ModelConfig, TrainConfig
from tuning.engine.model import CharLM
from tuning.errors import UserError
from tuning.files import CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS, atomic_write, atomic_write_json


@dataclass
class Checkpoint:
    model: CharLM
    vocab: str
    train_config: TrainConfig
    iteration: int
    state: dict[str, Any]  # optimizer and RNG states, as saved
    progress: dict[str, Any]  # chars_trained, cumulative times: what resuming needs to continue the counts
    history: list[dict[str, Any]]  # the metrics reported at iterations 1..iteration, each with its timestamp


def save_checkpoint(
    directory: Path,
    model: CharLM,
    optimizer: torch.optim.Optimizer,
    vocab: str,
    train_config: TrainConfig,
    iteration: int,
    progress: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    atomic_write(directory / CHECKPOINT_WEIGHTS, lambda tmp: torch.save(weights, tmp))
    atomic_write_json(
        directory / CHECKPOINT_CONFIG,
        {
            "model_args": model.config.to_dict(),
            "vocab": vocab,
            "train_config": train_config.to_dict(),
            "iteration": iteration,
            "progress": progress,
            "history": history or [],
        },
    )
    return directory


def _damaged(path: Path, what: str) -> UserError:
    return UserError(f"{path}: damaged checkpoint: {what}")


def _read_meta(config_file: Path) -> dict[str, Any]:
    """``config.json``, checked for what :func:`load_checkpoint` reads from it."""
    try:
        meta = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _damaged(config_file, f"not readable JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise _damaged(config_file, "not a JSON object")
    for key, kind in (("model_args", dict), ("vocab", str), ("train_config", dict), ("iteration", int)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise _damaged(config_file, f"{key} missing or not a {kind.__name__}")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(meta["model_args"]) - known)
    if unknown:
        raise _damaged(config_file, f"unknown model_args key {unknown[0]!r:.60} (known: {', '.join(sorted(known))})")
    return meta


def _check_weights(weights_file: Path, model: CharLM, saved: Any) -> None:
    """The saved tensors must be the ones the model's arguments build, name for name and shape for shape."""
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise _damaged(weights_file, "no model state_dict in it")
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in saved["model"].items()}
    for name in sorted(set(want) | set(have)):
        if want.get(name) != have.get(name):
            raise _damaged(weights_file, f"weights do not match model_args: {name[:60]} is {have.get(name)} in the "
                                         f"file, {want.get(name)} for the model that config.json describes")


def load_checkpoint(directory: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model (and read the optimizer's state) from a checkpoint directory.

    A damaged checkpoint (cut short, garbage, weights that do not fit its arguments) is a :class:`UserError`
    naming the file: the user's to replace, and one line among many when a search's checkpoints are read.
    """
    directory = Path(directory)
    config_file, weights_file = directory / CHECKPOINT_CONFIG, directory / CHECKPOINT_WEIGHTS
    if not config_file.is_file() or not weights_file.is_file():
        raise UserError(f"{directory}: not a checkpoint (needs {CHECKPOINT_CONFIG} and {CHECKPOINT_WEIGHTS})")
    meta = _read_meta(config_file)
    try:
        model = CharLM(ModelConfig(**meta["model_args"]))
    except UserError as exc:
        raise _damaged(config_file, f"model_args: {exc}") from None
    try:
        train_config = TrainConfig.from_dict(meta["train_config"])
    except UserError as exc:
        raise _damaged(config_file, f"train_config: {exc}") from None
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before it fails on garbage
            warnings.simplefilter("ignore")
            state = torch.load(weights_file, map_location=map_location, weights_only=True)
    except Exception as exc:  # the weights-only unpickler raises all kinds (IndexError, KeyError, …) on garbage
        raise _damaged(weights_file, f"not a readable torch file ({type(exc).__name__})") from None
    _check_weights(weights_file, model, state)
    model.load_state_dict(state["model"])
    return Checkpoint(
        model=model,
        vocab=meta["vocab"],
        train_config=train_config,
        iteration=meta["iteration"],
        state=state,
        progress=meta.get("progress", {}),
        history=meta.get("history", []),
    )
