"""Experiment storage: files Ray copies into a local storage folder appear whole or not at all, and a damaged
state file stops --resume with one line instead of Ray silently restarting the experiment."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.fs
import pytest

from tuning.tune import driver as search
from tuning.tune.atomic_fs import atomic_local_filesystem
from tuning.tune.storage import PARTIAL_SUFFIX, check_resumable, ray_storage

HERE = Path(__file__).parent

# A writer that publishes one chunk, says so, then waits to be killed before it can close the stream.
WRITER = """
import sys, time
import pyarrow.fs
from tuning.tune.atomic_fs import atomic_local_filesystem
fs = atomic_local_filesystem() if sys.argv[2] == "atomic" else pyarrow.fs.LocalFileSystem()
stream = fs.open_output_stream(sys.argv[1])
stream.write(b"new-" * 100_000)
stream.flush()
print("written", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("filesystem", ["atomic", "plain"])
def test_a_writer_killed_mid_file_leaves_the_old_file_whole(tmp_path: Path, filesystem: str) -> None:
    target = tmp_path / "search_gen_state-1.json"
    target.write_bytes(b"old state")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), filesystem], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"written\n"
        partial = list(tmp_path.glob(f".*{PARTIAL_SUFFIX}"))
        if filesystem == "atomic":
            assert len(partial) == 1 and partial[0].stat().st_size == 400_000  # the bytes did reach the disk ...
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    if filesystem == "atomic":
        assert target.read_bytes() == b"old state"  # ... but never under the target's name
    else:  # what Ray's own pyarrow LocalFileSystem leaves: neither the old state nor the whole new one
        assert target.read_bytes() == b"new-" * 100_000 and not partial


def test_ray_style_copy_through_the_pickled_filesystem(tmp_path: Path) -> None:
    # Ray ships the storage file system to its trial workers by pickling it, then copies with copy_files.
    fs = pickle.loads(pickle.dumps(atomic_local_filesystem()))
    src = tmp_path / "staging"
    (src / "trial" / "checkpoint_000001").mkdir(parents=True)
    payload = os.urandom(3_000_000)
    (src / "trial" / "checkpoint_000001" / "model.pt").write_bytes(payload)
    (src / "experiment_state-x.json").write_text("{}")
    dst = tmp_path / "storage" / "exp"
    pyarrow.fs.copy_files(str(src), str(dst), destination_filesystem=fs)
    assert (dst / "trial" / "checkpoint_000001" / "model.pt").read_bytes() == payload
    assert (dst / "experiment_state-x.json").read_text() == "{}"
    assert not list(dst.rglob(f".*{PARTIAL_SUFFIX}"))
    umask = os.umask(0)
    os.umask(umask)
    assert (dst / "experiment_state-x.json").stat().st_mode & 0o777 == 0o666 & ~umask  # like a plain open()
    fs.delete_dir(str(dst / "trial"))  # Ray prunes old checkpoints the same way
    assert not (dst / "trial").exists()


# A writer whose file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes the disk "full" after 10,000 bytes.
FULL_DISK_WRITER = """
import resource, signal, sys
from tuning.tune.atomic_fs import atomic_local_filesystem
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
import pyarrow.fs
try:  # the way Ray writes into storage
    pyarrow.fs.copy_files(sys.argv[2], sys.argv[1], destination_filesystem=atomic_local_filesystem())
except OSError as exc:
    print("failed:", exc)
"""


def test_a_write_that_fails_is_discarded_not_published(tmp_path: Path) -> None:
    target = tmp_path / "storage" / "state.pkl"
    target.parent.mkdir()
    target.write_bytes(b"old")
    source = tmp_path / "staging.pkl"
    source.write_bytes(b"x" * 200_000)
    out = subprocess.run([sys.executable, "-c", FULL_DISK_WRITER, str(target), str(source)], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith("failed:"), out.stdout + out.stderr
    assert target.read_bytes() == b"old"
    # pyarrow closes (and so discards) the failed stream on one of its threads, which may lose the race with the
    # process's exit: a resume sweeps what is left.
    check_resumable(target.parent)
    assert not list(target.parent.glob(f".*{PARTIAL_SUFFIX}"))


def test_uris_pass_through_and_local_paths_get_the_atomic_filesystem(tmp_path: Path) -> None:
    assert ray_storage("s3://bucket/runs") == ("s3://bucket/runs", None)
    path, fs = ray_storage(str(tmp_path / "runs"))
    assert path == str((tmp_path / "runs").resolve()) and fs.type_name.startswith("py::")


def _experiment(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (folder / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(pickle.dumps({"counter": 3}))
    (folder / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(pickle.dumps(["study"]))
    return folder


def test_check_resumable_accepts_whole_state_and_sweeps_partial_files(tmp_path: Path) -> None:
    exp = _experiment(tmp_path / "exp")
    (exp / f".search_gen_state-x.json.ab12cd34{PARTIAL_SUFFIX}").write_bytes(b"\x80")
    (exp / "trial" / "checkpoint_000002").mkdir(parents=True)
    (exp / "trial" / "checkpoint_000002" / f".model.pt.ab12cd34{PARTIAL_SUFFIX}").write_bytes(b"\x80")
    check_resumable(exp)
    assert not list(exp.rglob(f".*{PARTIAL_SUFFIX}"))


@pytest.mark.parametrize("damaged", ["search_gen_state-2026-02-02_00-00-00.json",
                                     "searcher-state-2026-02-02_00-00-00.pkl",
                                     "experiment_state-2026-02-02_00-00-00.json"])
def test_check_resumable_names_the_newest_damaged_file(tmp_path: Path, damaged: str) -> None:
    exp = _experiment(tmp_path / "exp")
    whole = pickle.dumps({"counter": 4}) if damaged.endswith(("pkl", "state-2026-02-02_00-00-00.json")) else b""
    (exp / damaged).write_bytes(whole[: len(whole) // 2])  # a newer session's file, cut short
    with pytest.raises(search.UserError, match=rf"--resume: .*{damaged} is damaged .*move that file away"):
        check_resumable(exp)


def test_resume_refuses_damaged_searcher_state_before_ray_starts(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    space = str(HERE / "spaces" / "resume.yaml")
    exp = _experiment(tmp_path / "runs" / "old")
    # the meta names the experiment's space and resources, as every one does
    (exp / search.EXPERIMENT_META).write_text(json.dumps({"space": "resume", "space_file": space,
                                                          "resources": {"gpus_per_trial": 0.0}}))
    (exp / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(b"")  # what a driver killed mid-copy left
    code = search.main(["--space", space, "--storage-path", str(tmp_path / "runs"), "--name", "old", "--resume",
                        "--quiet", "--gpus-per-trial", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "search_gen_state-2026-01-01_00-00-00.json is damaged" in err
    assert "without the searcher's memory" in err
