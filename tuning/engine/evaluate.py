"""Evaluate a checkpoint on its corpus's whole validation split: ``python -m tuning.evaluate CHECKPOINT_DIR``.

Searches may validate on a prefix of the split (``val_max_chars``) to save time; this gives the full figure,
the one to quote against other work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tuning.engine.checkpoint import load_checkpoint
from tuning.engine.data import Corpus, load_corpus
from tuning.engine.train import evaluate, validation_windows
from tuning.errors import ArgumentParser, UserError


def evaluate_checkpoint(directory: Path, seq_len: int | None = None, corpus: Corpus | None = None) -> dict[str, Any]:
    """The checkpoint's metrics on its corpus's whole validation split, on the CPU.

    ``corpus``: the checkpoint's corpus, already loaded (one load serves many checkpoints); by default it is
    loaded by the name the checkpoint was trained on.
    """
    if seq_len is not None and seq_len < 1:
        raise UserError(f"--seq-len={seq_len} is invalid: a positive integer (omit it for the trained length)")
    saved = load_checkpoint(directory)
    config = saved.train_config
    if corpus is None:
        corpus = load_corpus(config.corpus, config.normalize_whitespace)
    if corpus.vocab != saved.vocab:
        raise UserError(f"checkpoint {directory} was trained on another vocabulary than corpus {config.corpus}")
    window = config.seq_len if seq_len is None else seq_len
    corpus.check_seq_len(window)
    x, y = validation_windows(corpus.val_ids, window)
    metrics = evaluate(saved.model, x, y)
    return {"checkpoint": str(directory), "corpus": config.corpus, "seq_len": window, "iteration": saved.iteration,
            "validation_chars": int(y.numel()), "windows": int(len(y)), **metrics}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tuning.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--seq-len", type=int, help="window length (default: the one it was trained with)")
    try:
        args = parser.parse_args(argv)
        print(json.dumps(evaluate_checkpoint(args.checkpoint, args.seq_len), indent=2))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
