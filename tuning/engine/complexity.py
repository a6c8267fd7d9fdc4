"""Parameters, FLOPs and MACs of a :class:`~tuning.engine.model.CharLM`, through calflops, corrected.

calflops (0.3.2) patches ``torch.nn.functional`` and counts the recurrent layers' FLOPs through its RNN
hooks, but adds no MACs for ``nn.RNN/LSTM/GRU``: its MACs are the dense head's alone. That is why the
homework's MACs did not change between cells or sequence lengths. We keep calflops' raw figures (they
reproduce the homework's tables) and add corrected MACs that count the recurrent matrix products.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from tuning.engine.model import CharLM, count_parameters

# Gate count per cell: the number of H-row blocks in weight_ih/weight_hh (PyTorch's nn.RNN/LSTM/GRU docs).
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


@dataclass(frozen=True)
class Complexity:
    params: int
    # calflops, unchanged: one window (batch 1), prediction after the last position only (the homework's view)
    calflops_flops: int
    calflops_macs: int
    # corrected: calflops' MACs plus the recurrent layers' matrix-vector products, same window and view
    macs: int
    # per trained character of the many-to-many model (a prediction after every position)
    flops_per_char: float
    macs_per_char: float
    train_flops_per_char: float  # ≈ 3× forward: backward costs about twice the forward (Kaplan et al. 2020, §2.1)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def recurrent_macs_per_step(rnn: nn.RNNBase) -> int:
    """MACs of one time step of one sequence through every layer of ``rnn``.

    Read from the module's own weight matrices: each step multiplies ``weight_ih_l{k}`` (gates·H × I_k) by the
    input and ``weight_hh_l{k}`` (gates·H × H) by the hidden state, so one MAC per weight element. The
    closed forms (RNN H(I+H), LSTM 4H(I+H), GRU 3H(I+H) per layer) are checked against this in the tests.
    """
    return sum(p.numel() for name, p in rnn.named_parameters() if name.startswith("weight_"))


class _LastOnly(nn.Module):
    """calflops passes tensors only (it moves every keyword argument ``.to(device)``), so bind the flag here."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, last_only=True)


def calflops_counts(model: CharLM, inputs: torch.Tensor, last_only: bool) -> tuple[int, int, int]:
    """calflops' raw (FLOPs, MACs, params) for one forward pass, its printing and warnings silenced."""
    from calflops import calculate_flops  # imports transformers: slow, so only when needed

    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            logging.getLogger("transformers").setLevel(logging.ERROR)
            flops, macs, params = calculate_flops(
                _LastOnly(model) if last_only else model,
                args=[inputs],
                print_results=False,
                print_detailed=False,
                output_as_string=False,
            )
    finally:
        model.train(was_training)
    return int(flops), int(macs), int(params)


def measure(model: CharLM, seq_len: int, batch_size: int = 1) -> Complexity:
    """Complexity of one ``seq_len`` window; ``batch_size`` scales calflops' raw figures (the homework used 32/128)."""
    device = next(model.parameters()).device
    window = torch.zeros(batch_size, seq_len, dtype=torch.long, device=device)
    raw_flops, raw_macs, _ = calflops_counts(model, window, last_only=True)
    one = window[:1]
    full_flops, full_macs, _ = calflops_counts(model, one, last_only=False)
    recurrent = recurrent_macs_per_step(model.rnn) * seq_len
    flops_per_char = full_flops / seq_len
    return Complexity(
        params=count_parameters(model),
        calflops_flops=raw_flops,
        calflops_macs=raw_macs,
        macs=raw_macs + recurrent * batch_size,
        flops_per_char=flops_per_char,
        macs_per_char=(full_macs + recurrent) / seq_len,
        train_flops_per_char=3.0 * flops_per_char,
    )
