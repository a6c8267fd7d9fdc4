from __future__ import annotations

import pytest
import torch

from tuning.engine.complexity import GATES, measure, recurrent_macs_per_step
from tuning.engine.config import ModelConfig
from tuning.engine.model import CharLM, count_parameters
from tuning.errors import UserError

CELLS = ("rnn", "lstm", "gru")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("head_depth", [0, 1, 2])
def test_forward_shapes(cell: str, head_depth: int) -> None:
    model = CharLM(ModelConfig(cell=cell, vocab_size=30, embed_dim=8, hidden_size=12, num_layers=2,
                               head_depth=head_depth, head_width=10))
    x = torch.randint(0, 30, (4, 7))
    assert model(x).shape == (4, 7, 30)
    assert model(x, last_only=True).shape == (4, 30)
    model.eval()  # BatchNorm in eval: the last position of the full output equals the last-only output
    torch.testing.assert_close(model(x)[:, -1, :], model(x, last_only=True))


def test_head_structure() -> None:
    model = CharLM(ModelConfig(cell="gru", vocab_size=65, head_depth=1, head_width=128, head_dropout=0.5))
    head = model.head
    assert isinstance(head, torch.nn.Sequential)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert head[3].p == 0.5


@pytest.mark.parametrize(("cell", "vocab", "head_depth", "expected"), [
    ("rnn", 44, 0, 44_332), ("lstm", 44, 0, 143_404), ("gru", 44, 0, 110_380),
    ("lstm", 65, 0, 148_801), ("gru", 65, 0, 115_777), ("lstm", 65, 1, 165_569), ("gru", 65, 1, 132_545),
])
def test_homework_parameter_counts(cell: str, vocab: int, head_depth: int, expected: int) -> None:
    model = CharLM(ModelConfig(cell=cell, vocab_size=vocab, head_depth=head_depth, head_width=128, head_dropout=0.5))
    assert count_parameters(model) == expected


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_corrected_macs_match_per_step_formula(cell: str, layers: int) -> None:
    embed, hidden, vocab, seq_len = 24, 40, 31, 9
    model = CharLM(ModelConfig(cell=cell, vocab_size=vocab, embed_dim=embed, hidden_size=hidden, num_layers=layers))
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    assert GATES[cell] == gates
    # RNN H(I+H), LSTM 4H(I+H), GRU 3H(I+H) per layer and step; layer 1 sees the embedding, later ones H.
    formula = sum(gates * hidden * ((embed if layer == 0 else hidden) + hidden) for layer in range(layers))
    assert recurrent_macs_per_step(model.rnn) == formula
    c = measure(model, seq_len, batch_size=3)
    head_last = 3 * hidden * vocab  # calflops counts the head alone: batch × H × V for the last position
    assert c.calflops_macs == head_last
    assert c.macs == head_last + 3 * seq_len * formula
    # Many-to-many: per character one recurrent step plus one head evaluation.
    assert c.macs_per_char == pytest.approx(formula + hidden * vocab)
    assert c.train_flops_per_char == pytest.approx(3 * c.flops_per_char)
    # A FLOP per multiply and per add: the recurrent FLOPs alone are at least 2 × the recurrent MACs.
    assert c.flops_per_char >= 2 * c.macs_per_char


def test_calflops_reproduces_homework_figures() -> None:
    # Problem 1, LSTM, seq 10, batch 32: the homework printed FLOPS 84.6561 M, MACS 180.224 K.
    c = measure(CharLM(ModelConfig(cell="lstm", vocab_size=44)), 10, batch_size=32)
    assert (c.calflops_flops, c.calflops_macs, c.params) == (84_656_128, 180_224, 143_404)


@pytest.mark.parametrize(("field", "value"), [("cell", "transformer"), ("hidden_size", 0), ("num_layers", 0),
                                              ("dropout", 1.0), ("head_depth", -1), ("vocab_size", 0)])
def test_invalid_model_config(field: str, value: object) -> None:
    args = {"cell": "lstm", "vocab_size": 10, field: value}
    with pytest.raises(UserError, match=field):
        ModelConfig(**args)  # type: ignore[arg-type]
