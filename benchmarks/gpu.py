"""GPU benchmark for a machine with one NVIDIA GPU: ``python -m benchmarks.gpu [--out DIR] [--minutes 5]``.

Measured in one run, in this order (under 8 minutes with the default five-minute search: about a minute before it,
the search's Ray start and report after it):

1. the matmul peak: ``torch.mm`` of two 8192² matrices in bf16, in fp32 with TF32 off, and in fp32 with TF32 allowed,
   best of several timed batches between ``torch.cuda.synchronize()`` calls (2·n³ FLOPs per product);
2. the trainer's achieved FLOP/s, :func:`tuning.engine.train.train` itself on LSTM H=512 (embed 128), seq_len 50,
   batch 256:
   training characters/s by its own ``train_time_s`` clock over ≥ 10 s after a warm-up iteration, times calflops'
   ``train_flops_per_char``, as a share of the fp32 peak;
3. packing (:mod:`benchmarks.packing`): 1, 2, 4 and 8 trials at once on the one GPU, each its own OS process
   (multiprocessing spawn, as Ray's workers are) running ``train()`` on LSTM H=256, seq_len 50, batch 128 with
   ``gpu_memory_fraction`` = 1/N; they warm up, wait at a barrier, train for the same ``--pack-seconds`` (default 15)
   of wall time, and their characters/s add up;
4. the best validation loss a default search reaches in ``--minutes``: ``python -m tuning.search --space shakespeare
   --time-budget-s 60·minutes --gpus-per-trial 0.25 --quiet --storage-path OUT/runs``.

Prints one Markdown table (what the README quotes) with the details under it, and writes it atomically to
``OUT/gpu.md``. Without a CUDA device it stops with one line. ``--device cpu --quick`` runs every code path on the CPU
with tiny sizes (the search is skipped with ``--no-search``), for the test; those numbers mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.common import BenchError
from benchmarks.packing import Packer, PackLevel, Rate, measure_rate
from tuning.engine.config import TrainConfig
from tuning.errors import UserError
from tuning.files import atomic_write_text

DEFAULT_OUT = Path("benchmarks")
OUT_FILE = "gpu.md"
CORPUS = "tinyshakespeare"
GPU_SHARE = 0.25  # the search driver's default: four trials per GPU


@dataclass(frozen=True)
class Plan:
    device: str  # cuda | cpu
    quick: bool
    minutes: float
    mm_size: int
    mm_repeats: int
    mm_inner: int  # products per timed batch
    trainer: TrainConfig  # measurement 2
    trainer_seconds: float
    pack: TrainConfig  # measurement 3
    pack_levels: tuple[int, ...]
    pack_seconds: float
    search: bool
    search_space: str

    @classmethod
    def make(cls, device: str, quick: bool, minutes: float, pack_seconds: float | None, search: bool) -> Plan:
        threads = 0 if device == "cuda" else 1
        base = dict(corpus=CORPUS, cell="lstm", embed_dim=128, lr=2e-3, max_iters=10**9, checkpoint_every=10**9,
                    sample_chars=1, device=device, threads=threads, seed=0)
        if quick:
            trainer = TrainConfig.from_dict({**base, "embed_dim": 16, "hidden_size": 64, "seq_len": 20,
                                             "batch_size": 16, "chars_per_iter": 2 * 320, "val_max_chars": 200})
            pack = TrainConfig.from_dict({**base, "embed_dim": 16, "hidden_size": 32, "seq_len": 20, "batch_size": 8,
                                          "chars_per_iter": 2 * 160, "val_max_chars": 200})
            return cls(device=device, quick=True, minutes=minutes, mm_size=256, mm_repeats=3, mm_inner=2,
                       trainer=trainer, trainer_seconds=1.0, pack=pack, pack_levels=(1, 2),
                       pack_seconds=pack_seconds or 1.0, search=search, search_space="smoke")
        # Iterations of ~40–50 steps: a few tenths of a second on a recent GPU, so the timed window ends close to
        # its target and the evaluation between iterations (one batch of windows) stays a small part of it.
        trainer = TrainConfig.from_dict({**base, "hidden_size": 512, "seq_len": 50, "batch_size": 256,
                                         "chars_per_iter": 40 * 256 * 50, "val_max_chars": 256 * 50})
        # Eight processes on the machine's cores: a few torch threads each, not all of them each.
        pack_threads = max(1, (os.cpu_count() or 1) // 8)
        pack = TrainConfig.from_dict({**base, "hidden_size": 256, "seq_len": 50, "batch_size": 128,
                                      "chars_per_iter": 50 * 128 * 50, "val_max_chars": 256 * 50,
                                      "threads": pack_threads})
        return cls(device=device, quick=False, minutes=minutes, mm_size=8192, mm_repeats=8, mm_inner=10,
                   trainer=trainer, trainer_seconds=10.0, pack=pack, pack_levels=(1, 2, 4, 8),
                   pack_seconds=pack_seconds or 15.0, search=search, search_space="shakespeare")


# --- 1. matmul peak -----------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def mm_tflops(n: int, dtype: torch.dtype, device: str, repeats: int, inner: int, tf32: bool = False) -> float:
    """Best-of-``repeats`` TFLOP/s of ``inner`` back-to-back n×n ``torch.mm`` products (2·n³ FLOPs each)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        for _ in range(2):  # warm-up: kernel selection, clocks up
            torch.mm(a, b, out=out)
        best = math.inf
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            for _ in range(inner):
                torch.mm(a, b, out=out)
            _sync(device)
            best = min(best, (time.perf_counter() - start) / inner)
        del a, b, out
        return 2 * n**3 / best / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def matmul_peaks(plan: Plan) -> dict[str, float]:
    p = (plan.mm_size, plan.device, plan.mm_repeats, plan.mm_inner)
    return {
        "bf16": mm_tflops(p[0], torch.bfloat16, *p[1:]),
        "fp32": mm_tflops(p[0], torch.float32, *p[1:]),
        "tf32": mm_tflops(p[0], torch.float32, *p[1:], tf32=True),
    }


# --- 4. a search --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    experiment: str
    budget_s: float
    best_val_loss: float
    trials: int
    completed: int
    wall_s: float


def run_search(plan: Plan, out: Path, log: Callable[[str], None]) -> SearchResult:
    from benchmarks.common import best_val_loss
    from benchmarks.common import run_search as start

    budget = 20.0 if plan.quick else 60.0 * plan.minutes
    share = GPU_SHARE if plan.device == "cuda" else 0.0
    name = f"gpu-search-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    t0 = time.perf_counter()
    experiment = start(plan.search_space, out / "runs", name, budget, extra=["--gpus-per-trial", f"{share:g}"],
                       log=log)
    best, trials, completed = best_val_loss(experiment)
    return SearchResult(str(experiment), budget, best, trials, completed, time.perf_counter() - t0)


# --- the report ---------------------------------------------------------------------------------------------------


@dataclass
class Results:
    plan: Plan
    argv: list[str]
    started: dt.datetime
    peaks: dict[str, float] = field(default_factory=dict)
    trainer: Rate | None = None
    packing: list[PackLevel] = field(default_factory=list)
    search: SearchResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


def device_name(device: str) -> str:
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs)"
    from tuning.machine import cpu_model

    return f"CPU: {cpu_model()}"


def _si(value: float, unit: str) -> str:
    if math.isnan(value):
        return "–"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}%"


def render(res: Results) -> str:
    from benchmarks.common import header

    p = res.plan
    lines = header("GPU benchmark", res.argv, prog="python -m benchmarks.gpu")
    cudnn = torch.backends.cudnn.version() if p.device == "cuda" else None
    lines[2] += (f" · device: {device_name(p.device)} · CUDA {torch.version.cuda or '–'} · cuDNN {cudnn or '–'} · "
                 f"wall time {res.wall_s:.0f} s")
    if p.quick:
        lines += ["**--quick**: tiny sizes, a smoke run of every code path; the numbers mean nothing.", ""]
    fp32 = res.peaks.get("fp32", math.nan)
    t, tr = res.trainer, p.trainer
    rows: list[list[str]] = [
        ["1", f"matmul peak, bf16 `torch.mm` {p.mm_size}²", _si(res.peaks.get("bf16", math.nan) * 1e12, "FLOP/s"),
         f"best of {p.mm_repeats} × {p.mm_inner} products"],
        ["1", f"matmul peak, fp32 `torch.mm` {p.mm_size}² (TF32 off)", _si(fp32 * 1e12, "FLOP/s"),
         "the denominator of the shares below"],
        ["1", f"matmul, fp32 `torch.mm` {p.mm_size}² with TF32 allowed", _si(res.peaks.get("tf32", math.nan) * 1e12,
                                                                            "FLOP/s"), "for reference"],
    ]
    if t is not None:
        rows.append(["2", f"trainer, {tr.cell.upper()} H={tr.hidden_size} seq {tr.seq_len} batch {tr.batch_size}",
                     f"{_si(t.tflops * 1e12, 'FLOP/s')} = {_pct(t.tflops / fp32)} of fp32 peak",
                     f"{_si(t.chars_per_s, 'chars/s')} × {_si(t.train_flops_per_char, 'FLOP/char')} "
                     f"({t.chars:.3g} chars in {t.train_s:.1f} s of training)"])
    base = res.packing[0].aggregate if res.packing else math.nan
    pk = p.pack
    for level in res.packing:
        share = level.aggregate * level.train_flops_per_char / 1e12 / fp32
        detail = (f"×{level.aggregate / base:.2f} of 1 trial; {_pct(share)} of fp32 peak" if not level.errors
                  else "failed: " + "; ".join(level.errors)[:200])
        rows.append(["3", f"{level.trials} packed trial{'s' if level.trials > 1 else ''}, {pk.cell.upper()} "
                          f"H={pk.hidden_size} seq {pk.seq_len} batch {pk.batch_size}, memory share 1/{level.trials}",
                     _si(level.aggregate, "chars/s"), detail])
    s = res.search
    if s is not None:
        rows.append(["4", f"best val_loss, `--space {p.search_space}` in {s.budget_s / 60:g} min "
                          f"(`--gpus-per-trial {GPU_SHARE if p.device == 'cuda' else 0:g}`)",
                     f"{s.best_val_loss:.4f}" if not math.isnan(s.best_val_loss) else "–",
                     f"{s.trials} trials, {s.completed} at full budget; {s.wall_s:.0f} s with Ray's start and report"])
    else:
        rows.append(["4", "search", "skipped", "--no-search"])
    lines += ["| # | measurement | result | detail |", "|---|---|---:|---|",
              *("| " + " | ".join(r) + " |" for r in rows), ""]
    lines += [
        "Notes:",
        "",
        f"- Matmul: 2·n³ FLOPs per product; each timed batch sits between `synchronize()` calls. PyTorch leaves TF32 "
        f"off for matmuls but on for cuDNN (`torch.backends.cudnn.allow_tf32` = "
        f"{torch.backends.cudnn.allow_tf32}), so cuDNN's LSTM may beat the strict fp32 peak.",
        f"- Trainer: `tuning.engine.train.train` on {CORPUS}, embed {tr.embed_dim}, {tr.steps_per_iter} steps per "
        "iteration, "
        f"after one warm-up iteration, ≥ {p.trainer_seconds:g} s timed by its own synchronised `train_time_s`; "
        "FLOPs are calflops' forward count × 3 (`train_flops_per_char`).",
        f"- Packing: one spawned OS process per trial, started before the first measurement; every trial warms up "
        f"(one iteration), waits at a barrier, then trains ≥ {p.pack_seconds:g} s; the result is the sum of their "
        "characters per second by the wall clock of that window (evaluation of one batch between iterations "
        "included).",
    ]
    if s is not None:
        lines.append(f"- Search: `python -m tuning.search --space {p.search_space} --time-budget-s {s.budget_s:g} "
                     f"--gpus-per-trial {GPU_SHARE if p.device == 'cuda' else 0:g} --quiet`; best val_loss is the "
                     f"lowest any trial reported. Experiment: `{s.experiment}`.")
    lines += ["- Section wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in res.timings.items()), ""]
    return "\n".join(lines)


def run(plan: Plan, argv: list[str], out: Path, log: Callable[[str], None]) -> Results:
    res = Results(plan=plan, argv=argv, started=dt.datetime.now(dt.timezone.utc))
    t0 = time.perf_counter()
    packer = Packer(max(plan.pack_levels))  # workers import torch and calflops while the peaks are measured
    try:
        log("1. matmul peaks …")
        res.peaks = matmul_peaks(plan)
        res.timings["matmul"] = time.perf_counter() - t0
        log(f"   bf16 {res.peaks['bf16']:.1f}, fp32 {res.peaks['fp32']:.1f}, tf32 {res.peaks['tf32']:.1f} TFLOP/s")
        log("2. trainer …")
        t = time.perf_counter()
        res.trainer = measure_rate(plan.trainer, plan.trainer_seconds)
        res.timings["trainer"] = time.perf_counter() - t
        log(f"   {res.trainer.chars_per_s:.3g} chars/s, {res.trainer.tflops:.3g} TFLOP/s")
        if plan.device == "cuda":
            torch.cuda.empty_cache()  # the packed trials get the memory
        t = time.perf_counter()
        for n in plan.pack_levels:
            log(f"3. packing {n} …")
            res.packing.append(packer.run(n, plan.pack, plan.pack_seconds))
            log(f"   {res.packing[-1].aggregate:.3g} chars/s {res.packing[-1].errors or ''}")
        res.timings["packing"] = time.perf_counter() - t
    finally:
        packer.close()
    if plan.device == "cuda":
        torch.cuda.empty_cache()
    if plan.search:
        log("4. search …")
        t = time.perf_counter()
        res.search = run_search(plan, out, log)
        res.timings["search"] = time.perf_counter() - t
    res.wall_s = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    parser.add_argument("--minutes", type=float, default=5.0, help="wall budget of the search (default 5)")
    parser.add_argument("--pack-seconds", type=float, help="timed seconds per packing level (default 15)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda (default); cpu only for a smoke run with --quick")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--no-search", action="store_true", help="skip measurement 4 (the search)")
    args = parser.parse_args(argv)
    if not (args.minutes > 0 and math.isfinite(args.minutes)):
        parser.error("--minutes must be a number > 0")
    if args.pack_seconds is not None and not args.pack_seconds > 0:
        parser.error("--pack-seconds must be > 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"error: no CUDA device visible to torch {torch.__version__} "
              f"(CUDA build: {torch.version.cuda or 'none'}); this benchmark needs an NVIDIA GPU "
              "(for a CPU smoke run: --device cpu --quick)", file=sys.stderr)
        return 2
    plan = Plan.make(args.device, args.quick, args.minutes, args.pack_seconds, not args.no_search)
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        res = run(plan, argv, args.out, log)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = render(res)
    atomic_write_text(args.out / OUT_FILE, text)
    print(text)
    log(f"written: {args.out / OUT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

