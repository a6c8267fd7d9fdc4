"""The wheel holds the product alone: every module of tuning/ and its package data, no benchmark code.

The build runs on a copy of the sources (the benchmark modules included, so that leaving them out is the packaging's
doing), so that it leaves no build/ or egg-info behind in the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _copy_sources(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("tuning", "search_spaces"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    (dest / "benchmarks").mkdir()
    for module in (REPO / "benchmarks").glob("*.py"):
        shutil.copy2(module, dest / "benchmarks" / module.name)


def test_wheel_holds_the_product_and_its_data_only(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "wheel"
    src.mkdir()
    _copy_sources(src)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("tuning-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    assert not [n for n in names if n.startswith("benchmarks/") or "bench_" in n or n.endswith("packing.py")]
    assert {n.split("/")[0] for n in names if not n.startswith("tuning-")} == {"tuning"}
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "tuning").rglob("*.py")}
    assert modules - names == set(), "a module of tuning/ is missing from the wheel (pyproject's package list?)"
    spaces = {f"tuning/search_spaces/{p.name}" for p in (REPO / "search_spaces").glob("*.yaml")}
    assert spaces and spaces <= names
    assert {"tuning/engine/corpora/nextchar.txt", "tuning/homework/hw3_reference.csv"} <= names
