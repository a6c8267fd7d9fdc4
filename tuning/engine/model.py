"""The character-level language model: embedding → RNN/LSTM/GRU → dense head.

Head depth 0 is one ``Linear(H, V)`` (the homework's "standard" head). Depth d ≥ 1 is d blocks of
``Linear → BatchNorm1d → ReLU → Dropout`` of width W, then ``Linear(W, V)`` (the homework's "adjusted" head is
d=1, W=128, p=0.5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from tuning.errors import UserError, quote

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


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
        _check(self.cell in CELLS, "cell", self.cell, f"one of {sorted(CELLS)}")
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


class CharLM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        rnn_dropout = config.dropout if config.num_layers > 1 else 0.0  # PyTorch warns otherwise
        cell: Any = CELLS[config.cell]  # nn.RNN/LSTM/GRU share this signature; RNNBase's own differs
        self.rnn: nn.RNNBase = cell(
            config.embed_dim, config.hidden_size, num_layers=config.num_layers, dropout=rnn_dropout, batch_first=True
        )
        layers: list[nn.Module] = []
        width = config.hidden_size
        for _ in range(config.head_depth):
            layers += [
                nn.Linear(width, config.head_width),
                nn.BatchNorm1d(config.head_width),
                nn.ReLU(),
                nn.Dropout(config.head_dropout),
            ]
            width = config.head_width
        layers.append(nn.Linear(width, config.vocab_size))
        self.head = nn.Sequential(*layers) if len(layers) > 1 else layers[0]

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Logits for ``x`` of shape (B, T) token ids.

        Returns (B, T, V): a prediction after every prefix (many-to-many training), or with ``last_only``
        (B, V): only the prediction after the whole window, as the homework's models computed it.
        """
        out, _ = self.rnn(self.embedding(x))  # (B, T, H)
        if last_only:
            return self.head(out[:, -1, :])
        batch, steps, hidden = out.shape
        # BatchNorm1d wants (N, C): fold time into the batch.
        return self.head(out.reshape(batch * steps, hidden)).reshape(batch, steps, -1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
