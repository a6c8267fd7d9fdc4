"""A local folder as a pyarrow file system that never leaves a half-written file.

Kept apart from :mod:`tuning.tune.storage` because it imports pyarrow at module level: the handler class must live at
module level so that Ray can pickle the file system to its trial workers.
"""

from __future__ import annotations

import io
import os
import uuid
from typing import Any

import pyarrow
import pyarrow.fs
from fsspec.implementations.local import LocalFileSystem

from tuning.tune.storage import PARTIAL_SUFFIX


class _ReplaceOnClose(io.BufferedWriter):
    """A file written under a hidden sibling name and renamed over its target when closed complete.

    ``os.replace`` is atomic on POSIX, so a reader (or a restore) sees the old file or the new one, never a
    prefix: a process killed mid-write leaves only a stray ``.*.part`` file. A write or flush that failed (disk
    full) discards the partial file instead of publishing it. Buffered, because pyarrow's ``PythonFile`` ignores
    the byte count a raw ``write`` returns, and a raw write may be short.
    """

    def __init__(self, target: str) -> None:
        parent, name = os.path.split(target)
        os.makedirs(parent or ".", exist_ok=True)
        tmp = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")
        # os.open with 0o666 honours the umask, as a plain open() of the target would (mkstemp would give 0o600).
        super().__init__(io.FileIO(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb"))
        self._tmp, self._target, self._failed = tmp, target, False

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except BaseException:
            self._failed = True
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()  # flushes (through self.flush), then closes the descriptor even if that failed
        finally:
            if self._failed:
                os.unlink(self._tmp)
            else:
                os.replace(self._tmp, self._target)


def atomic_local_filesystem() -> Any:
    """The local disk as a pyarrow file system whose every written file appears whole or not at all.

    Ray Tune copies the driver's experiment state and the searcher's pickled state into the storage folder with
    ``pyarrow.fs.copy_files``, which truncates each target and then writes it: a driver killed during that copy
    (SIGKILL, OOM, a lost node) left an empty ``search_gen_state-*.json``, and Ray's restore then *restarted the
    experiment from scratch* ("Failed to restore the run state ... Restarting experiment"). pyarrow's own
    ``FSSpecHandler`` over fsspec's local file system does everything else; only the output streams change.
    """
    return pyarrow.fs.PyFileSystem(AtomicLocalHandler(LocalFileSystem(auto_mkdir=True)))


class AtomicLocalHandler(pyarrow.fs.FSSpecHandler):  # type: ignore[misc]
    """fsspec's local file system through pyarrow, with output streams that replace their target on close."""

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        return pyarrow.PythonFile(_ReplaceOnClose(path), mode="w")
