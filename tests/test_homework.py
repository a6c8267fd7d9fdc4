"""Rebuild every model the homework reports and compare its size and calflops figures with the published ones.

One row of ``tuning/homework/hw3_reference.csv`` per configuration (Problem 1: 9, Problem 2: 12). Parameters must match
exactly everywhere; calflops' raw FLOPs and MACs (prediction after the last position, at the homework's batch)
must print exactly as the homework printed them for every standard-head model. The adjusted-head models do not
match calflops as it runs here, and the tests say by how much rather than hide it (see ``test_adjusted_head``).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from functools import cache
from typing import Any

import pytest
import torch

from tuning.engine.complexity import Complexity, measure
from tuning.engine.config import ModelConfig
from tuning.engine.model import CharLM
from tuning.homework.reference import (
    DTYPES,
    REFERENCE_FILE,
    calflops_format,
    load_reference,
    parse_printed,
    printed_matches,
)

REFERENCE = load_reference()
ROWS: list[dict[str, Any]] = REFERENCE.to_dict("records")
ADJUSTED_HEAD: dict[str, Any] = {"head_depth": 1, "head_width": 128, "head_dropout": 0.5}


def _key(row: dict[str, Any]) -> tuple[int, str, int, str]:
    return int(row["problem"]), str(row["cell"]), int(row["seq_len"]), str(row["head"])


def _id(row: dict[str, Any]) -> str:
    return "p{}-{}-{}-{}".format(*_key(row))


def _model(row: dict[str, Any]) -> CharLM:
    torch.manual_seed(0)
    extra = ADJUSTED_HEAD if row["head"] == "adjusted" else {}
    return CharLM(ModelConfig(str(row["cell"]), int(row["vocab_size"]), **extra))


@cache
def _measured(key: tuple[int, str, int, str]) -> tuple[CharLM, Complexity]:
    row = next(r for r in ROWS if _key(r) == key)
    model = _model(row)
    return model, measure(model, int(row["seq_len"]), batch_size=int(row["calflops_batch"]))


def _calflops_head(model: CharLM, batch: int) -> tuple[int, int]:
    """calflops' (FLOPs, MACs) for the dense head alone, on ``batch`` last-position hidden states (eval mode)."""
    from calflops import calculate_flops

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        flops, macs, _ = calculate_flops(
            model.head,
            args=[torch.zeros(batch, model.config.hidden_size)],
            print_results=False,
            output_as_string=False,
        )
    return int(flops), int(macs)


STANDARD = [pytest.param(r, id=_id(r)) for r in ROWS if r["head"] == "standard"]
ADJUSTED = [pytest.param(r, id=_id(r)) for r in ROWS if r["head"] == "adjusted"]


# ---------------------------------------------------------------- the table itself


def test_reference_table_shape() -> None:
    assert REFERENCE_FILE.is_file()
    assert list(REFERENCE.columns) == list(DTYPES)
    assert {c: str(t) for c, t in REFERENCE.dtypes.items()} == dict(DTYPES)
    assert (REFERENCE["problem"] == 1).sum() == 9
    assert (REFERENCE["problem"] == 2).sum() == 12
    expected = {(1, c, s, "standard") for c in ("rnn", "lstm", "gru") for s in (10, 20, 30)}
    expected |= {(2, c, s, h) for c in ("lstm", "gru") for s in (20, 30, 50) for h in ("standard", "adjusted")}
    assert sorted(_key(r) for r in ROWS) == sorted(expected)


@pytest.mark.parametrize("row", [pytest.param(r, id=_id(r)) for r in ROWS])
def test_reference_row_is_consistent(row: dict[str, Any]) -> None:
    one = row["problem"] == 1
    assert row["vocab_size"] == (44 if one else 65)
    assert row["calflops_batch"] == (32 if one else 128)
    assert row["flops"] == parse_printed(row["flops_printed"])
    assert row["macs"] == parse_printed(row["macs_printed"])
    assert math.isnan(row["inference_ms"]) == one  # not reported (NaN) exactly for Problem 1
    for name in ("train_acc", "test_acc"):
        assert 0.0 < row[name] < 1.0


# ---------------------------------------------------------------- the formatter


def test_printed_matches_examples() -> None:
    assert parse_printed("21.3729 M") == 21372900.0
    assert parse_printed("1.0137 G") == 1013700000.0
    assert printed_matches(21372928, "21.3729 M")
    assert printed_matches(180224, "180.224 K")
    assert printed_matches(1688043520, "1.688 G")  # :g drops the trailing zero of 1.6880
    assert printed_matches(253247488, "253.248 M")  # rounded to 4 decimals (253.2475), then :g keeps 6 digits
    assert not printed_matches(253247488, "253.247 M")
    assert not printed_matches(21372800, "21.3729 M")
    assert not printed_matches(21372928, "21.37 M")  # calflops' default precision 2 is not what the homework used


def test_formatter_is_calflops_own() -> None:
    from calflops.utils import number_to_string

    values = [0, 1, 999, 1000, 44332, 110380, 180224, 1064960, 3162112, 21372928, 253247488, 1013678080, 10**12]
    for value in values:
        for precision in (2, 4):
            assert calflops_format(value, precision) == number_to_string(value, precision=precision)


# ---------------------------------------------------------------- the models against the homework


@pytest.mark.parametrize("row", [pytest.param(r, id=_id(r)) for r in ROWS])
def test_params_exact(row: dict[str, Any]) -> None:
    _, measured = _measured(_key(row))
    assert measured.params == row["params"]


@pytest.mark.parametrize("row", STANDARD)
def test_standard_head_calflops_matches_printed(row: dict[str, Any]) -> None:
    _, measured = _measured(_key(row))
    assert printed_matches(measured.calflops_flops, row["flops_printed"]), calflops_format(measured.calflops_flops)
    assert printed_matches(measured.calflops_macs, row["macs_printed"]), calflops_format(measured.calflops_macs)


@pytest.mark.parametrize("row", ADJUSTED)
def test_adjusted_head(row: dict[str, Any]) -> None:
    # Finding: for the adjusted head (Linear 128→128, BatchNorm1d, ReLU, Dropout, Linear 128→V) the homework's
    # figures are calflops' plus the whole head a second time. At batch 128, V=65, calflops counts the head as
    # 3,162,112 MACs and 6,373,376 FLOPs (linears 2·MACs = 6,324,224, BatchNorm 32,768, ReLU 16,384, Dropout 0);
    # the homework printed MACs 6.3242 M = 2 × 3,162,112 and FLOPs = calflops' total + 6,373,376 (e.g. LSTM/20:
    # 680,738,816 + 6,373,376 = 687,112,192 → "687.112 M"). The homework's head appears counted twice. calflops
    # 0.3.2 on the homework's own model code does not double it here, so the cause lies in the homework's run
    # (versions or notebook state), not in the model; the standard head (one Linear) shows no such doubling.
    model, measured = _measured(_key(row))
    batch, hidden, width, vocab = row["calflops_batch"], 128, 128, row["vocab_size"]
    head_flops, head_macs = _calflops_head(model, batch)

    assert head_macs == batch * (hidden * width + width * vocab) == 3_162_112
    batch_norm, relu = 2 * batch * width, batch * width  # calflops' elementwise counts; Dropout adds 0 in eval
    assert head_flops == 2 * head_macs + batch_norm + relu == 6_373_376
    assert measured.calflops_macs == head_macs  # calflops counts no recurrent MACs: all of its MACs are the head's

    # The homework's figures do not match calflops as it runs here ...
    assert not printed_matches(measured.calflops_macs, row["macs_printed"])
    assert not printed_matches(measured.calflops_flops, row["flops_printed"])
    # ... they match exactly with the head counted a second time.
    assert printed_matches(2 * head_macs, row["macs_printed"])
    assert printed_matches(measured.calflops_flops + head_flops, row["flops_printed"])
