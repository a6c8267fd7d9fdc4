"""Checkpoints are data, not pickled objects: state dicts in ``model.pt`` and a JSON of everything else.

``model.pt`` loads with ``torch.load(..., weights_only=True)``; ``config.json`` holds the model's arguments,
the vocabulary (a string in index order), the training configuration, the iteration reached and the metrics
reported at every iteration up to it (so that a resume can restore learning-curve rows its driver lost:
:mod:`tuning.ray_state`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuning.config import TrainConfig
from tuning.errors import UserError
from tuning.files import CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS, atomic_write, atomic_write_json
from tuning.model import CharLM, ModelConfig


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


def load_checkpoint(directory: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model (and read the optimizer's state) from a checkpoint directory."""
    directory = Path(directory)
    config_file, weights_file = directory / CHECKPOINT_CONFIG, directory / CHECKPOINT_WEIGHTS
    if not config_file.is_file() or not weights_file.is_file():
        raise UserError(f"{directory}: not a checkpoint (needs {CHECKPOINT_CONFIG} and {CHECKPOINT_WEIGHTS})")
    meta = json.loads(config_file.read_text(encoding="utf-8"))
    state = torch.load(weights_file, map_location=map_location, weights_only=True)
    model = CharLM(ModelConfig(**meta["model_args"]))
    model.load_state_dict(state["model"])
    return Checkpoint(
        model=model,
        vocab=meta["vocab"],
        train_config=TrainConfig.from_dict(meta["train_config"]),
        iteration=int(meta["iteration"]),
        state=state,
        progress=meta.get("progress", {}),
        history=meta.get("history", []),
    )
