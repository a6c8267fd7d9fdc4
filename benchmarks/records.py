"""Benchmark records: a finished search's tables kept in the repository, so that seeds add up across machines.

One 45-minute seed pair of the efficiency benchmark costs 90 minutes of a 2-core machine, and the machines these
benchmarks run on are wiped between sessions: experiment folders (checkpoints included) do not survive, and with
them went the raw data behind published tables. A record keeps what the benchmark tables are computed from, the
trials table and the history (every reported row) of :func:`tuning.report.results.load_experiment`, as Parquet (a few
hundred kB per search), beside ``record.json``: what was run (the key) and where and when (the provenance).

A record stands in for a search only when the key matches: the SHA-256 of the space file's text, the wall budget,
the seed and the extra ``tuning.search`` flags. The code that ran is recorded (git revision) but not matched — every
commit would otherwise void every record — so a change to training or scheduling must be followed by ``--fresh``
runs of the methods it touches; the reports list each record's date and revision so a reader can tell.

Written atomically file by file, ``record.json`` last, holding each table's SHA-256: a record torn by a crash, or
edited by hand, fails its check and is not used (the search runs again).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tuning.files import atomic_write, atomic_write_json

RECORD_FILE = "record.json"
TABLES = ("trials", "history")
FORMAT = 1


@dataclass(frozen=True)
class Record:
    trials: pd.DataFrame
    history: pd.DataFrame
    info: dict[str, Any]  # record.json: key, provenance, table hashes

    def describe(self) -> str:
        """``recorded 2026-11-30 11:13 UTC at rev abc1234 on AMD EPYC (2 cores)``: for the reports' list of reused
        runs. The CPU matters: a wall-clock budget buys different compute on different machines."""
        rev = self.info.get("git_rev") or "unknown"
        dirty = " with uncommitted changes" if rev.endswith("+dirty") else ""
        where = f" on {self.info['cpu']} ({self.info.get('cores', '?')} cores)" if self.info.get("cpu") else ""
        return f"recorded {self.info.get('recorded_at', '?')} at rev {rev[:7]}{dirty}{where}"


def search_key(space_file: Path, budget_s: float, seed: int | None, search_args: Sequence[str]) -> dict[str, Any]:
    """What a search is, for matching a record to it: the space text's hash, budget, seed and extra flags."""
    digest = hashlib.sha256(Path(space_file).read_bytes()).hexdigest()
    return {"space_sha256": digest, "budget_s": float(budget_s), "seed": seed, "search_args": list(search_args)}


def record_name(name: str, key: Mapping[str, Any]) -> str:
    """The record folder's name: the search's name, its budget and a short hash of its key.

    ``random-s0`` of a 600 s and of a 2700 s benchmark, or two multi-objective runs with other ``--search-args``,
    are different searches and must not overwrite each other's records.
    """
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:8]
    return f"{name}-{float(key['budget_s']):g}s-{digest}"


def git_rev(where: Path | None = None) -> str | None:
    """The checkout's commit (with ``+dirty`` for uncommitted changes), or None outside a git checkout."""
    cwd = where or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}+dirty" if dirty else rev


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_record(folder: Path, key: Mapping[str, Any], trials: pd.DataFrame, history: pd.DataFrame,
                provenance: Mapping[str, Any]) -> Record:
    """Write a record of one finished search into ``folder`` (created), replacing any record there."""
    folder = Path(folder)
    hashes = {}
    for name, frame in zip(TABLES, (trials, history), strict=True):
        path = folder / f"{name}.parquet"

        def write(tmp: Path, f: pd.DataFrame = frame) -> None:
            f.to_parquet(tmp, index=False, engine="pyarrow")

        atomic_write(path, write)
        hashes[name] = _sha256(path)
    info = {"format": FORMAT, "key": dict(key), "tables_sha256": hashes,
            "recorded_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **provenance}
    atomic_write_json(folder / RECORD_FILE, info)
    return Record(trials, history, info)


def load_record(folder: Path, key: Mapping[str, Any]) -> tuple[Record | None, str]:
    """The record in ``folder`` if it is whole and its key is ``key``; else None and why not (for the log)."""
    folder = Path(folder)
    meta = folder / RECORD_FILE
    if not meta.is_file():
        return None, f"no record in {folder}"
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{meta} is unreadable ({exc})"
    if info.get("format") != FORMAT:
        return None, f"{meta} has format {info.get('format')!r}, this code reads {FORMAT}"
    # Compare through JSON so that a tuple and a list, or 600 and 600.0, are the same key.
    if json.loads(json.dumps(dict(key))) != info.get("key"):
        differs = sorted(k for k in set(key) | set(info.get("key", {}))
                         if json.loads(json.dumps(key.get(k))) != info.get("key", {}).get(k))
        return None, f"{meta} records a different search ({', '.join(differs)} differ)"
    frames = []
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if not path.is_file() or _sha256(path) != info.get("tables_sha256", {}).get(name):
            return None, f"{path} is missing or does not match {meta} (a torn or edited record)"
        frames.append(pd.read_parquet(path, engine="pyarrow"))
    return Record(frames[0], frames[1], info), "ok"
