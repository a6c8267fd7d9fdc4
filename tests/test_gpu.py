"""Checks that need a CUDA device; deselected elsewhere (CI has none; see conftest.py). Run on a GPU machine with
``python -m pytest -q -m cuda``; the results are recorded in docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from tuning.engine.config import TrainConfig
from tuning.engine.train import train
from tuning.files import TRIALS_TABLE
from tuning.tune import driver as search

HERE = Path(__file__).parent

pytestmark = pytest.mark.cuda


def test_trainer_runs_on_cuda_within_its_memory_share() -> None:
    cfg = TrainConfig.from_dict({"corpus": "tinyshakespeare", "cell": "lstm", "hidden_size": 256, "embed_dim": 64,
                                 "seq_len": 50, "batch_size": 128, "chars_per_iter": 50_000, "max_iters": 2,
                                 "val_max_chars": 20_000, "sample_chars": 20, "device": "cuda",
                                 "gpu_memory_fraction": 0.25, "seed": 0})
    rows: list[dict] = []
    last = train(cfg, lambda metrics, _ckpt: rows.append(dict(metrics)))
    assert [r["iteration"] for r in rows] == [1, 2]
    assert last["trial_status"] == "completed" and last["val_loss"] < rows[0]["train_loss"]
    assert torch.cuda.max_memory_allocated() <= 0.25 * torch.cuda.get_device_properties(0).total_memory


@pytest.mark.usefixtures("ray_session")
def test_cuda_oom_errors_one_trial_and_the_search_goes_on(tmp_path: Path) -> None:
    code = search.main(["--space", str(HERE / "spaces" / "oom.yaml"), "--storage-path", str(tmp_path),
                        "--name", "oom", "--gpus-per-trial", "0.5", "--cpus-per-trial", "1", "--max-failures", "1",
                        "--quiet"])
    assert code == 0
    trials = pd.read_parquet(tmp_path / "oom" / "report" / TRIALS_TABLE).set_index("batch_size")
    assert trials.loc[16, "status"] == "completed"
    assert trials.loc[65536, "status"] == "errored"
    assert "out of memory" in str(trials.loc[65536, "error"]).lower()
    report = (tmp_path / "oom" / "report" / "report.md").read_text()
    assert "out of memory" in report.lower()
