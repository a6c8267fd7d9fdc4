"""The homework-reproduction grids (``hw3-p1``/``hw3-p2``) and the comparison with the homework's figures.

(a) Every point of each grid space, built as the trainer builds it (``TrainConfig`` → ``CharLM``), has the
homework's parameter count exactly and, with the standard head, calflops figures that print as the homework's.
(b) ``compare``/``render_comparison`` on hand-made trial and history frames: no Ray, no training.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tuning.engine.complexity import Complexity, measure
from tuning.engine.config import ModelConfig, TrainConfig
from tuning.engine.data import load_corpus
from tuning.engine.model import CharLM
from tuning.files import EXPERIMENT_META
from tuning.homework import compare as cmp
from tuning.homework.reference import load_reference, printed_matches
from tuning.report.results import history_frame, trials_frame
from tuning.spec.space import SearchSpace, load_space

REPO = Path(__file__).resolve().parents[1]
SPACES = {1: REPO / "search_spaces" / "hw3-p1.yaml", 2: REPO / "search_spaces" / "hw3-p2.yaml"}
VOCAB = {1: 44, 2: 65}
BATCH = {1: 32, 2: 128}
GRID_SIZE = {1: 9, 2: 12}
REFERENCE = load_reference()
HEAD = {0: "standard", 1: "adjusted"}


def grid_points(space: SearchSpace) -> list[dict[str, Any]]:
    """The expanded grid: every combination of the grid values on top of the space's shared options."""
    names = [p.name for p in space.params]
    return [{**space.base_config(), **dict(zip(names, values, strict=True))}
            for values in itertools.product(*(p.choices for p in space.params))]


def reference_row(problem: int, cell: str, seq_len: int, head: str) -> dict[str, Any]:
    ref = REFERENCE
    mask = (ref["problem"] == problem) & (ref["cell"] == cell) & (ref["seq_len"] == seq_len) & (ref["head"] == head)
    rows = ref[mask]
    assert len(rows) == 1, (problem, cell, seq_len, head)
    return dict(rows.iloc[0])


@cache
def measured(config: ModelConfig, seq_len: int, batch: int) -> Complexity:
    return measure(CharLM(config), seq_len, batch_size=batch)


# ---------------------------------------------------------------- (a) the grid spaces


@pytest.mark.parametrize("problem", [1, 2])
def test_space_is_the_homework_grid(problem: int, data_dir: Path) -> None:
    space = load_space(str(SPACES[problem]))
    assert space.is_grid and space.sampler == "grid"
    assert space.scheduler == "none"
    assert space.grid_size() == GRID_SIZE[problem] == len(grid_points(space))
    assert space.objective.metric == "val_loss" and space.objective.mode == "min"
    points = {(p["cell"], p["seq_len"], HEAD[p["head_depth"]]) for p in grid_points(space)}
    ref = REFERENCE[REFERENCE["problem"] == problem]
    assert points == {(r.cell, r.seq_len, r.head) for r in ref.itertuples()}
    corpus = load_corpus(space.corpus, space.normalize_whitespace, download=False)
    assert corpus.vocab_size == VOCAB[problem]


CASES = [pytest.param(problem, point, id=f"p{problem}-{point['cell']}-{point['seq_len']}-{HEAD[point['head_depth']]}")
         for problem in (1, 2) for point in grid_points(load_space(str(SPACES[problem])))]


@pytest.mark.parametrize(("problem", "point"), CASES)
def test_grid_point_reproduces_homework_model(problem: int, point: dict[str, Any]) -> None:
    config = TrainConfig.from_dict(point)
    assert (config.embed_dim, config.hidden_size, config.num_layers) == (128, 128, 1)
    assert config.batch_size == BATCH[problem]
    head = HEAD[config.head_depth]
    row = reference_row(problem, config.cell, config.seq_len, head)
    counts = measured(config.model_config(VOCAB[problem]), config.seq_len, BATCH[problem])
    assert counts.params == row["params"]
    if head == "standard":
        assert printed_matches(counts.calflops_flops, row["flops_printed"])
        assert printed_matches(counts.calflops_macs, row["macs_printed"])
    else:  # the homework counted this head twice (tests/test_homework.py::test_adjusted_head)
        assert not printed_matches(counts.calflops_macs, row["macs_printed"])


# ---------------------------------------------------------------- (b) compare and render on synthetic frames

# GRU wins on purpose (the homework's LSTM did), so a hard-coded cell name in the conclusions would fail.
CELL_LOSS = {"gru": 1.50, "lstm": 1.60}
SEQ_EFFECT = {20: 0.06, 30: 0.03, 50: 0.0}
ADJUSTED_EFFECT = 0.02


def synthetic_p2() -> tuple[pd.DataFrame, pd.DataFrame]:
    trials, history = [], []
    for i, (cell, seq_len, depth) in enumerate(itertools.product(("lstm", "gru"), (20, 30, 50), (0, 1))):
        row = reference_row(2, cell, seq_len, HEAD[depth])
        trial_id = "t|pipe" if i == 0 else f"t{i:02d}"
        loss = CELL_LOSS[cell] + SEQ_EFFECT[seq_len] + ADJUSTED_EFFECT * depth
        trials.append({
            "trial_id": trial_id, "status": "completed", "cell": cell, "seq_len": seq_len, "head_depth": depth,
            "head_width": 128, "head_dropout": 0.5, "embed_dim": 128, "hidden_size": 128, "num_layers": 1,
            "batch_size": 128, "lr": 0.002, "iteration": 4, "params": row["params"],
            "train_loss": loss - 0.1, "train_acc": 0.6, "val_loss": loss + 0.1, "val_loss_last": loss,
            "val_acc": 0.5, "val_acc_last": 0.55, "train_time_s": 100.0 * (1 + depth), "inference_latency_ms": 0.5,
        })
        if (cell, seq_len, depth) == ("gru", 20, 0):  # homework test loss 1.44055: reached at iteration 3, 30 s
            curve = [(1, 2.0, 10.0), (2, 1.45, 20.0), (3, 1.44, 30.0), (4, 1.40, 40.0)]
        else:  # never reaches the homework's test loss
            curve = [(k, 3.0, 10.0 * k) for k in range(1, 5)]
        history += [{"trial_id": trial_id, "iteration": k, "val_loss_last": v, "train_time_s": t}
                    for k, v, t in curve]
    # A second, errored trial of lstm/50/adjusted: the completed one must be chosen.
    trials.append({**trials[5], "trial_id": "a00", "status": "errored", "iteration": 1, "val_loss_last": 0.1})
    return trials_frame(trials), history_frame(history)


@pytest.fixture(scope="module")
def p2_table() -> pd.DataFrame:
    trials, history = synthetic_p2()
    return cmp.compare(trials, history, 2)


def test_compare_rows_and_matches(p2_table: pd.DataFrame) -> None:
    table = p2_table
    assert len(table) == 12
    assert table["trial_id"].notna().all()
    assert table["params_match"].all()
    std, adj = table[table["head"] == "standard"], table[table["head"] == "adjusted"]
    assert std["flops_match"].all() and std["macs_match"].all()
    assert not adj["flops_match"].any() and not adj["macs_match"].any()  # never faked
    assert adj["doubled_head_match"].all() and not std["doubled_head_match"].any()
    assert (adj["head_macs"] == 3_162_112).all() and (adj["head_flops"] == 6_373_376).all()
    assert (table["calflops_macs"] < table["macs"]).all()  # corrected MACs count the recurrent layers
    pick = table[(table["cell"] == "lstm") & (table["seq_len"] == 50) & (table["head"] == "adjusted")].iloc[0]
    assert pick["trials_matched"] == 2 and pick["status"] == "completed" and pick["val_loss_last"] > 1.0
    first = table[(table["cell"] == "lstm") & (table["seq_len"] == 20) & (table["head"] == "standard")].iloc[0]
    assert first["loss_diff"] == pytest.approx(1.66 - 1.39276)
    assert first["train_time_diff_s"] == pytest.approx(100.0 - 1104)


def test_time_to_homework_loss(p2_table: pd.DataFrame) -> None:
    reached = p2_table[p2_table["time_to_hw_loss_s"].notna()]
    assert len(reached) == 1
    row = reached.iloc[0]
    assert (row["cell"], row["seq_len"], row["head"]) == ("gru", 20, "standard")
    assert row["time_to_hw_loss_s"] == 30.0 and row["iter_to_hw_loss"] == 3
    assert math.isnan(cmp.time_to_loss(history_frame([]), "none", 1.0)[0])


def test_render(p2_table: pd.DataFrame) -> None:
    md = cmp.render_comparison(p2_table, 2)
    assert "t\\|pipe" in md and "| t|pipe" not in md
    body_rows = [line for line in md.splitlines() if line.startswith("| lstm") or line.startswith("| gru")]
    assert body_rows and all(line.endswith("|") for line in body_rows)
    assert "counted twice" in md and "3,162,112" in md and "6.3242 M" in md
    assert "contiguous" in md and "leaked" in md and "no MACs" in md
    conclusions = md.split("## Conclusions", 1)[1]
    assert "Lowest mean `val_loss_last`: **gru** (1.5400" in conclusions
    assert re.search(r"From 20 to 50 it falls by 0\.0600", conclusions)
    assert "by +0.0200 on average (higher in 6 of 6)" in conclusions and "2.00×" in conclusions
    assert "1 of 12 of our trials reached" in conclusions


def test_write_comparison_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = tmp_path / "exp"
    trial_dir = experiment / "t00_00000"
    trial_dir.mkdir(parents=True)
    (experiment / EXPERIMENT_META).write_text(json.dumps({"corpus": "tinyshakespeare", "scheduler": "none",
                                                          "budget": {"max_iters": 1}}))
    (trial_dir / "params.json").write_text(json.dumps({"cell": "gru", "seq_len": 20, "head_depth": 0}))
    (trial_dir / "result.json").write_text(json.dumps({"iteration": 1, "val_loss_last": 1.4, "val_loss": 1.5,
                                                       "train_time_s": 5.0, "trial_status": "completed"}) + "\n")
    out = tmp_path / "out"
    assert cmp.main([str(experiment), "--problem", "2", "--out", str(out)]) == 0
    table = pd.read_parquet(out / cmp.COMPARISON_TABLE)
    assert len(table) == 12 and int(table["trial_id"].notna().sum()) == 1
    assert "## Conclusions" in (out / cmp.COMPARISON_MD).read_text(encoding="utf-8")
    capsys.readouterr()
    for argv in ([str(experiment), "--problem", "3"], [str(experiment), "--problem", "1"],
                 [str(tmp_path / "missing"), "--problem", "2"], [str(experiment)]):
        assert cmp.main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)
