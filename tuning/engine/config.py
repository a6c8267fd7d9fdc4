"""The model and training configurations: frozen dataclasses, validated where they are built (no torch here)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from tuning.errors import UserError, quote

CELL_TYPES = ("rnn", "lstm", "gru")  # the recurrent cells, torch's RNN, LSTM and GRU (tuning.engine.model.CELLS)
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")


def _check(condition: bool, field: str, value: Any, allowed: str) -> None:
    if not condition:
        raise UserError(f"{field}={quote(value)} is invalid: {allowed}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`CharLM`; saved beside its weights in every checkpoint."""

    cell: str
    vocab_size: int
    embed_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0  # between recurrent layers (PyTorch ignores it for one layer)
    head_depth: int = 0
    head_width: int = 128
    head_dropout: float = 0.0

    def __post_init__(self) -> None:
        _check(self.cell in CELL_TYPES, "cell", self.cell, f"one of {sorted(CELL_TYPES)}")
        for name in ("vocab_size", "embed_dim", "hidden_size", "num_layers", "head_width"):
            value = getattr(self, name)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            _check(is_int and value >= 1, name, value, "an integer >= 1")
        depth = self.head_depth
        _check(isinstance(depth, int) and depth >= 0, "head_depth", depth, "an integer >= 0")
        for name in ("dropout", "head_dropout"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and 0.0 <= value < 1.0, name, value, "a number in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """One trial: the corpus, the model's shape, the optimiser and the budget.

    The budget is counted in characters: one iteration trains ``chars_per_iter`` characters (rounded up to
    whole batches), whatever ``seq_len`` and ``batch_size`` are, so early-stopping rungs compare equal compute.
    """

    corpus: str = "tinyshakespeare"
    normalize_whitespace: bool = False
    cell: str = "lstm"
    seq_len: int = 50
    embed_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    head_depth: int = 0
    head_width: int = 128
    head_dropout: float = 0.0
    lr: float = 2e-3
    # constant, or cosine: decay from lr to lr * lr_min_ratio over the full budget (max_iters), step by step.
    lr_schedule: str = "constant"
    lr_min_ratio: float = 0.1
    batch_size: int = 64
    # fp32, or bf16: the training forward pass (and so its backward) runs under torch.autocast in bfloat16, which
    # on CPUs with AMX and on tensor-core GPUs runs matmuls several times faster; weights, optimizer state and
    # evaluation stay float32, so validation figures compare across precisions.
    precision: str = "fp32"
    weight_decay: float = 0.0
    grad_clip: float = 5.0  # max gradient norm; 0 turns clipping off
    chars_per_iter: int = 250_000
    max_iters: int = 20
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    device: str = "auto"  # auto | cpu | cuda
    gpu_memory_fraction: float = 1.0  # share of the GPU's memory this trial may take (fractional GPUs)
    checkpoint_every: int = 1  # iterations between checkpoints (the last iteration always checkpoints)
    val_max_chars: int = 0  # evaluate on the first N validation characters; 0 = the whole split
    sample_chars: int = 200
    temperature: float = 0.8

    def __post_init__(self) -> None:
        def fail(name: str, allowed: str) -> None:
            raise UserError(f"{name}={quote(getattr(self, name))} is invalid: {allowed}")

        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                fail(f.name, "an integer")
            if f.type == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    fail(f.name, "a finite number")
            if f.type == "bool" and not isinstance(value, bool):
                fail(f.name, "true or false")
            if f.type == "str" and not isinstance(value, str):
                fail(f.name, "a string")
        if self.cell not in CELL_TYPES:
            fail("cell", f"one of {sorted(CELL_TYPES)}")
        if self.seq_len < 2:
            fail("seq_len", "an integer >= 2")
        for name in ("embed_dim", "hidden_size", "num_layers", "head_width", "batch_size", "chars_per_iter",
                     "max_iters", "checkpoint_every", "sample_chars"):
            if getattr(self, name) < 1:
                fail(name, "an integer >= 1")
        for name in ("head_depth", "threads", "val_max_chars", "seed"):
            if getattr(self, name) < 0:
                fail(name, "an integer >= 0")
        for name in ("dropout", "head_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                fail(name, "a number in [0, 1)")
        if self.lr <= 0:
            fail("lr", "a number > 0")
        if self.lr_schedule not in LR_SCHEDULES:
            fail("lr_schedule", f"one of {', '.join(LR_SCHEDULES)}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            fail("lr_min_ratio", "a number in [0, 1]")
        if self.precision not in PRECISIONS:
            fail("precision", f"one of {', '.join(PRECISIONS)}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            fail("weight_decay" if self.weight_decay < 0 else "grad_clip", "a number >= 0")
        if not 0.0 < self.gpu_memory_fraction <= 1.0:
            fail("gpu_memory_fraction", "a number in (0, 1]")
        if self.temperature <= 0:
            fail("temperature", "a number > 0")
        if self.device not in ("auto", "cpu", "cuda"):
            fail("device", "one of auto, cpu, cuda")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"unknown training option(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
        coerced = dict(values)
        for name, value in values.items():
            # YAML and JSON write 1e-3 and 3 alike; a whole float where an int belongs is a user's shorthand.
            if known[name].type == "float" and isinstance(value, int) and not isinstance(value, bool):
                coerced[name] = float(value)
            if known[name].type == "int" and isinstance(value, float) and value.is_integer():
                coerced[name] = int(value)
        return cls(**coerced)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(
            cell=self.cell,
            vocab_size=vocab_size,
            embed_dim=self.embed_dim,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            head_depth=self.head_depth,
            head_width=self.head_width,
            head_dropout=self.head_dropout,
        )

    @property
    def steps_per_iter(self) -> int:
        return math.ceil(self.chars_per_iter / (self.batch_size * self.seq_len))

    @property
    def chars_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based, counted over the whole run).

        cosine: lr_min + (lr - lr_min)(1 + cos(pi t / T)) / 2 with T the steps of the full budget, i.e.
        SGDR's annealing without restarts (Loshchilov & Hutter, 2017, eq. 5). A function of the step alone,
        so a resumed run continues on the same curve, and ASHA's rungs compare trials on the same schedule.
        """
        if self.lr_schedule == "constant":
            return self.lr
        total = self.max_iters * self.steps_per_iter
        low = self.lr * self.lr_min_ratio
        return low + (self.lr - low) * (1 + math.cos(math.pi * min(step, total) / total)) / 2
