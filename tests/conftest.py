"""Shared fixtures: the data directory and one local Ray instance for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The corpora are never committed; tests read the shared copy (CI sets the same variable).
os.environ.setdefault("TUNING_DATA_DIR", str(SHARED_DATA))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ["TUNING_DATA_DIR"])
    assert (path / "nextchar.txt").is_file(), f"TUNING_DATA_DIR={path} must hold nextchar.txt"
    return path


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray per test session (starting one costs seconds on 2 cores).

    One logical GPU lets the packing test place fractional-GPU trials on a machine without one; trials still
    train on the CPU, since torch sees no CUDA device.
    """
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
