"""The homework's published figures (``hw3_reference.csv``) and how to compare exact counts with them.

The homework printed calflops' string output, made by ``calculate_flops(..., output_as_string=True,
output_precision=4)`` (Homework3/Problem2.py in the homework's repository), with the ``FLOPS``/``MACs`` suffixes
dropped in the report. calflops formats a number as ``f"{round(num / magnitude, precision):g} {unit}"``
(``calflops.utils.number_to_string``), so an exact count matches a printed figure when that formula at precision 4
gives the printed string character for character; see ``hw3_reference.md`` for the table itself.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Final

import pandas as pd

REFERENCE_FILE: Final[Path] = Path(__file__).with_name("hw3_reference.csv")

# The precision the homework passed to calflops; calflops' own default (2) would print "21.37 M", not "21.3729 M".
HOMEWORK_PRECISION: Final[int] = 4

# Column → dtype, in file order. Nullable "Float64" is not needed: inference_ms is empty (NaN) for Problem 1 only.
DTYPES: Final[dict[str, str]] = {
    "problem": "int64",
    "cell": "string",
    "seq_len": "int64",
    "head": "string",
    "vocab_size": "int64",
    "calflops_batch": "int64",
    "params": "int64",
    "flops": "float64",
    "macs": "float64",
    "flops_printed": "string",
    "macs_printed": "string",
    "best_epoch": "int64",
    "train_time_s": "int64",
    "inference_ms": "float64",
    "train_loss": "float64",
    "train_acc": "float64",
    "test_loss": "float64",
    "test_acc": "float64",
}

# calflops.utils.number_to_string's thresholds and unit letters, largest first.
_UNITS: Final[tuple[tuple[str, int], ...]] = (("T", 12), ("G", 9), ("M", 6), ("K", 3), ("", 0))


def load_reference() -> pd.DataFrame:
    """The 21 configurations the homework reports (9 for Problem 1, 12 for Problem 2), with explicit dtypes."""
    frame = pd.read_csv(REFERENCE_FILE, dtype=DTYPES, keep_default_na=False, na_values={"inference_ms": [""]})
    if list(frame.columns) != list(DTYPES):
        raise ValueError(f"{REFERENCE_FILE} has columns {list(frame.columns)}, expected {list(DTYPES)}")
    return frame


def calflops_format(value: float, precision: int = HOMEWORK_PRECISION) -> str:
    """``value`` as calflops' ``number_to_string`` prints it, without the ``FLOPS``/``MACs`` suffix.

    Reimplemented so that importing this module does not import calflops (which imports transformers); the tests
    check it against calflops' own function. Only values >= 1 (or 0) occur here, so the milli/micro units are omitted.
    """
    if value < 0 or 0 < value < 1:
        raise ValueError(f"calflops_format handles 0 and values >= 1, got {value!r}")
    for unit, exponent in _UNITS:
        if value >= 10**exponent or exponent == 0:
            return f"{round(value / 10.0**exponent, precision):g} {unit}"
    raise AssertionError("unreachable")


def parse_printed(printed: str) -> float:
    """A printed figure such as ``"21.3729 M"`` as a plain number (21372900.0), decimal-exact before the float."""
    number, _, unit = printed.strip().partition(" ")
    exponents = dict(_UNITS)
    if unit not in exponents:
        raise ValueError(f"unknown unit {unit!r} in {printed!r}")
    return float(Decimal(number).scaleb(exponents[unit]))


def printed_matches(value: float, printed: str) -> bool:
    """Whether the exact count ``value`` prints as ``printed`` under the homework's calflops settings.

    Exact string reproduction, not a tolerance: ``printed_matches(21372928, "21.3729 M")`` is true,
    ``printed_matches(21372800, "21.3729 M")`` and ``printed_matches(21372928, "21.37 M")`` are false.
    """
    return calflops_format(value).strip() == printed.strip()
