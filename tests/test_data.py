from __future__ import annotations

import hashlib
import http.server
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tuning.engine import data
from tuning.engine.data import KNOWN_CORPORA, KnownCorpus, load_corpus, resolve_corpus, split_text
from tuning.errors import UserError


def test_known_corpora_resolve_and_verify(data_dir: Path) -> None:
    shakespeare = resolve_corpus("tinyshakespeare")
    assert shakespeare.stat().st_size == 1_115_394
    corpus = load_corpus("nextchar", normalize_whitespace=True)
    assert corpus.vocab_size == 44  # the homework's Problem 1 models: the paragraph without newlines
    assert load_corpus("tinyshakespeare").vocab_size == 65


def test_split_is_contiguous_without_overlap() -> None:
    corpus = load_corpus("tinyshakespeare")
    whole = corpus.encode(resolve_corpus("tinyshakespeare").read_text(encoding="utf-8"))
    assert len(corpus.train_ids) == int(len(whole) * 0.9)
    # the train split is the head of the text and validation the rest: together exactly the text, once
    assert torch.equal(torch.cat([corpus.train_ids, corpus.val_ids]), whole)
    assert corpus.vocab == "".join(sorted(corpus.vocab))


def test_any_utf8_file_is_a_corpus(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("héllo wörld " * 50, encoding="utf-8")
    corpus = load_corpus(str(path))
    assert "é" in corpus.vocab and corpus.decode(corpus.train_ids[:5]) == "héllo"


def test_missing_file() -> None:
    with pytest.raises(UserError, match="no such file"):
        load_corpus("/nonexistent/corpus.txt")


def test_not_utf8_says_where(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"first line\nsecond \xe9t\xe9 line\n")
    with pytest.raises(UserError, match=r"not UTF-8 \(byte 18, line 2"):
        load_corpus(str(path))


def test_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("   \n\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty"):
        load_corpus(str(path), normalize_whitespace=True)


def test_too_short_for_sequence_length() -> None:
    corpus = split_text("abcdefghij" * 10, "tiny")  # 90 train / 10 validation characters
    corpus.check_seq_len(9)
    with pytest.raises(UserError, match="validation split has 10 characters, too short for seq_len=10"):
        corpus.check_seq_len(10)


@pytest.fixture()
def empty_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    return tmp_path


def test_offline_error_names_three_ways(empty_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(UserError) as info:
        resolve_corpus("tinyshakespeare")
    message = str(info.value)
    assert "pass the file's path" in message and "TUNING_DATA_DIR" in message and "cache" in message
    assert "\n" not in message


def test_nextchar_ships_with_the_package(empty_dirs: Path) -> None:
    """No data folder, an empty cache, no network: the paragraph still resolves, checksum checked, nothing cached."""
    path = resolve_corpus("nextchar", download=False)
    assert path.parent.name == "corpora" and path.parent.parent == Path(data.__file__).parent
    assert hashlib.sha256(path.read_bytes()).hexdigest() == KNOWN_CORPORA["nextchar"].sha256
    assert load_corpus("nextchar", normalize_whitespace=True).vocab_size == 44
    assert not (empty_dirs / "cache").exists()


def test_a_corpus_without_source_or_copy_says_how_to_provide_it(empty_dirs: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KNOWN_CORPORA, "private", KnownCorpus("private.txt", "0" * 64, 10, url=None))
    with pytest.raises(UserError, match="no download source"):
        resolve_corpus("private")


def test_data_dir_copy_with_wrong_checksum_is_refused(empty_dirs: Path) -> None:
    """A wrong copy the user points at is refused, not passed over for the packaged one."""
    (empty_dirs / "data" / "nextchar.txt").write_text("not the paragraph", encoding="utf-8")
    with pytest.raises(UserError, match="sha256"):
        resolve_corpus("nextchar")


def test_cached_copy_with_wrong_checksum_is_refused(empty_dirs: Path) -> None:
    cached = data.cache_dir() / "tinyshakespeare.txt"
    cached.parent.mkdir(parents=True)
    cached.write_text("not the play", encoding="utf-8")
    with pytest.raises(UserError, match="sha256"):
        resolve_corpus("tinyshakespeare")


@pytest.fixture()
def local_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A real HTTP server on loopback standing in for the public raw file."""
    body = b"To be, or not to be, that is the question.\n" * 40
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "input.txt").write_bytes(body)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path / "served"), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/input.txt", body
    server.shutdown()


def test_download_verifies_and_writes_atomically(empty_dirs: Path, local_server: tuple[str, bytes],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, body = local_server
    good = KnownCorpus("dl.txt", hashlib.sha256(body).hexdigest(), len(body), url)
    monkeypatch.setitem(KNOWN_CORPORA, "dl", good)
    path = resolve_corpus("dl")
    assert path == data.cache_dir() / "dl.txt" and path.read_bytes() == body
    # a download whose checksum is wrong is an error and leaves nothing behind
    monkeypatch.setitem(KNOWN_CORPORA, "bad", KnownCorpus("bad.txt", "0" * 64, len(body), url))
    with pytest.raises(UserError, match="sha256"):
        resolve_corpus("bad")
    assert sorted(p.name for p in data.cache_dir().iterdir()) == ["dl.txt"]
