"""Smoke test of the engine benchmark: ``python -m tuning.bench_engine --quick`` runs and writes a whole report.

A benchmark is not a timed test: nothing here asserts a speed or a goal, only that every figure is there and is a
positive number.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


def _value(text: str) -> float:
    return float(text.replace(",", ""))


def test_quick_run_writes_every_row(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "engine.md"
    env = {**os.environ, "TUNING_DATA_DIR": str(data_dir), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "tuning.bench_engine", "--quick", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert text in proc.stdout  # what it prints is what it writes
    assert not list(tmp_path.glob(".engine.md.*"))  # the atomic write left no temporary file

    header = text.splitlines()[2]
    assert "UTC" in header and "CPU:" in header and "torch " in header and "torch threads:" in header

    peak = re.search(rf"^Matmul peak: {NUMBER} GFLOP/s", text, re.MULTILINE)
    assert peak and _value(peak[1]) > 0

    for cell in ("rnn", "lstm", "gru"):
        for hidden in (128, 256, 512):
            row = re.search(rf"^\| {cell} \| {hidden} \| 64 \| (.*)\|$", text, re.MULTILINE)
            assert row, f"no table row for {cell} H={hidden}"
            cells = [c.strip() for c in row[1].split("|")]
            steps, chars, gflops, share = cells[0], cells[1], cells[5], cells[6]
            assert int(steps.rstrip(" ‡")) > 0
            assert _value(chars.rstrip(" †")) > 0
            assert float(gflops) > 0
            assert share.endswith("%") and float(share[:-1]) >= 0

    for hidden in (128, 512):
        ratio = re.search(rf"^Homework-style ratio, LSTM H={hidden} seq 50: {NUMBER}× \(ours {NUMBER} targets/s "
                          rf".* / homework-style {NUMBER} targets/s", text, re.MULTILINE)
        assert ratio, f"no homework-style ratio line for H={hidden}"
        assert all(_value(v) > 0 for v in ratio.groups())

    # mixed precision: a bf16 peak and the bf16 trainer rows beside their float32 rows
    assert re.search(rf"^bfloat16 autocast .* bf16 matmul peak: {NUMBER} GFLOP/s", text, re.MULTILINE)
    bf16 = text[text.index("## Mixed precision"):text.index("## Goals")]
    for hidden in (128, 512):
        row = re.search(rf"^\| lstm \| {hidden} \| 64 \| (.*)\|$", bf16, re.MULTILINE)
        assert row, f"no bf16 row for lstm H={hidden}"
        cells = [c.strip() for c in row[1].split("|")]
        assert _value(cells[1].rstrip(" †")) > 0 and _value(cells[4]) > 0 and cells[5].endswith("×")
        assert cells[7].endswith("%")
    assert re.search(r"^- With `precision: bf16` .*% at batch 64 \([0-9.]+× the float32 chars/s\)", text, re.M)

    # as the search runs trials: one-thread trials packed on the cores, each its own process
    threads = len(os.sched_getaffinity(0))
    packed = text[text.index("## As the search runs trials"):text.index("## Goals")]
    assert re.search(rf"one-thread peak {NUMBER} GFLOP/s", packed)
    for trials in sorted({1, threads}):
        row = re.search(rf"^\| {trials} × 1 \| lstm \| 512 \| 64 \| (.*)\|$", packed, re.MULTILINE)
        assert row, f"no packed row for {trials} trials"
        cells = [c.strip() for c in row[1].split("|")]
        per_trial = [_value(v) for v in cells[0].split(", ")]
        assert len(per_trial) == trials and all(v > 0 for v in per_trial)
        assert _value(cells[1].rstrip(" †")) == pytest.approx(sum(per_trial), rel=0.01, abs=trials)
        assert float(cells[3]) > 0 and cells[5].endswith("%")
    if threads > 1:
        assert re.search(r"^- Goal 2 as the search runs trials .*\*\*(met|not met)\*\* at batch 64", text, re.M)

    assert re.search(r"^- Goal 1, .*\*\*(met|not met)\*\*", text, re.MULTILINE)
    assert re.search(r"^- Goal 2, .*\*\*(met|not met)\*\*", text, re.MULTILINE)
