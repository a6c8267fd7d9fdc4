"""Smoke test of the engine benchmark: ``python -m benchmarks.engine --quick`` runs and writes a whole report.

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

from tuning.engine import precision

REPO = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


def _value(text: str) -> float:
    return float(text.replace(",", ""))


def test_quick_run_writes_every_row(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "engine.md"
    env = {**os.environ, "TUNING_DATA_DIR": str(data_dir), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": str(REPO)}  # benchmarks/ is not installed: it runs from the repository
    proc = subprocess.run([sys.executable, "-m", "benchmarks.engine", "--quick", "--out", str(out)],
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
            steps, chars = cells[0], cells[1]
            gflops, share, side_peak, side_share = cells[5:9]
            assert int(steps.rstrip(" ‡")) > 0
            assert _value(chars.rstrip(" †")) > 0
            assert float(gflops) > 0
            assert share.endswith("%") and float(share[:-1]) >= 0
            # the peak measured between the row's samples: a real rate, and a share of it
            probes = re.fullmatch(r"([0-9.]+) \[([0-9]+)–([0-9]+)\]", side_peak)
            assert probes, f"side-by-side peak cell {side_peak!r}: not 'median [low–high]'"
            median, low, high = map(float, probes.groups())
            assert 0 < low and low - 1 <= median <= high + 1  # the range is rounded
            assert side_share.endswith("%") and float(side_share[:-1]) > 0

    for hidden in (128, 512):
        ratio = re.search(rf"^Homework-style ratio, LSTM H={hidden} seq 50: {NUMBER}× \(ours {NUMBER} targets/s "
                          rf".* / homework-style {NUMBER} targets/s", text, re.MULTILINE)
        assert ratio, f"no homework-style ratio line for H={hidden}"
        assert all(_value(v) > 0 for v in ratio.groups())

    # mixed precision: a bf16 peak and the bf16 trainer rows beside their float32 rows, where this CPU can train
    # in bf16 at all; elsewhere the section says why it has no rows (and the run still succeeds)
    bf16 = text[text.index("## Mixed precision"):text.index("## Goals")]
    if precision.supports("bf16", "cpu"):
        assert re.search(rf"^bfloat16 autocast .* bf16 matmul peak: {NUMBER} GFLOP/s", text, re.MULTILINE)
        for hidden in (128, 512):
            row = re.search(rf"^\| lstm \| {hidden} \| 64 \| (.*)\|$", bf16, re.MULTILINE)
            assert row, f"no bf16 row for lstm H={hidden}"
            cells = [c.strip() for c in row[1].split("|")]
            assert _value(cells[1].rstrip(" †")) > 0 and _value(cells[4]) > 0 and cells[5].endswith("×")
            assert cells[7].endswith("%")
        assert re.search(r"^- With `precision: bf16` .*% at batch 64 \([0-9.]+× the float32 chars/s\)", text, re.M)
    else:
        assert re.search(r"^No rows: precision=bf16 is not supported on this CPU \(.+\): PyTorch cannot build",
                         bf16, re.MULTILINE), bf16
        mixed = bf16[:bf16.index("## As the search runs trials")]
        assert "| lstm |" not in mixed and "- With `precision: bf16`" not in text

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
        assert float(cells[6]) > 0 and cells[7].endswith("%") and float(cells[7][:-1]) > 0  # side-by-side peak
    if threads > 1:
        assert re.search(r"^- Goal 2 as the search runs trials .*at batch 64 \([0-9.]+ GFLOP/s\), against the "
                         r"[0-9]+-thread best-of peak \*\*(met|not met)\*\*: [0-9]+\.[0-9]%, against the trials' "
                         r"side-by-side peak \*\*(met|not met)\*\*: [0-9]+\.[0-9]%", text, re.M)

    assert re.search(r"^- Goal 1, .*\*\*(met|not met)\*\*", text, re.MULTILINE)
    assert re.search(r"^- Goal 2, .*best-of-[0-9]+ peak \*\*(met|not met)\*\*: [0-9]+\.[0-9]% .*; against the "
                     r"side-by-side peak \*\*(met|not met)\*\*: [0-9]+\.[0-9]%", text, re.MULTILINE)


def test_side_by_side_share_divides_each_sample_by_the_probes_around_it() -> None:
    from benchmarks.engine import MIN_QUIET, Samples, side_by_side_share

    samples = Samples()
    for chars, others in ((100.0, 0.0), (50.0, 0.0), (300.0, 0.5)):  # 1-second samples; the third one contended
        samples.add(chars, 1.0, others)
    # sample GFLOP/s (1 GFLOP per char here) over the mean of the probes just before and after it
    probes = [200.0, 200.0, 100.0, 100.0]
    ratios = [100 / 200, 50 / 150, 300 / 100]
    assert MIN_QUIET == 3  # two quiet samples are too few: the median is of all three
    assert side_by_side_share(samples, probes, 1.0) == pytest.approx(sorted(ratios)[1])  # 0.5
    samples.add(80.0, 1.0, 0.0)  # a third quiet sample: now the contended one (ratio 3.0) is left out
    probes.append(100.0)
    assert side_by_side_share(samples, probes, 1.0) == pytest.approx(sorted([100 / 200, 50 / 150, 80 / 100])[1])
    assert side_by_side_share(samples, probes, 2.0) == pytest.approx(2 * 100 / 200)  # chars → GFLOP
    with pytest.raises(ValueError, match="one more probe than samples"):
        side_by_side_share(samples, probes[:-1], 1.0)


def test_peak_probe_times_a_product_and_pickles_without_its_matrices() -> None:
    import pickle

    from benchmarks.engine import PeakProbe

    probe = PeakProbe(256, repeats=3)
    assert probe() > 0  # GFLOP/s of a real torch.mm
    assert len(pickle.dumps(probe)) < 1000  # sent to packed workers: the 3 matrices are made there
    assert pickle.loads(pickle.dumps(probe))() > 0
