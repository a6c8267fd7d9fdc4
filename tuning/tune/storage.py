"""Experiment storage: a local folder or a URI every node can reach (``s3://``, ``gs://``, …).

Ray Tune writes trial results through pyarrow's file systems; our own metadata and the report's input go the
same way, so a search whose ``--storage-path`` is a bucket still leaves a complete, restorable experiment.
"""

from __future__ import annotations

import contextlib
import json
import pickletools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuning.errors import UserError
from tuning.files import atomic_write_json

PARTIAL_SUFFIX = ".part"  # a file being written by tuning.tune.atomic_fs, renamed when whole
URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "az://", "file://")


def is_uri(location: str) -> bool:
    return str(location).startswith(URI_SCHEMES)


def join(location: str, *parts: str) -> str:
    return "/".join([str(location).rstrip("/"), *parts]) if is_uri(location) else str(Path(location, *parts))


def read_json(location: str) -> dict[str, Any] | None:
    if not is_uri(location):
        path = Path(location)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return json.loads(stream.read().decode("utf-8"))


def write_json(location: str, obj: Any) -> None:
    """Locally: temporary file then rename. On an object store a single PUT is already all-or-nothing."""
    if not is_uri(location):
        atomic_write_json(Path(location), obj)
        return
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write((json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


@contextlib.contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """The experiment as a local folder: itself, or a temporary download of a URI."""
    if not is_uri(location):
        yield Path(location)
        return
    import pyarrow.fs

    tmp = Path(tempfile.mkdtemp(prefix="tuning-experiment-"))
    try:
        pyarrow.fs.copy_files(location, str(tmp / "experiment"))
        yield tmp / "experiment"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ray_storage(location: str) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for Ray: a local folder through
    :func:`tuning.tune.atomic_fs.atomic_local_filesystem`; a URI as it is (an object store's PUT is all-or-nothing)."""
    if is_uri(location):
        return location, None
    from tuning.tune.atomic_fs import atomic_local_filesystem

    return str(Path(location).resolve()), atomic_local_filesystem()


def check_resumable(folder: Path) -> None:
    """Refuse to resume from damaged state, which Ray would answer by silently starting the experiment over.

    Checks the newest driver state and searcher state files parse to the end (pickles by walking their opcodes
    with ``pickletools``, which executes nothing). Stray partial files from a killed writer are removed.
    """
    for stray in folder.rglob(f".*{PARTIAL_SUFFIX}"):
        stray.unlink(missing_ok=True)
    searcher = "to resume without the searcher's memory"
    for pattern, kind, without in (("experiment_state-*.json", "json", "to resume from an earlier run's state"),
                                   ("search_gen_state-*.json", "pickle", searcher),
                                   ("searcher-state-*.pkl", "pickle", searcher)):
        files = sorted(folder.glob(pattern))
        if not files:
            continue
        newest = files[-1]  # Ray's own choice: the greatest name, i.e. the latest session's timestamp
        try:
            data = newest.read_bytes()
            if kind == "json":
                json.loads(data)
            else:
                for _ in pickletools.genops(data):
                    pass
        except (ValueError, OSError) as exc:
            raise UserError(f"--resume: {newest} is damaged ({type(exc).__name__}: {exc}); Ray would restart the "
                            f"experiment from nothing: move that file away {without}") from None
