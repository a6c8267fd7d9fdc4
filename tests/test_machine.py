"""The CPU meter the benchmarks use to flag timings that other processes disturbed (a real busy child process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuning.machine import OthersCpu

pytestmark = pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc (Linux)")


def test_a_busy_process_counts_as_others_unless_it_is_one_of_ours() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        lead = time.perf_counter()
        time.sleep(0.5)  # started and spinning
        theirs, ours = OthersCpu(), OthersCpu([busy.pid])
        start = time.perf_counter()
        time.sleep(1.5)
        others_all, others_without_child = theirs.share(), ours.share()
        window = time.perf_counter() - start
    finally:
        busy.kill()
        _, _, usage = os.wait4(busy.pid, 0)
    lead_s = start - lead
    # The child's CPU time inside the window is at least its whole CPU time less what it could use before the window
    # (one core for lead_s), and the meters differ by exactly that share of all CPUs' time. On a busy machine the
    # child gets little CPU and the bound shrinks; on an idle one it is about 1/cpus.
    cpus = os.cpu_count() or 1
    child_in_window = max(0.0, usage.ru_utime + usage.ru_stime - lead_s - 0.1)
    assert 0.0 <= others_without_child < others_all <= 1.0
    assert others_all - others_without_child >= 0.8 * child_in_window / (window * cpus) - 0.02


def test_a_process_that_is_gone_is_not_an_error() -> None:
    meter = OthersCpu([2**22 + 12345])  # no such process
    time.sleep(0.1)
    assert 0.0 <= meter.share() <= 1.0
