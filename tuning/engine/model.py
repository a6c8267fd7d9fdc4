"""The character-level language model: embedding → RNN/LSTM/GRU → dense head.

Head depth 0 is one ``Linear(H, V)`` (the homework's "standard" head). Depth d ≥ 1 is d blocks of
``Linear → BatchNorm1d → ReLU → Dropout`` of width W, then ``Linear(W, V)`` (the homework's "adjusted" head is
d=1, W=128, p=0.5).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tuning.engine.config import ModelConfig

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


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
