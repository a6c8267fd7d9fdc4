"""Trials packed on one machine: several :func:`tuning.engine.train.train` runs at once, each its own OS process.

This is how the search runs trials (Ray starts one worker process per trial and gives each a share of the GPU, or
``--cpus-per-trial`` CPUs with as many torch threads), so the benchmarks measure the engine this way too: the GPU
benchmark packs 1–8 trials on one GPU, the engine benchmark packs one-thread trials on the CPU's cores.

Worker processes are spawned once (CUDA cannot be used in forked children; their imports then overlap other
measurements) and given jobs. The trials of one job batch warm up, wait at a barrier, then train for the same wall
time, so their characters per second add up to what the machine delivers with that many trials.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tuning.engine.config import TrainConfig
from tuning.machine import OthersCpu

BARRIER_TIMEOUT_S = 180.0  # CUDA start, the FLOP count and a warm-up iteration, in up to 8 processes at once


@dataclass(frozen=True)
class Rate:
    """One timed window of :func:`tuning.engine.train.train`, after its warm-up."""

    chars: float
    train_s: float  # the trainer's own clock (synchronised; evaluation outside it)
    wall_s: float  # wall time of the window (evaluation between iterations included)
    train_flops_per_char: float
    # The share of the machine's CPU time that processes other than the packed trials used during the window
    # (NaN off Linux): a contended window is not a fair measurement.
    others: float = math.nan
    # The matmul rate of this process (GFLOP/s) just before and just after the window, when a probe was given
    # (the engine benchmark's side-by-side peak); NaN otherwise.
    peak_before: float = math.nan
    peak_after: float = math.nan

    @property
    def chars_per_s(self) -> float:
        """By the trainer's clock: what the training loop itself achieves."""
        return self.chars / self.train_s if self.train_s > 0 else math.nan

    @property
    def wall_chars_per_s(self) -> float:
        """By the wall clock: what a trial delivers, evaluation included."""
        return self.chars / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def tflops(self) -> float:
        return self.chars_per_s * self.train_flops_per_char / 1e12


class _Enough(Exception):
    """Raised from the report callback to end a run once its timed window is long enough."""


def measure_rate(config: TrainConfig, seconds: float, wait: Callable[[], Any] | None = None, warmup_s: float = 0.0,
                 siblings: Sequence[int] = (), probe: Callable[[], float] | None = None) -> Rate:
    """Train ``config`` with :func:`tuning.engine.train.train`: warm up (whole iterations, the first one at least, until
    ``warmup_s`` of training: CUDA context, cuDNN plans, the allocator), then ``wait()`` (a barrier, for packed runs),
    then time a window of at least ``seconds`` of whole iterations. ``siblings``: process ids whose CPU time counts
    as ours in :attr:`Rate.others` (the other packed trials). ``probe``: a matmul rate, taken right before and right
    after the window (outside it)."""
    from tuning.engine.train import train

    state: dict[str, Any] = {}

    def report(metrics: dict[str, Any], _checkpoint: Path | None) -> None:
        chars, train_s = float(metrics["chars_trained"]), float(metrics["train_time_s"])
        if "start" not in state:
            if train_s < warmup_s:
                return
            if wait is not None:
                wait()
            state["before"] = probe() if probe else math.nan
            state["start"] = (time.perf_counter(), chars, train_s, OthersCpu(siblings))
            return
        t0, c0, s0, meter = state["start"]
        now = time.perf_counter()
        if now - t0 >= seconds:
            others = meter.share()
            state["rate"] = Rate(chars=chars - c0, train_s=train_s - s0, wall_s=now - t0,
                                 train_flops_per_char=float(metrics["train_flops_per_char"]), others=others,
                                 peak_before=state["before"], peak_after=probe() if probe else math.nan)
            raise _Enough

    try:
        metrics = train(config, report)
    except _Enough:
        return state["rate"]
    raise RuntimeError(f"training ended before its timed window ({metrics.get('trial_status')})")


def _pack_worker(jobs: Any, results: Any) -> None:
    """A packed trial's process: takes (config, seconds, warm-up seconds, memory fraction, sibling pids, barrier,
    probe) jobs until it gets None; probe is a zero-argument callable that returns a matmul rate, or None."""
    from tuning.engine import complexity  # noqa: F401  (imports calflops: slow, so while the parent measures)

    while True:
        job = jobs.get()
        if job is None:
            return
        config, seconds, warmup_s, fraction, siblings, barrier, probe = job
        try:
            cfg = TrainConfig.from_dict(config)
            if cfg.device == "cuda":
                # train() sets the share only below 1; this process may have run a smaller share before.
                torch.cuda.set_per_process_memory_fraction(fraction)
            rate = measure_rate(replace(cfg, gpu_memory_fraction=fraction), seconds, wait=barrier.wait,
                                warmup_s=warmup_s, siblings=siblings, probe=probe)
            results.put({"pid": os.getpid(), **asdict(rate)})
        except BaseException as exc:  # report it and free the others from the barrier
            results.put({"pid": os.getpid(), "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
            try:
                barrier.abort()
            except Exception:
                pass
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


@dataclass
class PackLevel:
    trials: int
    rates: list[Rate] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def aggregate(self) -> float:
        """Characters per second of all the trials together (each by the wall clock of the shared window)."""
        return sum(r.wall_chars_per_s for r in self.rates) if self.rates and not self.errors else math.nan

    @property
    def train_flops_per_char(self) -> float:
        return self.rates[0].train_flops_per_char if self.rates else math.nan

    @property
    def side_peak(self) -> float:
        """The machine's matmul rate around the window: each trial's mean of its probes before and after, added up
        (NaN without probes)."""
        return sum((r.peak_before + r.peak_after) / 2 for r in self.rates) if self.rates else math.nan

    @property
    def others(self) -> float:
        """The most CPU that processes other than the packed trials used during any trial's window."""
        known = [r.others for r in self.rates if not math.isnan(r.others)]
        return max(known) if known else math.nan


class Packer:
    """Worker processes started once, then given 1, 2, 4, … jobs at a time."""

    def __init__(self, workers: int) -> None:
        ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
        self.manager = ctx.Manager()
        self.jobs: Any = ctx.Queue()
        self.results: Any = ctx.Queue()
        self.procs = [ctx.Process(target=_pack_worker, args=(self.jobs, self.results), daemon=True)
                      for _ in range(workers)]
        for p in self.procs:
            p.start()

    def run(self, n: int, config: TrainConfig, seconds: float, warmup_s: float = 0.0,
            probe: Callable[[], float] | None = None) -> PackLevel:
        """N jobs at once. A worker blocks in its job until all N have warmed up, so N distinct workers run them.
        ``probe`` (picklable; built in the worker on first call) times a matmul before and after each window."""
        alive = sum(p.is_alive() for p in self.procs)
        if alive < n:  # a worker died (killed for memory?): N jobs would wait at the barrier until its timeout
            return PackLevel(trials=n, errors=[f"only {alive} of {len(self.procs)} worker processes alive"])
        barrier = self.manager.Barrier(n, timeout=BARRIER_TIMEOUT_S)
        pids = [p.pid for p in self.procs if p.pid is not None]
        for _ in range(n):
            self.jobs.put((config.to_dict(), seconds, warmup_s, 1.0 / n, pids, barrier, probe))
        level = PackLevel(trials=n)
        deadline = time.monotonic() + BARRIER_TIMEOUT_S + 4 * (seconds + warmup_s) + 60
        for _ in range(n):
            try:
                got = self.results.get(timeout=max(1.0, deadline - time.monotonic()))
            except queue.Empty:
                level.errors.append("timed out waiting for a packed trial")
                break
            if "error" in got:
                level.errors.append(got["error"])
            else:
                level.rates.append(Rate(**{k: got[k] for k in ("chars", "train_s", "wall_s", "train_flops_per_char",
                                                               "others", "peak_before", "peak_after")}))
        return level

    def close(self) -> None:
        for _ in self.procs:
            self.jobs.put(None)
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        self.manager.shutdown()
