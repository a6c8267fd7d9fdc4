"""User mistakes on the command line: exit status 2, one line on stderr, no traceback, nothing written.

Every case runs the real CLI in a subprocess (``python -m tuning.search`` / ``python -m tuning.report``); all of
them fail in validation, before Ray starts, so each takes about the time of importing torch.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

DATA_DIR = os.environ["TUNING_DATA_DIR"]  # set by conftest.py

# A valid space on a corpus given by path; the cases below swap in bad corpora.
SPACE_ON_FILE = """\
corpus: {corpus}
num_samples: 2
budget: {{chars_per_iter: 1000, max_iters: 2, grace_iters: 1, reduction_factor: 2}}
params:
  cell: {{type: categorical, choices: [rnn, gru]}}
  seq_len: {{type: int, low: 10, high: 30}}
  hidden_size: 16
  embed_dim: 8
  batch_size: 4
"""


def snapshot(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def run_error(tmp_path: Path, *args: str | Path, module: str = "tuning.search", storage: Path | None = None,
              env: dict[str, str] | None = None) -> str:
    """Run the CLI in tmp_path, assert the one-line error contract and that nothing was written; return the line.

    ``--storage-path`` defaults to ``tmp_path/"runs"`` for tuning.search; pass ``storage`` to use another one.
    """
    cache = tmp_path / "xdg-cache"
    cache.mkdir(exist_ok=True)
    runs = tmp_path / "runs"
    argv = [str(a) for a in args]
    if module == "tuning.search":
        argv += ["--storage-path", str(storage if storage is not None else runs)]
    full_env = {**os.environ, "TUNING_DATA_DIR": DATA_DIR, "XDG_CACHE_HOME": str(cache), **(env or {})}
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=tmp_path, env=full_env, capture_output=True,
                          text=True, timeout=120)
    shown = f"argv={argv}\nrc={proc.returncode}\nstdout={proc.stdout!r}\nstderr={proc.stderr!r}"
    assert "Traceback" not in proc.stderr, shown
    assert proc.returncode == 2, shown
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, shown
    line = lines[0]
    assert line.startswith("error: ") and line[len("error: "):].strip(), shown
    assert not runs.exists(), shown
    if storage is not None:
        assert not storage.exists(), shown
    assert snapshot(tmp_path) == before, f"files appeared: {sorted(snapshot(tmp_path) - before)}\n{shown}"
    return line


def space_on_corpus(tmp_path: Path, corpus: Path | str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(SPACE_ON_FILE.format(corpus=corpus), encoding="utf-8")
    return path


# --- search spaces ---------------------------------------------------------------------------------------------


def test_unknown_space_name(tmp_path: Path) -> None:
    line = run_error(tmp_path, "--space", "no_such_space")
    assert "no_such_space" in line
    assert "smoke" in line  # lists the known names


def test_malformed_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("params: [unclosed\n", encoding="utf-8")
    line = run_error(tmp_path, "--space", "bad.yaml")
    assert "bad.yaml" in line and "malformed YAML" in line


BILLION_LAUGHS = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10)) + "params: {cell: *a9}\n"


@pytest.mark.parametrize(("text", "expected"), [
    (BILLION_LAUGHS, "refused: more than 10,000 values once aliases (*name) are expanded"),
    ("params: " + "[" * 5000 + "]" * 5000 + "\n", "refused: nested deeper than 50 levels"),
    ("params: {[1, 2]: x}\n", "malformed YAML at line 1, column 10: a key that is a list"),
    ("params: {1: a, cell: rnn}\n", "params key=1 is invalid: a name; allowed: cell"),
    ("params: {cell: " + "x" * 100_000 + "}\n", "params.cell='xxxx"),
])
def test_hostile_yaml_is_one_short_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "hostile.yaml").write_text(text, encoding="utf-8")
    line = run_error(tmp_path, "--space", "hostile.yaml")
    assert "hostile.yaml" in line and expected in line
    assert len(line) < 300


def test_space_file_with_an_invalid_bound(tmp_path: Path) -> None:
    space = tmp_path / "bounds.yaml"
    space.write_text(SPACE_ON_FILE.format(corpus="nextchar").replace("low: 10, high: 30", "low: 40, high: 30"),
                     encoding="utf-8")
    line = run_error(tmp_path, "--space", space)
    assert str(space) in line and "params.seq_len.low=40" in line


# --- flags -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "value"), [("--num-samples", "0"), ("--num-samples", "-3"),
                                             ("--gpus-per-trial", "-1")])
def test_bad_flag_value(tmp_path: Path, flag: str, value: str) -> None:
    line = run_error(tmp_path, "--space", "smoke", flag, value)
    assert flag in line and value in line


def test_deterministic_refuses_several_trials_at_once(tmp_path: Path) -> None:
    line = run_error(tmp_path, "--space", "smoke", "--deterministic", "--max-concurrent", "2")
    assert "--max-concurrent=2" in line and "--deterministic" in line


def test_resume_with_nothing_to_resume(tmp_path: Path) -> None:
    line = run_error(tmp_path, "--space", "smoke", "--resume")
    assert "--resume" in line and "smoke" in line


def test_storage_path_under_a_regular_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    storage = afile / "runs"
    line = run_error(tmp_path, "--space", "smoke", storage=storage)
    assert "--storage-path" in line and str(storage) in line
    assert afile.is_file() and afile.read_text() == "not a folder\n"


# --- corpora ---------------------------------------------------------------------------------------------------


def test_corpus_path_does_not_exist(tmp_path: Path) -> None:
    line = run_error(tmp_path, "--space", space_on_corpus(tmp_path, "/nonexistent.txt"))
    assert "/nonexistent.txt" in line


def test_corpus_not_utf8(tmp_path: Path) -> None:
    corpus = tmp_path / "binary.txt"
    corpus.write_bytes(b"abc\xff\xfe" * 200)
    line = run_error(tmp_path, "--space", space_on_corpus(tmp_path, corpus))
    assert str(corpus) in line and "UTF-8" in line


def test_corpus_empty(tmp_path: Path) -> None:
    corpus = tmp_path / "empty.txt"
    corpus.write_bytes(b"")
    line = run_error(tmp_path, "--space", space_on_corpus(tmp_path, corpus))
    assert "empty" in line and "empty.txt" in line


def test_corpus_too_short_for_seq_len(tmp_path: Path) -> None:
    corpus = tmp_path / "short.txt"
    corpus.write_text("abcdefghij" * 3, encoding="utf-8")  # 27 training and 3 validation characters; seq_len <= 30
    line = run_error(tmp_path, "--space", space_on_corpus(tmp_path, corpus))
    assert "seq_len" in line and "short.txt" in line


def test_named_corpus_missing_and_download_failing(tmp_path: Path) -> None:
    """No data folder, an empty cache and a download that fails: one line naming the three ways to provide it."""
    empty_data = tmp_path / "empty-data"
    empty_data.mkdir()
    line = run_error(tmp_path, "--space", "shakespeare", env={"TUNING_DATA_DIR": str(empty_data),
                                                               "HTTPS_PROXY": "http://127.0.0.1:9",
                                                               "https_proxy": "http://127.0.0.1:9"})
    assert "tinyshakespeare" in line and "TUNING_DATA_DIR" in line and "download failed" in line
    assert not list((tmp_path / "xdg-cache").glob("tuning/tinyshakespeare*"))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ONEDNN_MAX_CPU_ISA caps x86 ISAs")
def test_bf16_on_a_cpu_without_bfloat16_rnns(tmp_path: Path) -> None:
    """Every trial would fail at its first step: a local CPU search says so before Ray starts. oneDNN capped at
    AVX2 is such a CPU for real (the CI machine that found this had no AVX-512)."""
    line = run_error(tmp_path, "--space", "smoke", "--precision", "bf16", env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert line.startswith("error: precision=bf16 is not supported on this CPU") and "use precision fp32" in line


# --- report ----------------------------------------------------------------------------------------------------


def test_report_on_a_directory_that_is_not_an_experiment(tmp_path: Path) -> None:
    notexp = tmp_path / "not-an-experiment"
    notexp.mkdir()
    (notexp / "something.txt").write_text("hello\n")
    line = run_error(tmp_path, notexp, module="tuning.report")
    assert str(notexp) in line
    assert not (notexp / "report").exists()


def test_batch_larger_than_the_training_split(tmp_path: Path) -> None:
    space = tmp_path / "big-batch.yaml"
    space.write_text(SPACE_ON_FILE.format(corpus="nextchar").replace("batch_size: 4", "batch_size: 5000"),
                     encoding="utf-8")
    line = run_error(tmp_path, "--space", space)
    assert "params.batch_size=5000 is invalid: larger than the" in line


def test_report_dir_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x", encoding="utf-8")
    line = run_error(tmp_path, "--space", "smoke", "--report-dir", blocker / "report")
    assert "--report-dir" in line and "not writable" in line


def test_argparse_mistake_is_one_line_too(tmp_path: Path) -> None:
    line = run_error(tmp_path, "--space", "smoke", "--num-samples", "abc")
    assert line == "error: argument --num-samples: invalid int value: 'abc'"
