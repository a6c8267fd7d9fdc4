"""Engine benchmark: how fast the trainer turns CPU time into trained characters, and against what.

``python -m benchmarks.engine [--out FILE.md] [--seconds S] [--threads N] [--quick] [--note TEXT]``

Measured in one run, side by side, with the thread count of --threads (5.: one thread per packed trial):

1. the matmul peak: float32 ``torch.mm`` of square matrices, best of a few repeats (2·n³ FLOPs per product), and
   a side-by-side peak: one such product timed between every two timing samples of every row (:class:`PeakProbe`);
2. the real trainer, :func:`tuning.engine.train.train` itself, on tiny Shakespeare for rnn/lstm/gru × H 128/256/512
   (embed 128, seq_len 50, batch 64, plus batch 128 for H=512 and 256 for LSTM H=512): training characters/s from
   the ``chars_trained`` and ``train_time_s`` it reports (its evaluation is outside that clock by design), achieved
   FLOP/s from calflops' ``train_flops_per_char``, and the share of the matmul peak;
3. mixed precision: the same trainer with ``precision: bf16`` (bfloat16 autocast) on a few rows, against a bf16
   ``torch.mm`` peak measured the same way, and its speed-up over the float32 row;
4. a homework-style trainer on the same model: stride-1 windows in a ``Dataset``, ``DataLoader(batch_size=128,
   shuffle=True)``, loss on the last position only, AdamW; targets/s and our trainer's ratio to it.
5. as the search runs trials (``--cpus-per-trial 1``: one torch thread per trial, one trial per core): the
   trainer on LSTM H=512 as 1 and as N one-thread trials packed at once (:mod:`benchmarks.packing`, N = the thread
   count), their characters/s added up, against the matmul peak at the same total thread count.

This is a benchmark, not a test: it asserts nothing about speed. It prints a Markdown report and writes it
atomically (default ``benchmarks/engine.md``). ``--quick`` shrinks every timing to a few steps and drops the
extra batch sizes (for the smoke test); its numbers mean little.

Timing on a shared machine: every row is a series of timing samples (≥ 0.25 s each) after a warm-up, and its rate
is a median over samples, so a burst of someone else's work skews one sample, not the row. Each sample records the
share of the machine's CPU that other processes used meanwhile (from ``/proc/stat``); a row's figure comes from its
quiet samples when it has enough, and the report says when it has not. A row also stops at a wall-time cap, so a
loaded machine cannot stretch the run without bound.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from benchmarks.packing import Packer, PackLevel
from tuning.engine import precision
from tuning.engine.config import ModelConfig, TrainConfig
from tuning.engine.data import Corpus, load_corpus
from tuning.engine.model import CharLM
from tuning.engine.train import STATUS_RUNNING, train
from tuning.errors import UserError
from tuning.files import atomic_write_text
from tuning.machine import OthersCpu, cpu_model

DEFAULT_OUT = Path("benchmarks/engine.md")
CORPUS = "tinyshakespeare"
CELL_ORDER = ("rnn", "lstm", "gru")
HIDDEN_SIZES = (128, 256, 512)
# precision bf16 rows (cell, H, batch): the goal's model at its two best batches, and the small LSTM
BF16_ROWS = (("lstm", 128, 64), ("lstm", 512, 64), ("lstm", 512, 128))
EMBED_DIM, SEQ_LEN, BATCH = 128, 50, 64  # TrainConfig's defaults for embed, seq_len and batch
# Extra batch sizes for the widest models: 128 is in the Shakespeare search space, 256 is a diagnostic only.
EXTRA_BATCHES: dict[tuple[str, int], tuple[int, ...]] = {
    ("rnn", 512): (128,),
    ("lstm", 512): (128, 256),
    ("gru", 512): (128,),
}
HOMEWORK_BATCH = 128
# Packed one-thread trials (cell, H, batch): the goal's model at the default batch and at 128 (in the search space).
PACKED_ROWS = (("lstm", 512, 64), ("lstm", 512, 128))
HOMEWORK_HIDDEN = (128, 512)
PACKED_PROBE_REPEATS = 3  # a packed window has one probe on each side, not one between every two samples
LR = 2e-3
GOAL_RATIO = 40.0  # our targets/s over the homework's, LSTM H=128 seq 50
GOAL_SHARE = 0.60  # share of the matmul peak, LSTM H=512


QUIET = 0.10  # a timing sample is "quiet" when other processes used < 10% of the machine's CPU meanwhile
MIN_QUIET = 3  # quiet samples needed before a row's figure is taken from them alone
SAMPLE_S = 0.25  # least timed length of one sample (trainer iterations, or a chunk of homework-style batches)
ITER_S = 0.05  # aimed length of one trainer iteration, at ASSUMED_GFLOPS; a sample gathers several
ASSUMED_GFLOPS = 100.0  # only to size trainer iterations before anything is measured
WALL_CAP = 2.0  # a row stops after WALL_CAP × --seconds of wall time past its warm-up, whatever it has


@dataclass(frozen=True)
class Plan:
    seconds: float  # timed seconds per trainer row and per homework-style row
    threads: int
    quick: bool
    matmul_sizes: tuple[int, ...]
    matmul_repeats: int
    max_steps_per_iter: int  # trainer steps per reported iteration, at most
    sample_s: float  # least timed seconds per sample
    min_samples: int
    homework_warmup: int  # batches, at least
    warmup_s: float  # warm-up time before the first sample, at least (trainer and homework-style)

    @property
    def wall_cap_s(self) -> float:
        """Wall time past warm-up after which a row stops with what it has (none in quick mode)."""
        return WALL_CAP * self.seconds if self.seconds else math.inf

    @classmethod
    def make(cls, seconds: float, threads: int, quick: bool) -> Plan:
        if quick:
            return cls(seconds=0.0, threads=threads, quick=True, matmul_sizes=(256, 512), matmul_repeats=2,
                       max_steps_per_iter=1, sample_s=0.0, min_samples=2, homework_warmup=1, warmup_s=0.0)
        return cls(seconds=seconds, threads=threads, quick=False, matmul_sizes=(1024, 2048), matmul_repeats=10,
                   max_steps_per_iter=20, sample_s=SAMPLE_S, min_samples=5, homework_warmup=5, warmup_s=1.0)


@dataclass
class Samples:
    """Timing samples of one row: (units done, seconds, other processes' share of the CPU meanwhile)."""

    units: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)

    def add(self, units: float, seconds: float, others: float) -> None:
        self.units.append(units)
        self.seconds.append(seconds)
        self.others.append(others)

    def __len__(self) -> int:
        return len(self.units)

    def rates(self, quiet_only: bool = False) -> list[float]:
        return [u / s for u, s, o in zip(self.units, self.seconds, self.others, strict=True)
                if not quiet_only or o < QUIET]

    @property
    def median(self) -> float:
        return statistics.median(self.rates())

    @property
    def mean(self) -> float:
        return sum(self.units) / sum(self.seconds)

    @property
    def quiet_count(self) -> int:
        return len(self.rates(quiet_only=True))

    @property
    def quiet_median(self) -> float:
        quiet = self.rates(quiet_only=True)
        return statistics.median(quiet) if quiet else math.nan

    @property
    def figure(self) -> float:
        """The row's rate: the median of quiet samples when there are enough, else of all samples."""
        return self.figure_of(self.rates())

    @property
    def from_quiet(self) -> bool:
        return self.quiet_count >= MIN_QUIET

    def figure_of(self, values: list[float]) -> float:
        """The median of per-sample ``values`` (aligned with the samples), over the quiet samples when there are
        enough, as :attr:`figure` is taken."""
        if len(values) != len(self):
            raise ValueError(f"{len(values)} values for {len(self)} samples")
        quiet = [v for v, o in zip(values, self.others, strict=True) if o < QUIET]
        return statistics.median(quiet if len(quiet) >= MIN_QUIET else values)

    @property
    def others_mean(self) -> float:
        known = [(o, s) for o, s in zip(self.others, self.seconds, strict=True) if not math.isnan(o)]
        return sum(o * s for o, s in known) / sum(s for _, s in known) if known else math.nan


def side_by_side_share(samples: Samples, probes: list[float], units_to_gflop: float) -> float:
    """The share of the matmul peak measured side by side: for each sample, its GFLOP/s over the mean of the peak
    probes taken just before and just after it; the median of those ratios as :attr:`Samples.figure` takes it.

    ``probes`` has one more entry than ``samples`` (one before the first sample, one after each);
    ``units_to_gflop`` converts a sample's units (characters) to GFLOP."""
    if len(probes) != len(samples) + 1:
        raise ValueError(f"{len(probes)} peak probes for {len(samples)} samples: need one more probe than samples")
    ratios = [rate * units_to_gflop / ((before + after) / 2)
              for rate, before, after in zip(samples.rates(), probes, probes[1:], strict=False)]
    return samples.figure_of(ratios)


# --- the machine -------------------------------------------------------------------------------------------------


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# --- 1. matmul peak ----------------------------------------------------------------------------------------------


def mm_gflops(m: int, k: int, n: int, repeats: int, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-``repeats`` GFLOP/s of a (m×k)·(k×n) ``torch.mm`` in ``dtype`` (2·m·k·n FLOPs)."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    out = torch.empty(m, n, dtype=dtype)
    inner = max(1, int(2e9 // (2 * m * k * n)))  # ≥ ~2 GFLOP per sample, so small products time well
    torch.mm(a, b, out=out)  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=out)
        best = min(best, (time.perf_counter() - start) / inner)
    return 2 * m * k * n / best / 1e9


class PeakProbe:
    """The matmul rate of this moment: one timed ``torch.mm`` of n×n matrices (the median of ``repeats``).

    The peak above is a best of repeats. On this shared virtual machine the rate of the very same product swings
    between two levels (one thread, n=2048, 154 products in 20 s: 107 to 153 GFLOP/s, median 141; 2026-11-29), so a
    row's median rate over a best-of peak compares the row's typical moment with the machine's best one. Probes
    taken between a row's samples, outside its training clock, give a peak measured side by side with the row."""

    def __init__(self, n: int, dtype: torch.dtype = torch.float32, repeats: int = 1) -> None:
        self.n, self.dtype, self.repeats = n, dtype, repeats
        self._tensors: tuple[torch.Tensor, ...] = ()  # made on first call: a probe sent to a worker pickles small

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tensors": ()}

    def __call__(self) -> float:
        if not self._tensors:
            n, dtype = self.n, self.dtype
            self._tensors = (torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype),
                             torch.empty(n, n, dtype=dtype))
            torch.mm(*self._tensors[:2], out=self._tensors[2])  # untimed: first touches of `out` fault pages in
        a, b, out = self._tensors
        times = []
        for _ in range(self.repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - start)
        return 2 * self.n**3 / statistics.median(times) / 1e9


def matmul_peak(plan: Plan, dtype: torch.dtype = torch.float32) -> dict[int, float]:
    return {n: mm_gflops(n, n, n, plan.matmul_repeats, dtype) for n in plan.matmul_sizes}


# --- 2. our trainer ----------------------------------------------------------------------------------------------


@dataclass
class TrainerRow:
    cell: str
    hidden: int
    batch: int
    steps: int  # timed steps
    samples: Samples  # in training characters
    train_flops_per_char: float
    capped: bool  # stopped by the wall-time cap before its timed seconds
    precision: str = "fp32"
    probes: list[float] = field(default_factory=list)  # matmul GFLOP/s before the first sample and after each

    @property
    def chars_per_s(self) -> float:
        return self.samples.figure

    @property
    def gflops(self) -> float:
        return self.chars_per_s * self.train_flops_per_char / 1e9

    @property
    def side_peak(self) -> float:
        """The median of the row's peak probes (GFLOP/s)."""
        return statistics.median(self.probes) if self.probes else math.nan

    @property
    def side_share(self) -> float:
        """The share of the matmul peak measured side by side with the row's samples (see :class:`PeakProbe`)."""
        if not self.probes:
            return math.nan
        return side_by_side_share(self.samples, self.probes, self.train_flops_per_char / 1e9)


class _Enough(Exception):
    """Raised from the report callback to end a run once its timed window is long enough."""


def steps_per_iteration(config: TrainConfig, vocab_size: int, plan: Plan) -> int:
    """Steps that take about ``ITER_S`` at ``ASSUMED_GFLOPS``, so that a sample ends soon after ``sample_s``."""
    from tuning.engine import complexity  # imports calflops (and transformers): slow, so only here

    flops = complexity.measure(CharLM(config.model_config(vocab_size)), config.seq_len).train_flops_per_char
    steps = ITER_S * ASSUMED_GFLOPS * 1e9 / (flops * config.chars_per_step)
    return max(1, min(plan.max_steps_per_iter, round(steps)))


def trainer_config(cell: str, hidden: int, batch: int, plan: Plan, vocab_size: int, threads: int,
                   precision: str = "fp32") -> TrainConfig:
    """A benchmark row's config: runs until stopped, validation cut to one window and no checkpoint due (both lie
    outside ``train_time_s`` anyway; this only saves wall time), iterations of about ``ITER_S``."""
    base = TrainConfig(corpus=CORPUS, cell=cell, seq_len=SEQ_LEN, embed_dim=EMBED_DIM, hidden_size=hidden,
                       batch_size=batch, lr=LR, max_iters=10**9, checkpoint_every=10**9, val_max_chars=SEQ_LEN,
                       sample_chars=1, threads=threads, device="cpu", seed=0, precision=precision)
    steps = steps_per_iteration(base, vocab_size, plan)
    return TrainConfig.from_dict({**base.to_dict(), "chars_per_iter": steps * base.chars_per_step})


def bench_trainer(cell: str, hidden: int, batch: int, plan: Plan, corpus: Corpus,
                  precision: str = "fp32") -> TrainerRow:
    """Run :func:`tuning.engine.train.train` and time it by its own metrics, after warm-up iterations (≥ ``warmup_s``).

    A sample gathers consecutive iterations until their ``train_time_s`` increments reach ``sample_s``; it counts
    their ``chars_trained`` increments. The run is stopped from the report callback after ``plan.seconds`` of timed
    training (or ``WALL_CAP`` times that in wall time, when others load the machine), so it never reaches its last
    iteration (whose inference timing and sampling are not training).
    """
    config = trainer_config(cell, hidden, batch, plan, corpus.vocab_size, plan.threads, precision)
    samples = Samples()
    state: dict[str, Any] = {}
    probe = PeakProbe(max(plan.matmul_sizes), torch.bfloat16 if precision == "bf16" else torch.float32)
    probes: list[float] = []

    def report(metrics: dict[str, Any], _checkpoint: Path | None) -> None:
        chars, seconds = int(metrics["chars_trained"]), float(metrics["train_time_s"])
        state["flops"] = float(metrics["train_flops_per_char"])
        if "start" not in state:  # warming up
            if seconds >= plan.warmup_s:
                probes.append(probe())  # outside train_time_s, like every probe: this callback is off its clock
                state.update(start=(chars, seconds), meter=OthersCpu(), wall=time.perf_counter(), first=chars)
            return
        (chars0, seconds0), meter = state["start"], state["meter"]
        if seconds - seconds0 < plan.sample_s:
            return
        samples.add(chars - chars0, seconds - seconds0, meter.share())
        probes.append(probe())
        state.update(start=(chars, seconds), meter=OthersCpu(), steps=(chars - state["first"]) // config.chars_per_step)
        if metrics["trial_status"] != STATUS_RUNNING:
            return
        enough = len(samples) >= plan.min_samples and sum(samples.seconds) >= plan.seconds
        state["capped"] = not enough and time.perf_counter() - state["wall"] >= plan.wall_cap_s
        if enough or state["capped"]:
            raise _Enough

    try:
        metrics = train(config, report, corpus=corpus)
        raise RuntimeError(f"{cell} H={hidden} batch={batch}: training ended early ({metrics.get('trial_status')})")
    except _Enough:
        pass
    return TrainerRow(cell=cell, hidden=hidden, batch=batch, steps=state["steps"], samples=samples,
                      train_flops_per_char=state["flops"], capped=state["capped"], precision=precision, probes=probes)


# --- 3. the homework-style trainer -------------------------------------------------------------------------------


class StrideOneWindows(Dataset):
    """Every window of ``seq_len`` characters, stride 1, and the character after it: the homework's dataset."""

    def __init__(self, ids: torch.Tensor, seq_len: int) -> None:
        self.ids, self.seq_len = ids, seq_len

    def __len__(self) -> int:
        return len(self.ids) - self.seq_len

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[i : i + self.seq_len], self.ids[i + self.seq_len]


@dataclass
class HomeworkRow:
    hidden: int
    batches: int  # timed batches: a count fixed from the warm-up's pace (fewer only if capped)
    samples: Samples  # one per chunk of batches, in targets
    capped: bool  # stopped by the wall-time cap before its batch count

    @property
    def targets_per_s(self) -> float:
        return self.samples.figure


def bench_homework(hidden: int, plan: Plan, corpus: Corpus) -> HomeworkRow:
    """Warm up (≥ ``homework_warmup`` batches, ≥ ``warmup_s``), fix the batch count from the warm-up's pace
    (≈ ``plan.seconds``), then time it in chunks; stop early only past ``WALL_CAP × plan.seconds`` of wall time.

    A batch's time covers what the homework's loop did per batch: fetching it from the DataLoader (128
    ``__getitem__`` calls and a collate), forward, last-position loss, backward and the AdamW step.
    """
    torch.manual_seed(0)
    model = CharLM(ModelConfig("lstm", corpus.vocab_size, embed_dim=EMBED_DIM, hidden_size=hidden))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    loader = DataLoader(StrideOneWindows(corpus.train_ids, SEQ_LEN), batch_size=HOMEWORK_BATCH, shuffle=True)
    batches = iter(loader)

    def run_batches(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            x, y = next(batches)
            loss = F.cross_entropy(model(x, last_only=True), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    warm_batches, warm_s = plan.homework_warmup, run_batches(plan.homework_warmup)
    while warm_s < plan.warmup_s:
        warm_s += run_batches(1)
        warm_batches += 1
    pace = warm_s / warm_batches
    chunk = max(1, round(plan.sample_s / pace))
    chunks = max(plan.min_samples, math.ceil(plan.seconds / (chunk * pace)))
    samples, start, capped = Samples(), time.perf_counter(), False
    for i in range(chunks):
        if i and time.perf_counter() - start >= plan.wall_cap_s:
            capped = True
            break
        meter = OthersCpu()
        seconds = run_batches(chunk)
        samples.add(chunk * HOMEWORK_BATCH, seconds, meter.share())
    return HomeworkRow(hidden=hidden, batches=len(samples) * chunk, samples=samples, capped=capped)


# --- 5. as the search runs trials -------------------------------------------------------------------------------


@dataclass
class PackedRow:
    cell: str
    hidden: int
    batch: int
    level: PackLevel  # its trials run one torch thread each
    peak_gflops: float  # float32 matmul peak at the same total thread count (level.trials threads)

    @property
    def chars_per_s(self) -> float:
        return self.level.aggregate

    @property
    def gflops(self) -> float:
        return self.chars_per_s * self.level.train_flops_per_char / 1e9

    @property
    def share(self) -> float:
        return self.gflops / self.peak_gflops

    @property
    def side_share(self) -> float:
        """Of the matmul rate the trials' own one-thread probes measured right before and after their window."""
        return self.gflops / self.level.side_peak

    @property
    def contended(self) -> bool:
        """Other processes used ``QUIET`` or more of the CPU during some trial's window: not a fair measurement."""
        return self.level.others >= QUIET


def bench_packed(packer: Packer, plan: Plan, vocab_size: int, peaks: Mapping[int, float], log: Callable[[str], None],
                 t0: float) -> list[PackedRow]:
    """LSTM H=512 as 1 and as ``plan.threads`` one-thread trials at once, each in its own process."""
    rows = []
    for cell, hidden, batch in PACKED_ROWS:
        if plan.quick and batch != BATCH:
            continue
        config = trainer_config(cell, hidden, batch, plan, vocab_size, threads=1)
        for n in sorted({1, plan.threads}):
            log(f"[{time.perf_counter() - t0:5.0f} s] packed: {n} one-thread trial(s) of {cell} H={hidden} "
                f"batch={batch} …")
            level = packer.run(n, config, plan.seconds, warmup_s=plan.warmup_s,
                               probe=PeakProbe(max(plan.matmul_sizes), repeats=PACKED_PROBE_REPEATS))
            if level.errors:
                raise RuntimeError(f"packed {cell} H={hidden} batch={batch} × {n}: " + "; ".join(level.errors))
            rows.append(PackedRow(cell, hidden, batch, level, peaks[n]))
    return rows


# --- the report --------------------------------------------------------------------------------------------------


def _num(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f}%"


@dataclass
class Results:
    plan: Plan
    started: dt.datetime
    load_start: str
    load_end: str = ""
    wall_s: float = 0.0
    peak: dict[int, float] = field(default_factory=dict)
    trainer: list[TrainerRow] = field(default_factory=list)
    homework: list[HomeworkRow] = field(default_factory=list)
    gemm: dict[int, float] = field(default_factory=dict)  # batch → GFLOP/s of LSTM H=512's per-step GEMM
    peak_bf16: dict[int, float] = field(default_factory=dict)  # bfloat16 torch.mm, same sizes
    bf16: list[TrainerRow] = field(default_factory=list)  # precision bf16 rows (BF16_ROWS)
    bf16_skipped: str = ""  # why there are no bf16 rows: this CPU cannot train in bf16 (tuning.engine.precision)
    peak_1thread: dict[int, float] = field(default_factory=dict)  # float32 torch.mm on one thread, same sizes
    packed: list[PackedRow] = field(default_factory=list)  # one-thread trials packed on the cores (PACKED_ROWS)
    note: str = ""

    @property
    def peak_gflops(self) -> float:
        return max(self.peak.values())

    def row(self, cell: str, hidden: int, batch: int = BATCH) -> TrainerRow:
        return next(r for r in self.trainer if (r.cell, r.hidden, r.batch) == (cell, hidden, batch))

    def fp32_of(self, r: TrainerRow) -> TrainerRow | None:
        """The float32 row of the same model and batch as ``r`` (a bf16 row), if the run has one."""
        return next((f for f in self.trainer if (f.cell, f.hidden, f.batch) == (r.cell, r.hidden, r.batch)), None)

    def lstm512(self) -> list[TrainerRow]:
        return sorted((r for r in self.trainer if (r.cell, r.hidden) == ("lstm", 512)), key=lambda r: r.batch)

    def share(self, r: TrainerRow) -> float:
        """Of the peak in the row's own precision: a bf16 row against the bf16 matmul peak."""
        return r.gflops / (self.peak_bf16_gflops if r.precision == "bf16" else self.peak_gflops)

    @property
    def peak_bf16_gflops(self) -> float:
        return max(self.peak_bf16.values()) if self.peak_bf16 else math.nan

    def packed_row(self, batch: int, trials: int) -> PackedRow | None:
        return next((r for r in self.packed if (r.batch, r.level.trials) == (batch, trials)), None)

    def ratio(self, hidden: int) -> tuple[float, float, float]:
        hw = next(h for h in self.homework if h.hidden == hidden)
        ours = self.row("lstm", hidden).chars_per_s
        return ours / hw.targets_per_s, ours, hw.targets_per_s


def _probe_cell(r: TrainerRow) -> str:
    """The row's median peak probe and their range: how much the machine's speed moved during the row."""
    return f"{r.side_peak:.1f} [{min(r.probes):.0f}–{max(r.probes):.0f}]" if r.probes else "n/a"


def _rate_cells(s: Samples) -> str:
    """The all-samples median, mean and quiet median (with its count) of a row, as table cells."""
    mark = "" if s.from_quiet else " †"
    quiet = f"{_num(s.quiet_median)} ({s.quiet_count})" if s.quiet_count else "– (0)"
    return f"{_num(s.median)}{mark} | {_num(s.mean)} | {quiet}"


def _rising(values: list[float]) -> bool:
    """Up from first to last, never down by more than 5% (timing noise) on the way."""
    return values[-1] > values[0] and all(b >= 0.95 * a for a, b in zip(values, values[1:], strict=False))


def explanation(res: Results) -> str:
    """The short paragraph under the table: why LSTM H=512 gets the share of the peak it gets.

    The mechanism is fixed text (checked with ``torch.profiler`` on torch 2.13); every number and every claim about
    this run's numbers (rising with the batch or not, contended or not) is decided from the measurements.
    """
    rows = res.lstm512()
    shares = ", ".join(f"{_pct(res.share(r))} at batch {r.batch} ({r.gflops:.0f} GFLOP/s)" for r in rows)
    gemm_b = sorted(res.gemm)
    gemm = ", ".join(f"{_pct(res.gemm[b] / res.peak_gflops)} at B={b}" for b in gemm_b)
    gemm_rises = _rising([res.gemm[b] for b in gemm_b])
    rows_rise = _rising([r.gflops for r in rows])
    contended = [r for r in rows if not r.samples.from_quiet]
    text = [
        f"**Why LSTM H=512 is at {_pct(res.share(res.row('lstm', 512)))} of the matmul peak at batch {BATCH}.** "
        f"Measured: {shares}. On CPU, PyTorch trains a float32 `nn.LSTM` through oneDNN (`aten::mkldnn_rnn_layer` "
        f"and `aten::mkldnn_rnn_layer_backward` in the profiler). Its input projection is one large GEMM over all "
        f"{SEQ_LEN} steps, but the recurrence is {SEQ_LEN} dependent GEMMs of (B×H)·(H×4H) forward and about twice "
        f"that backward, each waiting for the step before and followed by the gate nonlinearities; the trainer also "
        f"pays for the embedding, the head and loss at every position, gradient clipping and AdamW, none of them "
        f"square GEMMs. The per-step GEMM alone (`torch.mm` B×512 · 512×2048, best of {res.plan.matmul_repeats}) "
        f"reaches {gemm} of the square-matrix peak",
    ]
    if gemm_rises:
        text.append(": a skinny product with B rows does little work per synchronisation of the threads, so a "
                    "larger batch brings it nearer the peak")
        text.append(", and the trainer's share rises with the batch as well." if rows_rise else
                    "; in this run the trainer's share does not rise with the batch in step, so something other "
                    "than GEMM shape (most likely other processes, see below) dominated.")
    else:
        text.append("; here they do not rise with B as a GEMM's efficiency does when its smallest dimension "
                    "grows, so this run's timings are disturbed.")
    if contended:
        worst = max(r.samples.others_mean for r in rows)
        text.append(
            f" **This run is not a fair test of the goal:** other processes used up to {_pct(worst)} of the CPU "
            f"during the LSTM H=512 rows and {len(contended)} of them had fewer than {MIN_QUIET} quiet samples (†). "
            "With two threads on two cores, another process on either core stalls every parallel region of ours, "
            "so these rates (and the peak they are divided by) do not show what the machine can do; rerun on an "
            "idle machine before judging the goal."
        )
    text.append(" The FLOPs are calflops' forward count ×3 (`train_flops_per_char`), an estimate, not counted "
                "operations.")
    return "".join(text)


def _caveat(*samples: Samples) -> str:
    if all(s.from_quiet for s in samples):
        return ""
    return " (†: measured while other processes loaded the CPU, so not a fair verdict)"


def _pct1(x: float) -> str:
    """A share with one decimal, for verdicts: 59.6% is not met, and "60%" would not say why."""
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def _met(share: float) -> str:
    return "met" if share >= GOAL_SHARE else "not met"


def goals(res: Results) -> list[str]:
    ratio, ours, hw = res.ratio(128)
    lines = [
        f"- Goal 1, ≥ {GOAL_RATIO:.0f}× homework-style targets/s for LSTM H=128 seq {SEQ_LEN}: "
        f"**{'met' if ratio >= GOAL_RATIO else 'not met'}**: {ratio:.1f}× ({_num(ours)} vs {_num(hw)} targets/s)"
        + _caveat(res.row("lstm", 128).samples, next(h for h in res.homework if h.hidden == 128).samples),
    ]
    b64 = res.row("lstm", 512)
    others = ", ".join(f"{_pct(res.share(r))} at batch {r.batch}" for r in res.lstm512() if r.batch != BATCH)
    side_others = ", ".join(f"{_pct(r.side_share)} at batch {r.batch}" for r in res.lstm512() if r.batch != BATCH)
    lines.append(
        f"- Goal 2, ≥ {GOAL_SHARE:.0%} of the measured matmul peak for LSTM H=512, at the trainer's default batch "
        f"{BATCH}: against the best-of-{res.plan.matmul_repeats} peak **{_met(res.share(b64))}**: "
        f"{_pct1(res.share(b64))} ({b64.gflops:.1f} of {res.peak_gflops:.1f} GFLOP/s)"
        + (f" (other batches, not the default: {others})" if others else "")
        + f"; against the side-by-side peak **{_met(b64.side_share)}**: {_pct1(b64.side_share)}"
        + (f" (other batches: {side_others})" if side_others else "") + _caveat(b64.samples)
    )
    packed = [r for r in res.packed if r.level.trials == res.plan.threads > 1]
    if packed:
        lines.append(
            f"- Goal 2 as the search runs trials (`--cpus-per-trial 1`: {res.plan.threads} one-thread trials packed "
            f"on {res.plan.threads} cores): " + ", ".join(
                f"at batch {r.batch} ({r.gflops:.1f} GFLOP/s), against the {res.plan.threads}-thread best-of peak "
                f"**{_met(r.share)}**: {_pct1(r.share)}, against the trials' side-by-side peak "
                f"**{_met(r.side_share)}**: {_pct1(r.side_share)}" + (" (†)" if r.contended else "") for r in packed))
    mixed = [(r, f) for r in res.bf16 if (r.cell, r.hidden) == ("lstm", 512) and (f := res.fp32_of(r)) is not None]
    if mixed:
        lines.append("- With `precision: bf16` (not the default; judged against the bf16 peak): " + ", ".join(
            f"{_pct(res.share(r))} at batch {r.batch} ({r.chars_per_s / f.chars_per_s:.2f}× the float32 chars/s)"
            for r, f in mixed))
    return lines


def packed_section(res: Results) -> list[str]:
    p = res.plan
    peak1 = max(res.peak_1thread.values())
    lines = [
        "## As the search runs trials: one-thread trials packed on the cores",
        "",
        "`python -m tuning.search` gives every trial `--cpus-per-trial` CPUs (default 1) and as many torch threads, "
        f"so on this machine {p.threads} one-thread trials train at once. Here each trial is its own spawned process "
        "(`benchmarks.packing`, as Ray's workers are) running the same trainer and model as above with one thread; "
        f"each warms up (≥ {p.warmup_s:g} s of training), all wait at a barrier, then train the same ≥ {p.seconds:g} "
        "s window; chars/s is their sum by the wall clock of that window (evaluation of one window between "
        "iterations included). The share is of the float32 matmul peak at the same total thread count: "
        f"one-thread peak {peak1:.1f} GFLOP/s ("
        + ", ".join(f"n={n}: {g:.1f}" for n, g in res.peak_1thread.items())
        + f"), {p.threads}-thread peak {res.peak_gflops:.1f} GFLOP/s (above). The side-by-side peak: each trial "
        f"times {PACKED_PROBE_REPEATS} one-thread n={max(p.matmul_sizes)} products (their median) right before and "
        "right after its window, while the other trials do the same or still train; the mean of the two, added up "
        "over the trials. \"Others' CPU\": the most any "
        "trial's window saw used by processes other than the trials (†: 10% or more, not a fair measurement).",
        "",
        "| trials × threads | cell | H | batch | chars/s per trial | chars/s, all trials | train FLOP/char "
        "| achieved GFLOP/s | matmul peak (GFLOP/s) | % of matmul peak | side-by-side peak (GFLOP/s) "
        "| % of side-by-side peak | others' CPU |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res.packed:
        per = ", ".join(_num(x.wall_chars_per_s) for x in r.level.rates)
        mark = " †" if r.contended else ""
        lines.append(
            f"| {r.level.trials} × 1 | {r.cell} | {r.hidden} | {r.batch} | {per} | {_num(r.chars_per_s)}{mark} "
            f"| {_num(r.level.train_flops_per_char)} | {r.gflops:.1f} | {r.peak_gflops:.1f} | {_pct(r.share)} "
            f"| {r.level.side_peak:.1f} | {_pct(r.side_share)} | {_pct(r.level.others)} |"
        )
    for t in res.lstm512():
        if any(q.batch == t.batch for q in res.packed):
            lines.append(
                f"| 1 × {p.threads} (the table above) | {t.cell} | {t.hidden} | {t.batch} | {_num(t.chars_per_s)} "
                f"| {_num(t.chars_per_s)} | {_num(t.train_flops_per_char)} | {t.gflops:.1f} "
                f"| {res.peak_gflops:.1f} | {_pct(res.share(t))} | {_probe_cell(t)} | {_pct(t.side_share)} "
                f"| {_pct(t.samples.others_mean)} |"
            )
    lines.append("")
    one = res.packed_row(BATCH, p.threads)
    if one is not None and p.threads > 1:
        single = res.row("lstm", 512)
        gain = one.chars_per_s / single.chars_per_s
        text = (f"At batch {BATCH}, {p.threads} one-thread trials train {gain:.2f}× the characters per second of one "
                f"{p.threads}-thread trainer ({_pct(one.share)} against {_pct(res.share(single))} of the same peak).")
        if gain > 1.05:
            text += (f" The likely reason: with one thread per trial, each of the {SEQ_LEN} dependent per-step GEMMs "
                     "(forward and backward) and the gate nonlinearities after it run on one core, with no "
                     "synchronisation between threads at every small product.")
        lines += [text, ""]
    return lines


def render(res: Results) -> str:
    p = res.plan
    stamp = res.started.strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick (a few steps per row; numbers mean little)" if p.quick else f"full ({p.seconds:g} s timed per row)"
    lines = [
        "# Engine benchmark",
        "",
        f"{stamp} · CPU: {cpu_model()} ({default_threads()} CPUs available) · torch {torch.__version__} · "
        f"torch threads: {torch.get_num_threads()} · mode: {mode} · wall time {res.wall_s:.0f} s",
        "",
    ]
    if res.note:
        lines += [f"Note: {res.note}", ""]
    lines += [
        f"Load average (1, 5, 15 min) at start: {res.load_start}; at end: {res.load_end}. "
        f"Rates are medians over timing samples of at least {p.sample_s:g} s each. "
        "\"Others' CPU\" is the share of all CPUs' time that other processes (or hypervisor steal) used during a "
        f"row's samples; a sample is *quiet* when that share was under {QUIET:.0%}. "
        "A row's figure (GFLOP/s, share, ratios, goals) is the median of its quiet samples when it has at least "
        f"{MIN_QUIET}, else the median of all samples (marked †), because the matmul peak, a best of repeats, is a "
        f"quiet figure too. ‡: the row hit its wall-time cap ({WALL_CAP:g} × {p.seconds:g} s past warm-up) before "
        "its timed seconds or batch count, because others slowed it.",
        "",
        "## Matmul peak",
        "",
        f"Matmul peak: {res.peak_gflops:.1f} GFLOP/s (float32 `torch.mm`, {p.threads} threads, best of "
        f"{p.matmul_repeats}; " + ", ".join(f"n={n}: {g:.1f}" for n, g in res.peak.items()) + ")",
        "",
        "Side-by-side peak: the rate of the same product swings on this shared virtual machine (the best of a few "
        "repeats is its best moment, a row's median its typical one), so every row also times one "
        f"n={max(p.matmul_sizes)} product (in the row's precision) before its first sample and after each, outside "
        "the training clock. A row's *% of side-by-side peak* is the median over its samples of the sample's "
        "GFLOP/s over the mean of the probes just before and after it (quiet samples when it has enough); its "
        "*side-by-side peak* column is the median probe [the lowest–the highest]. Both peaks are measured in this "
        "run; the goal is judged "
        "against both.",
        "",
        f"## Our trainer (`tuning.engine.train.train`): tiny Shakespeare, embed {EMBED_DIM}, seq_len {SEQ_LEN}",
        "",
        f"A sample is consecutive training iterations after warm-up iterations (≥ {p.warmup_s:g} s): the "
        "increments of their reported chars_trained and train_time_s (evaluation is outside that clock). Every "
        "position is a target, so chars/s = targets/s. GFLOP/s = the row's chars/s × calflops' "
        "`train_flops_per_char` (3 × forward).",
        "",
        "| cell | H | batch | timed steps | chars/s (median) | chars/s (mean) | chars/s quiet (n) "
        "| train FLOP/char | achieved GFLOP/s | % of matmul peak | side-by-side peak (GFLOP/s) "
        "| % of side-by-side peak | others' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res.trainer:
        lines.append(
            f"| {r.cell} | {r.hidden} | {r.batch} | {r.steps}{' ‡' if r.capped else ''} | {_rate_cells(r.samples)} "
            f"| {_num(r.train_flops_per_char)} | {r.gflops:.1f} | {_pct(res.share(r))} | {_probe_cell(r)} "
            f"| {_pct(r.side_share)} | {_pct(r.samples.others_mean)} |"
        )
    lines += [
        "",
        f"## Homework-style trainer: stride-1 `Dataset` → `DataLoader(batch_size={HOMEWORK_BATCH}, shuffle=True)` "
        "→ last-position loss, AdamW",
        "",
        f"Same model (LSTM, embed {EMBED_DIM}, seq_len {SEQ_LEN}); one target per window; a batch's time includes "
        f"loading it. The batch count is fixed after a warm-up (≥ {p.homework_warmup} batches, ≥ {p.warmup_s:g} s) "
        f"and timed in chunks (one sample per chunk). \"Ours\" is the trainer row above at batch {BATCH}.",
        "",
        "| model | timed batches | targets/s (median) | targets/s (mean) | targets/s quiet (n) | ours targets/s "
        "| ratio | others' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h in res.homework:
        ratio, ours, _ = res.ratio(h.hidden)
        lines.append(f"| lstm H={h.hidden} | {h.batches}{' ‡' if h.capped else ''} | {_rate_cells(h.samples)} "
                     f"| {_num(ours)} | {ratio:.1f}× | {_pct(h.samples.others_mean)} |")
    lines.append("")
    for h in res.homework:
        ratio, ours, hw = res.ratio(h.hidden)
        lines += [f"Homework-style ratio, LSTM H={h.hidden} seq {SEQ_LEN}: {ratio:.1f}× (ours {_num(ours)} targets/s "
                  f"at batch {BATCH} / homework-style {_num(hw)} targets/s at batch {HOMEWORK_BATCH})", ""]
    if res.bf16:
        lines += [
            "## Mixed precision: the same trainer with `precision: bf16`",
            "",
            "bfloat16 autocast on the training forward pass (weights, optimizer and evaluation stay float32). "
            f"bf16 matmul peak: {res.peak_bf16_gflops:.1f} GFLOP/s (bfloat16 `torch.mm`, best of "
            f"{p.matmul_repeats}; " + ", ".join(f"n={n}: {g:.1f}" for n, g in res.peak_bf16.items()) + "). "
            "FLOPs per character are the same count as the float32 rows'; the share is of the bf16 peak.",
            "",
            "| cell | H | batch | timed steps | bf16 chars/s (median) | chars/s (mean) | chars/s quiet (n) "
            "| float32 chars/s | speed-up | achieved GFLOP/s | % of bf16 peak | % of side-by-side bf16 peak "
            "| others' CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in res.bf16:
            fp32 = res.fp32_of(r)
            speed = f"{r.chars_per_s / fp32.chars_per_s:.2f}×" if fp32 else "–"
            lines.append(
                f"| {r.cell} | {r.hidden} | {r.batch} | {r.steps}{' ‡' if r.capped else ''} "
                f"| {_rate_cells(r.samples)} | {_num(fp32.chars_per_s) if fp32 else '–'} | {speed} "
                f"| {r.gflops:.1f} | {_pct(res.share(r))} | {_pct(r.side_share)} | {_pct(r.samples.others_mean)} |"
            )
        lines.append("")
    elif res.bf16_skipped:
        lines += ["## Mixed precision: the same trainer with `precision: bf16`", "",
                  f"No rows: {res.bf16_skipped}.", ""]
    if res.packed:
        lines += packed_section(res)
    lines += ["## Goals", "", *goals(res), "", "## LSTM H=512 and the matmul peak", ""]
    lines += [
        f"Per-step recurrent GEMM of LSTM H=512 alone (`torch.mm` B×512 · 512×2048, best of {p.matmul_repeats}): "
        + ", ".join(f"B={b}: {g:.1f} GFLOP/s ({_pct(g / res.peak_gflops)})" for b, g in sorted(res.gemm.items())),
        "",
        explanation(res),
        "",
    ]
    return "\n".join(lines)


def run(plan: Plan, note: str = "", log: Callable[[str], None] = print) -> Results:
    torch.set_num_threads(plan.threads)
    res = Results(plan=plan, started=dt.datetime.now(dt.timezone.utc), load_start=load_average(), note=note)
    t0 = time.perf_counter()
    corpus = load_corpus(CORPUS)
    log(f"matmul peak, sizes {plan.matmul_sizes} …")
    res.peak = matmul_peak(plan)
    res.gemm = {b: mm_gflops(b, 512, 4 * 512, plan.matmul_repeats) for b in (64, 128, 256)}
    for hidden in HOMEWORK_HIDDEN:
        log(f"[{time.perf_counter() - t0:5.0f} s] homework-style lstm H={hidden} …")
        res.homework.append(bench_homework(hidden, plan, corpus))
    for cell in CELL_ORDER:
        for hidden in HIDDEN_SIZES:
            extra = () if plan.quick else EXTRA_BATCHES.get((cell, hidden), ())
            for batch in (BATCH, *extra):
                log(f"[{time.perf_counter() - t0:5.0f} s] trainer {cell} H={hidden} batch={batch} …")
                res.trainer.append(bench_trainer(cell, hidden, batch, plan, corpus))
    res.peak_bf16 = matmul_peak(plan, torch.bfloat16)
    try:
        precision.check("bf16", torch.device("cpu"))
    except UserError as exc:
        res.bf16_skipped = str(exc)
        log(f"[{time.perf_counter() - t0:5.0f} s] no bf16 rows: {exc}")
    for cell, hidden, batch in () if res.bf16_skipped else BF16_ROWS:
        if plan.quick and batch != BATCH:
            continue
        log(f"[{time.perf_counter() - t0:5.0f} s] trainer bf16 {cell} H={hidden} batch={batch} …")
        res.bf16.append(bench_trainer(cell, hidden, batch, plan, corpus, precision="bf16"))
    torch.set_num_threads(1)
    res.peak_1thread = matmul_peak(plan)
    torch.set_num_threads(plan.threads)  # train() sets it too; keep the header true
    peaks = {1: max(res.peak_1thread.values()), plan.threads: res.peak_gflops}
    packer = Packer(plan.threads)
    try:
        res.packed = bench_packed(packer, plan, corpus.vocab_size, peaks, log, t0)
    finally:
        packer.close()
    res.wall_s = time.perf_counter() - t0
    res.load_end = load_average()
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"Markdown file to write (default {DEFAULT_OUT})")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per row (default 8)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: the CPUs available)")
    parser.add_argument("--quick", action="store_true", help="a few steps per row: a smoke run, not a measurement")
    parser.add_argument("--note", default="", help="a line to add under the header (e.g. that the machine is shared)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.threads < 0:
        parser.error("--seconds must be > 0 and --threads >= 0")
    plan = Plan.make(args.seconds, args.threads or default_threads(), args.quick)
    try:
        res = run(plan, args.note, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    text = render(res)
    atomic_write_text(args.out, text)
    print(text)
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
