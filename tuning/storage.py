"""Experiment storage: a local folder or a URI every node can reach (``s3://``, ``gs://``, …).

Ray Tune writes trial results through pyarrow's file systems; our own metadata and the report's input go the
same way, so a search whose ``--storage-path`` is a bucket still leaves a complete, restorable experiment.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuning.files import atomic_write_json

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
