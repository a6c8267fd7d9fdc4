"""The training loop: a config and a ``report`` callback in, a learning curve out. No Ray here.

What the homework did, and what this does instead:

- It cut the text into stride-1 windows, pushed them through a DataLoader one sample at a time, and trained
  on the last position only: one target per window of ``seq_len`` characters. Here every position of a
  window is a target (many-to-many), and a batch is gathered by one vectorised index into a tensor of
  token ids: ``seq_len`` targets per window and no per-sample Python.
- It split train/test at random over overlapping windows (a leak). Here validation is the last 10% of the
  text, read in consecutive non-overlapping windows, the same every time.
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tuning.engine import complexity, precision
from tuning.engine.checkpoint import load_checkpoint, save_checkpoint
from tuning.engine.config import TrainConfig
from tuning.engine.data import Corpus, load_corpus
from tuning.engine.model import CharLM
from tuning.errors import UserError

Metrics = dict[str, Any]
# report(metrics, checkpoint_dir): checkpoint_dir is None on iterations that save none. The directory is
# reused by the next checkpoint, so a caller that keeps checkpoints copies it before returning.
Reporter = Callable[[Metrics, Path | None], None]

STATUS_RUNNING, STATUS_COMPLETED, STATUS_DIVERGED = "running", "completed", "diverged"
EVAL_BATCH = 256  # validation windows per forward pass
# A loss this many times the loss of a uniform guess (ln V) is divergence too: Adam keeps step sizes bounded,
# so a far too large learning rate often gives huge but finite losses rather than NaN.
DIVERGENCE_FACTOR = 10.0
VAL_METRICS = ("val_loss", "val_loss_last", "val_bpc", "val_ppl", "val_acc", "val_acc_last")


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device='cuda' but no CUDA device is available (allowed: auto, cpu, cuda)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_generator(config: TrainConfig, iteration: int) -> torch.Generator:
    """Batches of iteration k depend on (seed, k) alone, so a resumed run draws what an unbroken run would."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + iteration)


def draw_batch(
    ids: torch.Tensor, seq_len: int, batch_size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows as one gather: inputs and next-character targets, both (B, T)."""
    starts = torch.randint(0, len(ids) - seq_len, (batch_size,), generator=gen).to(ids.device)
    index = starts[:, None] + torch.arange(seq_len + 1, device=ids.device)  # (B, T+1)
    chunk = ids[index]
    return chunk[:, :-1], chunk[:, 1:]


def validation_windows(ids: torch.Tensor, seq_len: int, max_chars: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation split as consecutive non-overlapping windows: (N, T) inputs and targets."""
    if max_chars:
        ids = ids[: max_chars + 1]
    n = (len(ids) - 1) // seq_len
    return ids[: n * seq_len].view(n, seq_len), ids[1 : n * seq_len + 1].view(n, seq_len)


@torch.inference_mode()
def evaluate(model: CharLM, x: torch.Tensor, y: torch.Tensor) -> Metrics:
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    loss_last = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    correct_last = torch.zeros((), dtype=torch.long, device=x.device)
    for i in range(0, len(x), EVAL_BATCH):
        xb, yb = x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]
        logits = model(xb)
        losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view_as(yb).double()
        loss_sum += losses.sum()
        loss_last += losses[:, -1].sum()
        hits = logits.argmax(-1) == yb
        correct += hits.sum()
        correct_last += hits[:, -1].sum()
    model.train(was_training)
    loss = loss_sum.item() / y.numel()
    return {
        "val_loss": loss,  # nats per character
        "val_bpc": loss / math.log(2),
        "val_ppl": math.exp(loss) if loss < 700 else math.inf,
        "val_acc": correct.item() / y.numel(),
        # the loss and accuracy of the prediction after a full seq_len context: the homework's test figures
        "val_loss_last": loss_last.item() / len(y),
        "val_acc_last": correct_last.item() / len(y),
    }


@torch.inference_mode()
def measure_inference(
    model: CharLM, seq_len: int, device: torch.device, repeats: int = 30, batch: int = 1024
) -> Metrics:
    """Median latency of one next-character prediction (one window, batch 1) and throughput at a large batch."""
    model.eval()

    def median_seconds(x: torch.Tensor, n: int) -> float:
        for _ in range(3):  # warm-up: first calls pay for allocation and kernel selection
            model(x, last_only=True)
        times = []
        for _ in range(n):
            _sync(device)
            start = time.perf_counter()
            model(x, last_only=True)
            _sync(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    one = torch.zeros(1, seq_len, dtype=torch.long, device=device)
    many = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
    latency = median_seconds(one, repeats)
    throughput = batch / median_seconds(many, max(3, repeats // 5))
    return {"inference_latency_ms": latency * 1e3, "inference_throughput": throughput}


@torch.inference_mode()
def generate(
    model: CharLM, corpus: Corpus, prompt: str, length: int, temperature: float, seq_len: int, seed: int
) -> str:
    """Sample ``length`` characters after ``prompt``; the model sees the last ``seq_len`` characters, as trained."""
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = corpus.encode(prompt).tolist()
    out = []
    for _ in range(length):
        window = torch.tensor([ids[-seq_len:]], dtype=torch.long, device=device)
        probs = torch.softmax(model(window, last_only=True)[0].float().cpu() / temperature, dim=-1)
        nxt = int(torch.multinomial(probs, 1, generator=gen))
        ids.append(nxt)
        out.append(corpus.vocab[nxt])
    return "".join(out)


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def train(
    config: TrainConfig,
    report: Reporter | None = None,
    *,
    corpus: Corpus | None = None,
    resume_from: Path | None = None,
    checkpoint_dir: Path | None = None,
) -> Metrics:
    """Train one model; call ``report`` after every iteration; return the last metrics reported.

    ``corpus`` may be passed in (the search driver ships it to the trial); otherwise it is loaded by name.
    ``resume_from`` continues a checkpoint at its next iteration, with the optimizer's state.
    Checkpoints go to ``checkpoint_dir`` (a temporary directory when None, removed at the end).
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    precision.check(config.precision, device)  # one clear line, not a oneDNN error at the first step
    if device.type == "cuda" and config.gpu_memory_fraction < 1.0:
        # Several trials share one GPU: each keeps to its share instead of growing into the others'.
        # It takes an index, not a bare torch.device('cuda') (ValueError seen on torch 2.11 with an H200).
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(config.gpu_memory_fraction, index)
    torch.manual_seed(config.seed)
    if corpus is None:
        corpus = load_corpus(config.corpus, config.normalize_whitespace)
    corpus.check_seq_len(config.seq_len)
    if config.batch_size > len(corpus.train_ids) - config.seq_len:
        raise UserError(
            f"batch_size={config.batch_size} is invalid: larger than the {len(corpus.train_ids) - config.seq_len} "
            f"distinct windows of seq_len={config.seq_len} in corpus {corpus.name}'s training split"
        )

    model = CharLM(config.model_config(corpus.vocab_size)).to(device)
    counts = complexity.measure(model, config.seq_len).to_dict()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_iter, progress = 0, {"chars_trained": 0, "train_time_s": 0.0, "eval_time_s": 0.0}
    history: list[dict[str, Any]] = []  # every report so far, saved in checkpoints (tuning.engine.checkpoint)
    if resume_from is not None:
        saved = load_checkpoint(resume_from, map_location=device)
        if saved.vocab != corpus.vocab:
            raise UserError(f"checkpoint {resume_from} was trained on another vocabulary than corpus {corpus.name}")
        model.load_state_dict(saved.model.state_dict())
        optimizer.load_state_dict(saved.state["optimizer"])
        torch.set_rng_state(saved.state["torch_rng"])
        start_iter, progress = saved.iteration, dict(saved.progress)
        history = list(saved.history)

    train_ids = corpus.train_ids.to(device)
    val_x, val_y = (t.to(device) for t in validation_windows(corpus.val_ids, config.seq_len, config.val_max_chars))
    own_dir = checkpoint_dir is None
    ckpt_dir = Path(tempfile.mkdtemp(prefix="tuning-ckpt-")) if own_dir else Path(checkpoint_dir)  # type: ignore[arg-type]
    metrics: Metrics = {}
    # Mixed precision (config.precision): only the training forward pass; evaluation and inference stay float32.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    try:
        for iteration in range(start_iter + 1, config.max_iters + 1):
            gen = batch_generator(config, iteration)
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            _sync(device)
            start = time.perf_counter()
            first_step = (iteration - 1) * config.steps_per_iter
            for step in range(first_step, first_step + config.steps_per_iter):
                for group in optimizer.param_groups:
                    group["lr"] = config.lr_at(step)  # lr_at knows the schedule; constant returns config.lr
                x, y = draw_batch(train_ids, config.seq_len, config.batch_size, gen)
                with autocast:
                    logits = model(x)  # (B, T, V); bfloat16 under precision bf16
                # the loss in float32 whatever the precision: a bf16 log-softmax over the vocabulary loses digits
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                loss_sum += loss.detach()
                correct += (logits.detach().argmax(-1) == y).sum()
            _sync(device)
            progress["train_time_s"] += time.perf_counter() - start
            progress["chars_trained"] += config.steps_per_iter * config.chars_per_step
            train_loss = loss_sum.item() / config.steps_per_iter
            start = time.perf_counter()
            val = evaluate(model, val_x, val_y) if _finite(train_loss) else {}
            if val and not _finite(val["val_loss"]):
                val = {k: math.nan for k in val}
            progress["eval_time_s"] += time.perf_counter() - start
            metrics = {
                "iteration": iteration,
                "chars_trained": progress["chars_trained"],
                "train_loss": train_loss,
                "train_acc": correct.item() / (config.steps_per_iter * config.chars_per_step),
                **dict.fromkeys(VAL_METRICS, math.nan),
                **val,
                "val_windows": len(val_y),  # behind val_acc_last: one prediction each, so its sampling error
                "train_time_s": progress["train_time_s"],
                "eval_time_s": progress["eval_time_s"],
                **counts,
                "trial_status": STATUS_RUNNING,
            }
            bound = DIVERGENCE_FACTOR * math.log(corpus.vocab_size)
            if not _finite(train_loss, metrics["val_loss"]) or max(train_loss, metrics["val_loss"]) > bound:
                # Reported, not raised: a too-high learning rate is a result of the search, not a crash.
                metrics["trial_status"] = STATUS_DIVERGED
                if report:
                    report(metrics, None)
                return metrics
            last = iteration == config.max_iters
            if last:
                metrics.update(measure_inference(model, config.seq_len, device))
                prompt = corpus.decode(corpus.val_ids[: config.seq_len])
                metrics["sample_prompt"] = prompt
                metrics["sample"] = generate(model, corpus, prompt, config.sample_chars, config.temperature,
                                             config.seq_len, config.seed)
                metrics["trial_status"] = STATUS_COMPLETED
            history.append({**metrics, "timestamp": int(time.time())})  # as Ray stamps a result: whole seconds
            saved_dir = None
            if last or iteration % config.checkpoint_every == 0:
                saved_dir = save_checkpoint(ckpt_dir, model, optimizer, corpus.vocab, config, iteration, progress,
                                            history)
            if report:
                report(metrics, saved_dir)
        return metrics
    finally:
        if own_dir:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
