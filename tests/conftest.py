"""Shared fixtures: the data directory and one local Ray instance for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"



def _corpora_dir() -> Path:
    """A folder holding both named corpora, for tests and the processes they start.

    ``$TUNING_DATA_DIR`` when set (CI points it at the shared copy), else the shared copy beside the repository,
    else the user's cache: tiny Shakespeare downloads there once (checksum checked) and the packaged paragraph
    is copied beside it, as a user who cloned the repository has neither folder.
    """
    if os.environ.get("TUNING_DATA_DIR"):
        return Path(os.environ["TUNING_DATA_DIR"]).expanduser()
    if (SHARED_DATA / "nextchar.txt").is_file():
        return SHARED_DATA
    from tuning.engine import data
    from tuning.files import atomic_write_bytes

    for name, known in data.KNOWN_CORPORA.items():
        source = data.resolve_corpus(name)
        target = data.cache_dir() / known.filename
        if source != target:
            atomic_write_bytes(target, source.read_bytes())
    return data.cache_dir()


# Made absolute: the README's command gives a relative path, and tests start processes in other folders.
os.environ["TUNING_DATA_DIR"] = str(_corpora_dir().resolve())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device; deselected where torch sees none")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the CUDA tests on a machine without CUDA (CI has none), and say so in the summary.

    Deselected rather than skipped: a skip reads as a test someone switched off, while these run, and must
    pass, wherever a GPU is (``python -m pytest -q -m cuda``; results in docs/reliability.md).
    """
    import torch

    if torch.cuda.is_available():
        return
    cuda = [item for item in items if item.get_closest_marker("cuda")]
    if cuda:
        config.hook.pytest_deselected(items=cuda)
        items[:] = [item for item in items if not item.get_closest_marker("cuda")]


def pytest_report_header(config: pytest.Config) -> str:
    import torch

    return "CUDA: " + ("available, the cuda tests run" if torch.cuda.is_available() else
                       "none, the cuda tests (tests/test_gpu.py) are deselected")


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
