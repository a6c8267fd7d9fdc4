from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tuning.engine import precision
from tuning.engine.checkpoint import load_checkpoint
from tuning.engine.config import TrainConfig
from tuning.engine.data import load_corpus
from tuning.engine.train import STATUS_COMPLETED, STATUS_DIVERGED, draw_batch, train, validation_windows
from tuning.errors import UserError
from tuning.files import CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS
from tuning.machine import cpu_model

EXPECTED_KEYS = {
    "iteration", "chars_trained", "train_loss", "train_acc", "val_loss", "val_bpc", "val_ppl", "val_acc",
    "val_acc_last", "val_loss_last", "train_time_s", "eval_time_s", "params", "calflops_flops", "calflops_macs",
    "macs", "flops_per_char", "macs_per_char", "train_flops_per_char", "trial_status",
}


def tiny(**overrides: Any) -> TrainConfig:
    base: dict[str, Any] = dict(corpus="nextchar", normalize_whitespace=True, cell="gru", seq_len=16, embed_dim=16,
                                hidden_size=32, batch_size=16, chars_per_iter=4096, max_iters=4, lr=1e-2,
                                sample_chars=20, threads=1)
    base.update(overrides)
    return TrainConfig(**base)


def run(config: TrainConfig, **kwargs: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    train(config, lambda metrics, ckpt: rows.append(dict(metrics, _ckpt=ckpt)), **kwargs)
    return rows


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_loss_falls_and_reports_everything(cell: str) -> None:
    rows = run(tiny(cell=cell))
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert EXPECTED_KEYS <= set(r)
        assert 0 <= r["val_acc"] <= 1 and 0 <= r["val_acc_last"] <= 1
        assert r["val_bpc"] == pytest.approx(r["val_loss"] / math.log(2))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.3
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    # budget in characters: whole batches covering chars_per_iter each iteration
    steps = math.ceil(4096 / (16 * 16))
    assert rows[-1]["chars_trained"] == 4 * steps * 16 * 16
    assert rows[1]["train_time_s"] > rows[0]["train_time_s"] > 0
    last = rows[-1]
    assert last["trial_status"] == STATUS_COMPLETED
    assert last["inference_latency_ms"] > 0 and last["inference_throughput"] > 0
    assert len(last["sample"]) == 20


def test_each_report_counts_the_validation_windows_behind_its_accuracy() -> None:
    # val_acc_last scores one prediction per window: the report needs the count for its confidence interval
    config = tiny(max_iters=1, val_max_chars=200)
    corpus = load_corpus(config.corpus, normalize_whitespace=True)
    want = len(validation_windows(corpus.val_ids, 16, 200)[1])
    assert want == 200 // 16
    assert [r["val_windows"] for r in run(config)] == [want]


def test_batches_are_windows_of_the_text() -> None:
    ids = torch.arange(100)
    x, y = draw_batch(ids, 7, 5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 7)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones_like(x))


def test_validation_windows_are_consecutive_and_disjoint() -> None:
    ids = torch.arange(23)
    x, y = validation_windows(ids, 5)
    assert x.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    assert torch.equal(y, x + 1)


def test_same_seed_same_metrics() -> None:
    keys = ("train_loss", "val_loss", "val_acc", "val_acc_last")
    a = [{k: r[k] for k in keys} for r in run(tiny(max_iters=2))]
    b = [{k: r[k] for k in keys} for r in run(tiny(max_iters=2))]
    c = [{k: r[k] for k in keys} for r in run(tiny(max_iters=2, seed=1))]
    assert a == b
    assert a != c


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_checkpoint_round_trip_and_resume(tmp_path: Path, schedule: str) -> None:
    config = tiny(cell="lstm", head_depth=1, head_dropout=0.2, max_iters=4, lr_schedule=schedule)
    unbroken = run(config)

    stop_after = 2
    ckpt_dir = tmp_path / "ckpt"
    kept = tmp_path / "kept"

    def report(metrics: dict[str, Any], ckpt: Path | None) -> None:
        if metrics["iteration"] == stop_after:
            assert ckpt is not None
            shutil.copytree(ckpt, kept)
            raise KeyboardInterrupt  # the process dies here

    with pytest.raises(KeyboardInterrupt):
        train(config, report, checkpoint_dir=ckpt_dir)

    # data, not pickles: weights load with weights_only=True, the rest is JSON
    state = torch.load(kept / CHECKPOINT_WEIGHTS, weights_only=True)
    assert {"model", "optimizer", "torch_rng"} <= set(state)
    meta = json.loads((kept / CHECKPOINT_CONFIG).read_text())
    assert meta["iteration"] == stop_after and isinstance(meta["vocab"], str) and len(meta["vocab"]) == 44
    loaded = load_checkpoint(kept)
    assert loaded.train_config == config and loaded.iteration == stop_after
    assert loaded.state["optimizer"]["state"], "optimizer moments must be saved"
    # every reported row up to here rides along (tuning.tune.ray_state restores rows a killed driver lost from it)
    assert [r["iteration"] for r in loaded.history] == [1, 2]
    assert loaded.history[1]["val_loss"] == pytest.approx(unbroken[1]["val_loss"], rel=1e-5)
    assert all(isinstance(r["timestamp"], int) for r in loaded.history)

    resumed = run(config, resume_from=kept)
    assert [r["iteration"] for r in resumed] == [3, 4]
    # resuming continues exactly where the unbroken run was: same batches, same optimizer state
    for got, want in zip(resumed, unbroken[2:], strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)
        assert got["chars_trained"] == want["chars_trained"]
    # and the resumed run's checkpoints carry the rows from before the restore too
    train(config, None, resume_from=kept, checkpoint_dir=tmp_path / "after")
    assert [r["iteration"] for r in load_checkpoint(tmp_path / "after").history] == [1, 2, 3, 4]


def test_cosine_schedule_decays_over_the_full_budget(tmp_path: Path) -> None:
    config = tiny(lr=1e-2, lr_schedule="cosine", lr_min_ratio=0.1, max_iters=3)
    total = config.max_iters * config.steps_per_iter
    assert config.lr_at(0) == pytest.approx(1e-2)
    assert config.lr_at(total // 2) == pytest.approx((1e-2 + 1e-3) / 2, rel=0.02)
    assert config.lr_at(total) == pytest.approx(1e-3)
    assert tiny(lr=1e-2).lr_at(total) == 1e-2  # constant
    # the optimizer really ran on the schedule: its last step's rate is in the final checkpoint
    train(config, checkpoint_dir=tmp_path)
    groups = torch.load(tmp_path / CHECKPOINT_WEIGHTS, weights_only=True)["optimizer"]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(config.lr_at(total - 1))
    assert groups[0]["lr"] < 1.1e-3


def test_bf16_is_refused_in_one_line_exactly_where_the_hardware_cannot_train_in_it() -> None:
    """The probe and training agree on this machine: where it says no, training says so before any step."""
    config = tiny(cell="lstm", max_iters=1, precision="bf16")
    assert precision.supports("fp32", "cpu")
    if precision.supports("bf16", "cpu"):
        assert run(config)[-1]["trial_status"] == STATUS_COMPLETED
    else:
        with pytest.raises(UserError, match=r"^precision=bf16 is not supported on this CPU .*use precision fp32"):
            train(config)
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        precision.supports("fp16", "cpu")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ONEDNN_MAX_CPU_ISA caps x86 ISAs")
def test_bf16_is_refused_on_a_cpu_without_bfloat16_rnns(tmp_path: Path) -> None:
    """A real CPU without them: oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA), as on the CI machine that found this
    (torch 2.13.0 raised 'could not create a primitive descriptor for the LSTM forward propagation primitive')."""
    script = (
        "from tuning.engine import precision\n"
        "from tuning.engine.config import TrainConfig\n"
        "from tuning.engine.train import train\n"
        "from tuning.errors import UserError\n"
        "assert not precision.supports('bf16', 'cpu') and precision.supports('fp32', 'cpu')\n"
        "kw = dict(corpus='nextchar', cell='lstm', seq_len=16, embed_dim=16, hidden_size=32, batch_size=16, "
        "chars_per_iter=4096, max_iters=1, threads=1, sample_chars=1)\n"
        "try:\n"
        "    train(TrainConfig(**kw, precision='bf16'))\n"
        "except UserError as exc:\n"
        "    print(exc)\n"
        "train(TrainConfig(**kw))\n"  # fp32 still trains
    )
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip()
    assert re.fullmatch(r"precision=bf16 is not supported on this CPU \(.+\): PyTorch cannot build a bfloat16 "
                        r"RNN/LSTM/GRU here \(on a CPU oneDNN needs AVX-512 or AMX\); use precision fp32, or a GPU",
                        line), line
    assert cpu_model() in line


@pytest.mark.skipif(not precision.supports("bf16", "cpu"),
                    reason="this CPU cannot train in bf16 (oneDNN has no bfloat16 RNN for it)")
def test_bf16_precision_trains_in_bfloat16_close_to_fp32(tmp_path: Path) -> None:
    fp32 = run(tiny(cell="lstm", max_iters=3))
    config = tiny(cell="lstm", max_iters=3, precision="bf16")
    bf16 = run(config, checkpoint_dir=tmp_path)
    assert bf16[-1]["trial_status"] == STATUS_COMPLETED
    assert bf16[-1]["train_loss"] < bf16[0]["train_loss"] - 0.3
    # autocast really ran: the same seed and batches give other numbers, yet close ones
    assert [r["train_loss"] for r in bf16] != [r["train_loss"] for r in fp32]
    for got, want in zip(bf16, fp32, strict=True):
        assert got["val_loss"] == pytest.approx(want["val_loss"], abs=0.05)
    # only the forward pass is bf16: weights (and their checkpoint) stay float32, the option travels with them
    loaded = load_checkpoint(tmp_path)
    assert loaded.train_config.precision == "bf16"
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


def test_loaded_model_predicts_like_the_trained_one(tmp_path: Path) -> None:
    config = tiny(max_iters=1)
    train(config, checkpoint_dir=tmp_path)
    loaded = load_checkpoint(tmp_path)
    x = torch.randint(0, 44, (2, 16))
    loaded.model.eval()
    again = load_checkpoint(tmp_path).model.eval()
    torch.testing.assert_close(loaded.model(x), again(x))
    assert loaded.model.config.vocab_size == 44


def test_divergence_is_reported_not_raised() -> None:
    rows = run(tiny(lr=1e10, grad_clip=0.0, max_iters=5, cell="rnn"))
    assert [r["trial_status"] for r in rows] == [STATUS_DIVERGED]  # stops at once, no checkpoint
    assert rows[0]["_ckpt"] is None
    assert rows[0]["train_loss"] > 10 * math.log(44)


def test_batch_larger_than_training_split_is_refused() -> None:
    with pytest.raises(UserError, match="batch_size=5000"):
        train(tiny(batch_size=5000))


@pytest.mark.parametrize(("field", "value"), [("seq_len", 1), ("lr", 0.0), ("lr", float("nan")),
                                              ("max_iters", 0), ("cell", "lstmx"), ("device", "tpu"),
                                              ("lr_schedule", "linear"), ("lr_min_ratio", 1.5),
                                              ("precision", "fp16")])
def test_invalid_train_config(field: str, value: object) -> None:
    with pytest.raises(UserError, match=field):
        tiny(**{field: value})


def test_unknown_option_is_refused() -> None:
    with pytest.raises(UserError, match="unknown training option"):
        TrainConfig.from_dict({"hiden_size": 3})


def test_trainer_does_not_import_ray() -> None:
    import subprocess

    code = "import sys, tuning.engine.train, tuning.report.write; assert not any(m == 'ray' or m.startswith('ray.') " \
           "for m in sys.modules), 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_evaluate_checkpoint_on_the_whole_split(tmp_path: Path) -> None:
    from tuning.engine.evaluate import evaluate_checkpoint, main

    config = tiny(max_iters=2, val_max_chars=64)  # the search validated on a prefix
    last = run(config, checkpoint_dir=tmp_path)[-1]
    full = evaluate_checkpoint(tmp_path)
    assert full["iteration"] == 2 and full["validation_chars"] == (240 - 1) // 16 * 16
    assert full["val_loss"] != pytest.approx(last["val_loss"])  # more text than the prefix
    assert main([str(tmp_path / "missing")]) == 2
