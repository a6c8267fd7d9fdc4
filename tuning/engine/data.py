"""Corpora: finding the text, checking it, and splitting it into token ids.

A corpus is named (``tinyshakespeare``, ``nextchar``) or given as a path to any UTF-8 text file. Named
corpora are found, in order, in ``$TUNING_DATA_DIR``, inside the package (small ones ship with it), in a
per-user cache directory, and otherwise downloaded into that cache; every copy's checksum is verified.

The split is contiguous: the first 90% of the text trains, the last 10% validates. The homework split
overlapping stride-1 windows at random, so almost every validation window shared all but one character
with a training window; a contiguous split cannot leak that way.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from tuning.errors import UserError, quote
from tuning.files import atomic_write

DATA_DIR_ENV = "TUNING_DATA_DIR"
TRAIN_FRACTION = 0.9


@dataclass(frozen=True)
class KnownCorpus:
    filename: str
    sha256: str
    size: int
    url: str | None  # None: no public download source
    packaged: bool = False  # shipped inside the package (tuning/engine/corpora/), so it needs no download


KNOWN_CORPORA: dict[str, KnownCorpus] = {
    "tinyshakespeare": KnownCorpus(
        filename="tinyshakespeare.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        size=1_115_394,
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    ),
    # The homework's Problem 1 paragraph: it has no public source, and at 2.4 KB it ships with the package.
    "nextchar": KnownCorpus(
        filename="nextchar.txt",
        sha256="370e4e1abd2b1496db75276a3cae6567e5e587bd5f9da0d76f22a3bed265f002",
        size=2_391,
        url=None,
        packaged=True,
    ),
}


def cache_dir() -> Path:
    """The per-user cache directory (``$XDG_CACHE_HOME/tuning`` or ``~/.cache/tuning``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tuning"


def packaged_path(known: KnownCorpus) -> Path | None:
    """The copy shipped inside the package, where there is one (a file on disk for any install of ours)."""
    if not known.packaged:
        return None
    path = Path(str(importlib.resources.files("tuning.engine") / "corpora" / known.filename))
    return path if path.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, known: KnownCorpus, name: str) -> Path:
    actual = _sha256(path)
    if actual != known.sha256:
        raise UserError(
            f"corpus {name!r} at {path} has sha256 {actual[:12]}…, expected {known.sha256[:12]}…: "
            "the file is corrupt or a different text; delete it or point at a good copy"
        )
    return path


def _download(known: KnownCorpus, name: str, target: Path) -> Path:
    url = known.url
    assert url is not None
    from tqdm import tqdm  # progress bar; imported here because downloads are rare

    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=30) as response, tmp.open("wb") as out:
            total = int(response.headers.get("Content-Length") or known.size)
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}") as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        _verified(tmp, known, name)  # a bad download never replaces anything

    made_folder = not target.parent.exists()
    try:
        atomic_write(target, fetch)
    except BaseException:
        if made_folder:  # a failed first download leaves no empty cache folder behind
            with contextlib.suppress(OSError):
                target.parent.rmdir()
        raise
    return target


def resolve_corpus(name_or_path: str, *, download: bool = True) -> Path:
    """Find the corpus file for a known name or a path; see the module docstring for the order."""
    known = KNOWN_CORPORA.get(name_or_path)
    if known is None:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            allowed = ", ".join(sorted(KNOWN_CORPORA))
            raise UserError(
                f"corpus {quote(name_or_path)}: no such file (give a path to a UTF-8 text file or one of: {allowed})"
            )
        return path
    candidates = []
    if os.environ.get(DATA_DIR_ENV):
        candidates.append(Path(os.environ[DATA_DIR_ENV]).expanduser() / known.filename)
    if (shipped := packaged_path(known)) is not None:
        candidates.append(shipped)
    cached = cache_dir() / known.filename
    candidates.append(cached)
    for candidate in candidates:
        if candidate.is_file():
            return _verified(candidate, known, name_or_path)
    if known.url is not None and download:
        try:
            return _download(known, name_or_path, cached)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = f"download failed ({exc})"
    else:
        reason = "it has no download source" if known.url is None else "downloading is off"
    raise UserError(
        f"corpus {quote(name_or_path)} not found and {reason}; provide it one of three ways: pass the file's path, "
        f"set {DATA_DIR_ENV} to a directory holding {known.filename}, or place it at {cached}"
    )


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"corpus {path}: not UTF-8 (byte {exc.start}, line {line}: {exc.reason})") from None


@dataclass(frozen=True)
class Corpus:
    """A text turned into token ids, with its vocabulary and its contiguous split."""

    name: str
    vocab: str  # the characters in index order
    train_ids: torch.Tensor  # int64, shape (N_train,)
    val_ids: torch.Tensor  # int64, shape (N_val,)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        index = {ch: i for i, ch in enumerate(self.vocab)}
        return torch.tensor([index[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def check_seq_len(self, seq_len: int) -> None:
        """Both splits must hold at least one window of ``seq_len`` inputs plus its shifted target."""
        for split, ids in (("training", self.train_ids), ("validation", self.val_ids)):
            if len(ids) < seq_len + 1:
                raise UserError(
                    f"corpus {self.name}: the {split} split has {len(ids)} characters, too short for "
                    f"seq_len={seq_len} (needs at least seq_len + 1 = {seq_len + 1})"
                )


def split_text(text: str, name: str, normalize_whitespace: bool = False) -> Corpus:
    """Build a :class:`Corpus` from text: vocabulary sorted by code point, first 90% train, last 10% validation."""
    if normalize_whitespace:
        # The homework's Problem 1 models saw the paragraph as one line (44 characters, no newline).
        text = re.sub(r"\s+", " ", text).strip()
    if not text:
        raise UserError(f"corpus {name}: empty (a corpus needs text to train on)")
    vocab = "".join(sorted(set(text)))
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = torch.tensor([index[ch] for ch in text], dtype=torch.long)
    cut = int(len(ids) * TRAIN_FRACTION)
    return Corpus(name=name, vocab=vocab, train_ids=ids[:cut].clone(), val_ids=ids[cut:].clone())


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, normalize_whitespace: bool) -> Corpus:
    file = Path(path)
    return split_text(read_text(file), name=file.name, normalize_whitespace=normalize_whitespace)


def load_corpus(name_or_path: str, normalize_whitespace: bool = False, *, download: bool = True) -> Corpus:
    """Resolve, read, check and split a corpus. Cached per process: trials reuse the same tensors."""
    path = resolve_corpus(name_or_path, download=download).resolve()
    corpus = _load_cached(str(path), path.stat().st_mtime_ns, normalize_whitespace)
    if name_or_path in KNOWN_CORPORA:
        corpus = Corpus(name_or_path, corpus.vocab, corpus.train_ids, corpus.val_ids)
    return corpus
