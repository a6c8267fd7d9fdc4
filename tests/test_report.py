"""Tests for tuning.report (and the parts of tuning.report.results / tuning.files it stands on), without Ray.

Every table is built by hand with ``trials_frame`` / ``history_frame``; the expected fronts and hypervolumes
are worked out in the comments.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuning.files import (
    EVALUATION_DIR,
    FULL_VALIDATION,
    HISTORY_TABLE,
    PARETO_TABLE,
    PLOT_CURVES,
    PLOT_FRONT,
    PROMOTION_STATE,
    REPORT_MD,
    SCHEDULER_DIR,
    TRIALS_TABLE,
    atomic_write,
    atomic_write_text,
)
from tuning.report import write as report_cli
from tuning.report.fronts import ACCURACY, COSTS, PARETO_TYPES, front_name
from tuning.report.plots import plot_curves, plot_front
from tuning.report.render import budget_label, code_span, md_escape, render_markdown, validation_text
from tuning.report.results import (
    HISTORY_TYPES,
    STATUSES,
    TRIAL_TYPES,
    classify,
    held_at_rungs,
    history_frame,
    load_experiment,
    read_full_validation,
    trials_frame,
    waiting_at_rungs,
)
from tuning.report.tables import (
    Tables,
    build_tables,
    early_stopping_saving,
    hypervolume_trace,
    log_axes,
    on_log_axes,
    trials_to_evaluate,
    wilson_interval,
)
from tuning.report.write import summary, write_tables
from tuning.spec import pareto

NAN = math.nan
FLOPS = "train_flops_per_char"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ACC_FLOPS_FRONT = front_name({ACCURACY: "max", FLOPS: "min"})
ALL_FRONT = front_name({ACCURACY: "max", **{c: "min" for c in COSTS}})
TWO_D_FRONTS = {cost: front_name({ACCURACY: "max", cost: "min"}) for cost in COSTS}
ACCURACY_FRONTS = {*TWO_D_FRONTS.values(), ALL_FRONT}
LOSS_FRONTS = {*(front_name({"val_loss": "min", cost: "min"}) for cost in COSTS),
               front_name({"val_loss": "min", **{c: "min" for c in COSTS}})}

# The example's accuracy/FLOPs front c1 (0.5, 100), c2 (0.6, 200), c4 (0.7, 400), reference 550, over log10 FLOPs
EXAMPLE_HV = 0.5 * math.log10(550 / 100) + 0.1 * math.log10(550 / 200) + 0.1 * math.log10(550 / 400)

META: dict[str, Any] = {
    "space": "t",
    "corpus": "nextchar",
    "objective": {"metric": "val_loss", "mode": "min"},
    "sampler": "tpe",
    "seed": 0,
    "scheduler": "asha",
    "budget": {"chars_per_iter": 1000, "max_iters": 4, "grace_iters": 1, "reduction_factor": 2},
    "hardware": {"cpu": "TestCPU", "cpu_count": 2, "gpu": None, "gpu_count": 0},
    "versions": {"torch": "2.13.0", "ray": "2.60.0"},
    "commands": ["python -m tuning.search --space t"],
}


def trial(tid: str, status: str, *, acc: float = NAN, flops: float = NAN, params: float = NAN,
          time_s: float = NAN, latency: float = NAN, val_loss: float = NAN, cell: str = "lstm", seq_len: int = 32,
          iteration: int | None = 4, sample: str | None = None, error: str | None = None) -> dict[str, Any]:
    """One trial record as load_experiment builds it (only the columns the report looks at)."""
    return {
        "trial_id": tid, "status": status, "cell": cell, "seq_len": seq_len, "embed_dim": 16, "hidden_size": 32,
        "num_layers": 1, "dropout": 0.0, "head_depth": 0, "head_width": 16, "head_dropout": 0.0, "lr": 0.002,
        "batch_size": 8, "iteration": iteration, "chars_trained": None if iteration is None else 1000 * iteration,
        "val_loss": val_loss, ACCURACY: acc, "best_val_loss": val_loss, "best_val_acc_last": acc,
        "best_iteration": iteration, "params": params, FLOPS: flops, "train_time_s": time_s,
        "inference_latency_ms": latency, "sample_prompt": None if sample is None else "To be",
        "sample": sample, "error": error,
    }


def example_records() -> list[dict[str, Any]]:
    """Five completed trials, two early-stopped, one diverged, one errored, one unfinished.

    Completed (acc, flops, params, time, latency):
        c1 (0.50, 100, 1000, 10, 1.0)
        c2 (0.60, 200, 2000, 20, 2.0)
        c3 (0.55, 300,  500,  5, 0.5)   c2 beats it on acc & FLOPs; cheapest in params/time/latency
        c4 (0.70, 400, 4000, 40, 4.0)   best accuracy
        c5 (0.65, 500, 5000, 50, 5.0)   c4 beats it everywhere
    Fronts:
        acc/FLOPs: c1 (cheapest), c2, c4 (c3 < c2, c5 < c4)            -> {c1, c2, c4}
        acc/params, acc/time, acc/latency: c3 dominates c1 there        -> {c2, c3, c4}
        all five objectives: only c5 is dominated (by c4)               -> {c1, c2, c3, c4}
    The early-stopped e1 has the smallest FLOPs and the best accuracy and finite values everywhere: it
    would dominate every completed trial if it entered the fronts. The diverged d1 has NaN accuracy.
    """
    return [
        trial("c1", "completed", acc=0.50, flops=100, params=1000, time_s=10, latency=1.0, val_loss=1.9,
              cell="gru", seq_len=32, sample="c1 sample text"),
        trial("c2", "completed", acc=0.60, flops=200, params=2000, time_s=20, latency=2.0, val_loss=1.7,
              cell="lstm", seq_len=64, sample="c2 sample text"),
        trial("c3", "completed", acc=0.55, flops=300, params=500, time_s=5, latency=0.5, val_loss=1.8,
              cell="rnn", seq_len=32, sample="c3 sample text"),
        trial("c4", "completed", acc=0.70, flops=400, params=4000, time_s=40, latency=4.0, val_loss=1.5,
              cell="lstm", seq_len=32, sample="c4 sample text"),
        trial("c5", "completed", acc=0.65, flops=500, params=5000, time_s=50, latency=5.0, val_loss=1.6,
              cell="gru", seq_len=64, sample="c5 NOT ON ANY FRONT"),
        trial("e1", "early_stopped", acc=0.95, flops=10, params=100, time_s=1, latency=0.1, val_loss=1.0,
              cell="rnn", seq_len=64, iteration=1, sample="e1 EARLY STOPPED"),
        trial("e2", "early_stopped", acc=0.30, flops=150, params=1500, time_s=2, val_loss=2.5,
              cell="gru", seq_len=32, iteration=2),
        trial("d1", "diverged", acc=NAN, flops=50, params=50, time_s=1, val_loss=NAN, cell="rnn", iteration=1),
        trial("r1", "errored", iteration=None, error="RuntimeError: CUDA out of memory"),
        trial("u1", "unfinished", acc=0.4, flops=120, params=1200, time_s=3, val_loss=2.2, iteration=3),
    ]


def example_history(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in records:
        for it in range(1, (r["iteration"] or 0) + 1):
            rows.append({"trial_id": r["trial_id"], "iteration": it, "chars_trained": 1000 * it,
                         "train_loss": 3.0 / it, "val_loss": (r["val_loss"] or NAN) + 1.0 / it,
                         ACCURACY: r[ACCURACY], "train_time_s": it * 0.5, "eval_time_s": it * 0.1})
    return history_frame(rows)


def example_tables(records: list[dict[str, Any]] | None = None, meta: dict[str, Any] | None = None) -> Tables:
    records = example_records() if records is None else records
    return build_tables(dict(META if meta is None else meta), trials_frame(records), example_history(records))


def front_ids(t: Tables, front: str) -> set[str]:
    return set(t.pareto.loc[t.pareto["front"] == front, "trial_id"])


def full_budget_fronts(t: Tables) -> pd.DataFrame:
    return t.pareto[t.pareto["budget_iters"] == t.meta["budget"]["max_iters"]]


# --------------------------------------------------------------------------------------------- Pareto table


def test_fronts_match_the_hand_worked_example() -> None:
    t = example_tables()
    assert front_ids(t, ACC_FLOPS_FRONT) == {"c1", "c2", "c4"}
    for cost in ("params", "train_time_s", "inference_latency_ms"):
        assert front_ids(t, TWO_D_FRONTS[cost]) == {"c2", "c3", "c4"}, cost
    assert front_ids(t, ALL_FRONT) == {"c1", "c2", "c3", "c4"}
    assert set(full_budget_fronts(t)["front"]) == ACCURACY_FRONTS | LOSS_FRONTS
    # The rows carry the trial's own numbers.
    c1 = t.pareto[(t.pareto["front"] == ACC_FLOPS_FRONT) & (t.pareto["trial_id"] == "c1")].iloc[0]
    assert (c1[ACCURACY], c1[FLOPS], c1["params"], c1["val_loss"]) == (0.50, 100.0, 1000.0, 1.9)
    # Best first within a front (accuracy descending).
    assert list(t.pareto.loc[t.pareto["front"] == ACC_FLOPS_FRONT, "trial_id"]) == ["c4", "c2", "c1"]


def test_only_completed_trials_enter_full_budget_fronts() -> None:
    t = example_tables()
    on_fronts = set(full_budget_fronts(t)["trial_id"])
    # e1 (0.95 accuracy at 10 FLOPs/char) would dominate everything; it must not be on any front.
    assert "e1" not in on_fronts
    assert "d1" not in on_fronts  # diverged, NaN accuracy
    assert on_fronts <= set(t.trials.loc[t.trials["status"] == "completed", "trial_id"])


def test_nan_accuracy_never_on_a_front_even_when_marked_completed() -> None:
    # Not what the trainer reports, but the front must not rely on the status alone to drop a NaN row.
    records = [
        trial("ok", "completed", acc=0.5, flops=100, params=10, time_s=1, latency=1),
        trial("nan", "completed", acc=NAN, flops=1, params=1, time_s=0.1, latency=0.1),
        trial("d1", "diverged", acc=NAN, flops=1, params=1, time_s=0.1, latency=0.1),
    ]
    t = example_tables(records)
    assert set(t.pareto["trial_id"]) == {"ok"}
    assert set(t.pareto["front"]) == ACCURACY_FRONTS  # no trial reported a loss: the loss fronts are empty


def unique_members_in_all_front(t: Tables) -> None:
    """Every 2-D front member whose (accuracy, cost) pair no other completed trial shares, and whose every
    objective is finite, is on the all-objectives front.

    Why: let P be on the (acc, c) front and Q dominate P on all objectives. Q is no worse than P in acc and c;
    were it strictly better in either, Q would dominate P on (acc, c). So Q ties P in both. With ties, a
    2-D front member can therefore drop off the full front (see the next test); without, it cannot.
    """
    done = t.trials[t.trials["status"] == "completed"]
    objectives = [ACCURACY, *COSTS]
    finite = done[objectives].astype("float64").notna().all(axis=1)
    all_ids = front_ids(t, ALL_FRONT)
    checked = 0
    for cost, name in TWO_D_FRONTS.items():
        for tid in front_ids(t, name):
            row = done[done["trial_id"] == tid].iloc[0]
            same_pair = (done[ACCURACY] == row[ACCURACY]) & (done[cost].astype("float64") == float(row[cost]))
            if int(same_pair.sum()) == 1 and bool(finite[done["trial_id"] == tid].iloc[0]):
                assert tid in all_ids, (cost, tid)
                checked += 1
    assert checked > 0


def test_all_objectives_front_contains_each_untied_2d_member() -> None:
    t = example_tables()
    unique_members_in_all_front(t)
    # In the example nothing is tied, so the full front is a plain superset of every 2-D front.
    for name in TWO_D_FRONTS.values():
        assert front_ids(t, name) <= front_ids(t, ALL_FRONT)


def test_all_objectives_front_is_not_a_superset_with_ties() -> None:
    # c4 and c6 tie on accuracy and FLOPs (both stay on that 2-D front: equal points do not dominate each
    # other), but c6 has fewer parameters and ties elsewhere, so c6 dominates c4 on all objectives.
    # c7 has the best accuracy but no latency: on the acc/FLOPs front, never on the full one (non-finite).
    records = [
        trial("c1", "completed", acc=0.50, flops=100, params=1000, time_s=10, latency=1.0),
        trial("c4", "completed", acc=0.70, flops=400, params=4000, time_s=40, latency=4.0),
        trial("c6", "completed", acc=0.70, flops=400, params=3000, time_s=40, latency=4.0),
        trial("c7", "completed", acc=0.75, flops=600, params=6000, time_s=60, latency=NAN),
    ]
    t = example_tables(records)
    assert front_ids(t, ACC_FLOPS_FRONT) == {"c1", "c4", "c6", "c7"}
    assert front_ids(t, ALL_FRONT) == {"c1", "c6"}
    unique_members_in_all_front(t)


def test_hypervolume_two_trials_hand_computed() -> None:
    # Completed: A (acc 0.6, 100 FLOPs/char), B (acc 0.8, 200). Reference: accuracy 0 and 1.1 × 200 = 220
    # (the early-stopped trial at 1000 FLOPs/char and the diverged one at 5000 must not move it).
    # Dominated region over log10 FLOPs (accuracy × decades): A's box [log 100, log 220] × [0, 0.6] plus B's
    # [log 200, log 220] × [0.6, 0.8]. (Over linear FLOPs it would be 72 + 4 = 76.)
    records = [
        trial("A", "completed", acc=0.6, flops=100, params=10, time_s=1, latency=1),
        trial("B", "completed", acc=0.8, flops=200, params=20, time_s=2, latency=2),
        trial("E", "early_stopped", acc=0.95, flops=1000, params=5, time_s=0.5, latency=0.5, iteration=1),
        trial("D", "diverged", acc=NAN, flops=5000, params=5, time_s=0.5, iteration=1),
    ]
    t = example_tables(records)
    assert t.hv_reference[ACCURACY] == 0.0
    assert t.hv_reference[FLOPS] == pytest.approx(220.0)
    assert t.hypervolume > 0
    assert t.hypervolume == pytest.approx(0.6 * math.log10(220 / 100) + 0.2 * math.log10(220 / 200))


def test_hypervolume_of_the_example() -> None:
    # Front c1 (0.5, 100), c2 (0.6, 200), c4 (0.7, 400); reference 1.1 × 500 (c5) = 550; decades of FLOPs.
    t = example_tables()
    assert t.hv_reference == {ACCURACY: 0.0, FLOPS: pytest.approx(550.0)}
    assert t.hypervolume == pytest.approx(EXAMPLE_HV)
    # the same front over linear FLOPs: 450 × 0.5 + 350 × 0.1 + 150 × 0.1 = 275, 94% of it right of c4's 400
    done = t.trials[t.trials["status"] == "completed"]
    linear = pareto.hypervolume_2d(done, {ACCURACY: "max", FLOPS: "min"}, t.hv_reference)
    assert linear == pytest.approx(275.0)


def test_log_axes_are_the_minimised_costs_only() -> None:
    objectives = {"val_loss": "min", "flops_per_char": "min", ACCURACY: "max", "params": "min"}
    assert log_axes(objectives) == ["flops_per_char", "params"]
    df = pd.DataFrame({"val_loss": [1.5, 2.0], "flops_per_char": [1e3, 0.0], ACCURACY: [0.5, 0.6],
                       "params": [100.0, 1e4]})
    logged, ref = on_log_axes(df, {"val_loss": 3.0, "flops_per_char": 1e5, ACCURACY: 0.0, "params": 1e5},
                                     objectives)
    assert list(logged["val_loss"]) == [1.5, 2.0] and list(logged[ACCURACY]) == [0.5, 0.6]  # untouched
    assert logged["flops_per_char"].iloc[0] == pytest.approx(3.0) and math.isnan(logged["flops_per_char"].iloc[1])
    assert list(logged["params"]) == pytest.approx([2.0, 4.0])
    assert ref == {"val_loss": 3.0, "flops_per_char": pytest.approx(5.0), ACCURACY: 0.0, "params": pytest.approx(5.0)}
    assert list(df["flops_per_char"]) == [1e3, 0.0]  # the caller's frame is not changed


def test_hypervolume_trace_over_searched_objectives_hand_computed() -> None:
    # Searched: val_loss (min, linear) and flops_per_char (min, decades). Completed in order: a (1.5, 1e3) at
    # t=10 s, b (2.0, 1e2) at t=20 s; the early-stopped e trained too. Reference: 1.1 × the worst of each:
    # val_loss 2.2, FLOPs 1.1e3 -> log10 = 3.0414.
    records = [
        {**trial("a", "completed", val_loss=1.5), "flops_per_char": 1e3, "ended_at": 110.0},
        {**trial("b", "completed", val_loss=2.0), "flops_per_char": 1e2, "ended_at": 120.0},
        {**trial("e", "early_stopped", val_loss=1.0, iteration=1), "flops_per_char": 1.0, "ended_at": 105.0},
    ]
    history = pd.DataFrame({"trial_id": ["e", "a", "a", "b"], "timestamp": [104.0, 105.0, 110.0, 120.0],
                            "chars_trained": [500, 1000, 2000, 3000]})
    trace = hypervolume_trace(pd.DataFrame(records), history, {"val_loss": "min", "flops_per_char": "min"},
                                     started_at=100.0)
    top = math.log10(1.1e3)
    a_box = (2.2 - 1.5) * (top - 3.0)
    b_box = (2.2 - 2.0) * (top - 2.0)
    both = a_box + b_box - (2.2 - 2.0) * (top - 3.0)  # the overlap counted once
    assert list(trace["trial_id"]) == ["a", "b"]
    assert list(trace["wall_s"]) == [10.0, 20.0]
    assert list(trace["chars_trained"]) == [500 + 2000, 500 + 2000 + 3000]  # every trial's, e's too
    assert list(trace["hypervolume"]) == pytest.approx([a_box, both])


def test_no_completed_trial_gives_an_empty_typed_front() -> None:
    records = [r for r in example_records() if r["status"] != "completed"]
    t = example_tables(records)
    assert t.pareto.empty
    assert {c: str(d) for c, d in t.pareto.dtypes.items()} == PARETO_TYPES
    assert t.hypervolume == 0.0
    md = render_markdown(t)
    assert "_No trial completed its full budget, so there is no full-budget front._" in md  # no rung holds 4
    assert "## Text samples" not in md


def test_the_header_names_what_rays_asha_ranked_by() -> None:
    meta = {**META, "scheduler": "asha_first", "scheduler_metric": {"metric": "val_loss", "mode": "min"}}
    md = render_markdown(build_tables(meta, trials_frame([]), history_frame([])))
    assert "| scheduler | asha_first on val_loss (min) (grace " in md
    plain = render_markdown(build_tables({**META, "scheduler": "asha_first"}, trials_frame([]), history_frame([])))
    assert "| scheduler | asha_first (grace " in plain


def test_empty_experiment_builds_renders_and_writes(tmp_path: Path) -> None:
    t = build_tables(dict(META), trials_frame([]), history_frame([]))
    assert t.pareto.empty and t.hypervolume == 0.0
    md = render_markdown(t)
    assert "| 0 | 0 | 0 | 0 | 0 | 0 | 0 |" in md
    assert "unfinished**" not in md
    write_tables(t, tmp_path)
    assert len(pd.read_parquet(tmp_path / TRIALS_TABLE)) == 0


# ------------------------------------------------------------------------------------------------- Markdown


def unescaped_pipes(line: str) -> int:
    """Pipes that separate cells: GitHub's table rule, a pipe preceded by a backslash is content."""
    return sum(1 for i, ch in enumerate(line) if ch == "|" and (i == 0 or line[i - 1] != "\\"))


DELIMITER_ROW = re.compile(r"^\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*$")


def markdown_tables(md: str) -> list[list[str]]:
    """Each GFM table of ``md`` as its lines (header, delimiter, rows), fenced code skipped.

    A table runs from a header line followed by a delimiter row to the next blank line: a cell cut by a raw
    newline makes a following line that still belongs to the table, so it is checked too.
    """
    lines = md.split("\n")
    tables, i, fenced = [], 0, False
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            fenced = not fenced
            i += 1
            continue
        if not fenced and line.startswith("|") and i + 1 < len(lines) and DELIMITER_ROW.match(lines[i + 1]):
            j = i
            while j < len(lines) and lines[j].strip():
                j += 1
            tables.append(lines[i:j])
            i = j
            continue
        i += 1
    return tables


def bad_rows(md: str) -> list[str]:
    bad = []
    for table in markdown_tables(md):
        want = unescaped_pipes(table[0])
        bad += [row for row in table[1:] if unescaped_pipes(row) != want]
    return bad


def test_table_checker_catches_broken_rows() -> None:
    good = "| a | b |\n|---|---|\n| 1 \\| 2 | 3 |\n"
    assert bad_rows(good) == [] and len(markdown_tables(good)) == 1
    assert bad_rows("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n") == ["| 1 | 2 | 3 |"]
    assert bad_rows("| a | b |\n|---|---|\n| x\ny | 3 |\n") == ["| x", "y | 3 |"]
    assert bad_rows("```text\n| a |\n|---|\n| 1 | 2 |\n```\n") == []


def test_markdown_contents() -> None:
    t = example_tables()
    md = render_markdown(t, {"front": PLOT_FRONT})
    lines = md.split("\n")
    # Status counts, in the order of STATUSES.
    header = "| " + " | ".join(STATUSES) + " |"
    assert header in lines
    assert lines[lines.index(header) + 2] == "| 5 | 2 | 0 | 1 | 1 | 1 | 0 |"
    assert "- `r1` errored: RuntimeError: CUDA out of memory" in lines
    assert "**1 trial(s) unfinished**" in md
    # Cell × sequence length: best trial per (cell, seq) among completed and early-stopped.
    grid = lines.index("## Cell × sequence length")
    assert lines[grid + 2] == "| cell | 32 | 64 |"
    grid_rows = [line for line in lines[grid + 4: grid + 8] if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in grid_rows] == ["| gru", "| lstm", "| rnn"]
    rnn = grid_rows[2].split(" | ")
    assert rnn[1].startswith("1.8 · 55.00%") and rnn[2].startswith("1 · 95.00%")  # c3 at 32, e1 at 64
    # The hypervolume and its reference point.
    assert (f"Hypervolume of the accuracy / training-FLOPs-per-character front: **{EXAMPLE_HV:.6g}** "
            "(accuracy × decades of FLOPs; reference point: accuracy 0.0, 550 FLOPs/char = 1.1 × the costliest "
            "completed trial)") in md
    # Fronts and samples: front models only.
    assert f"### {md_escape(ACC_FLOPS_FRONT)}" in lines and f"### {md_escape(ALL_FRONT)}" in lines
    assert "## Text samples from the front models" in lines
    for tid in ("c1", "c2", "c3", "c4"):
        assert f"To be⟶{tid} sample text" in lines
    assert "NOT ON ANY FRONT" not in md and "EARLY STOPPED" not in md
    assert f"![front]({PLOT_FRONT})" in md
    assert "`python -m tuning.search --space t`" in md
    assert bad_rows(md) == []
    assert len(markdown_tables(md)) >= 9  # header, status, best per cell, 5 fronts, grid, early-stopped


def test_markdown_without_unfinished_or_errored_trials() -> None:
    records = [r for r in example_records() if r["status"] not in ("unfinished", "errored")]
    md = render_markdown(example_tables(records))
    assert "unfinished**" not in md and "errored:" not in md
    assert "| 5 | 2 | 0 | 1 | 0 | 0 | 0 |" in md


def test_pipes_and_newlines_are_escaped_in_every_table() -> None:
    records = example_records()
    records[3]["cell"] = "lstm|x\ny"  # c4: on every front, best of its cell, in the grid
    records[8]["error"] = "ValueError: a | b\r\nsecond line \\ end"
    records.append(trial("c8", "completed", acc=0.2, flops=900, params=9000, time_s=90, latency=9.0,
                         val_loss=2.9, cell="gru|\\|z", seq_len=64))
    md = render_markdown(example_tables(records))
    assert bad_rows(md) == [], bad_rows(md)
    assert "| lstm\\|x<br>y |" in md  # best per cell, the fronts, the grid
    table_lines = [line for table in markdown_tables(md) for line in table]
    assert not [line for line in table_lines if "lstm|x" in line]
    assert sum("lstm\\|x<br>y" in line for line in table_lines) >= 1 + 5 + 1  # best per cell, 5 fronts, grid
    assert "- `r1` errored: ValueError: a \\| b<br>second line \\\\ end" in md
    assert "| gru\\|\\\\\\|z |" in md


def test_commands_with_a_pipe_are_escaped_in_the_header_table() -> None:
    # write_meta records commands as shlex-quoted argv, so `--name 'a|b'` reaches the report verbatim.
    meta = {**META, "commands": ["python -m tuning.search --space t --name 'a|b'"]}
    md = render_markdown(example_tables(meta=meta))
    assert bad_rows(md) == [], bad_rows(md)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("a|b", "a\\|b"),
        ("a\nb", "a<br>b"),
        ("a\r\nb", "a<br>b"),
        ("a\rb", "a<br>b"),  # a lone CR is a line ending too (CommonMark §2.1) and would cut a table row
        ("a\\b", "a\\\\b"),
        (None, ""),
        (NAN, ""),
        (pd.NA, ""),
        (0.5, "0.5"),
        ("<b>&amp;", "&lt;b&gt;&amp;amp;"),
        ("a & b", "a & b"),
        ("[x](javascript:y)", "\\[x\\](javascript:y)"),
        ("*a* _b_ val_loss ~~c~~ `d`", "\\*a\\* \\_b\\_ val_loss \\~\\~c\\~\\~ \\`d\\`"),
    ],
)
def test_md_escape(value: Any, want: str) -> None:
    assert md_escape(value) == want


PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "</table>", "[click](javascript:alert(1))",
            "<javascript:alert(1)>", "**bold** _em_ ~~gone~~", "a`<img src=x onerror=alert(2)>`b", "``` x ```"]


def outside_code_spans(md: str) -> str:
    """The text outside inline code spans, by CommonMark's rule (§6.1): a run of n backticks opens a span that
    the next run of exactly n backticks closes; an unclosed run is literal text."""
    out, i = [], 0
    while i < len(md):
        if md[i] == "`" and (i == 0 or md[i - 1] != "\\"):
            run = re.match("`+", md[i:]).group()  # type: ignore[union-attr]
            close = re.search(rf"(?<!`){run}(?!`)", md[i + len(run):])
            if close:
                i += len(run) + close.end()
                continue
            out.append(run)
            i += len(run)
            continue
        out.append(md[i])
        i += 1
    return "".join(out)


def assert_renders_as_text(md: str) -> None:
    """No HTML element but <br>, and no link, strikethrough or code syntax left unescaped, outside code spans."""
    text = outside_code_spans(re.sub(r"(?m)^```text$.*?^```$", "", md, flags=re.S))
    assert "<" not in text.replace("<br>", ""), [line for line in text.splitlines() if "<" in line.replace("<br>", "")]
    for lowered in ("<script", "<img", "</table>"):
        assert lowered not in text.lower()
    assert not re.search(r"(?<!\\)\]\(javascript:", text)
    unescaped = re.findall(r"(?<!\\)[\[\]`~]", text)  # (the report's own **bold** is left to the caller)
    assert not unescaped, unescaped


def test_user_strings_render_as_text_in_the_report() -> None:
    records = example_records()
    records[8]["error"] = " ".join(PAYLOADS)
    meta = {**META, "space": "t`<script>x</script>", "description": " ".join(PAYLOADS),
            "corpus": "</table><script>", "commands": [f"python -m tuning.search --name {p!r}" for p in PAYLOADS]}
    md = render_markdown(example_tables(records, meta))
    assert_renders_as_text(md)
    assert bad_rows(md) == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "\\[click\\](javascript:alert(1))" in md
    assert "\\*\\*bold\\*\\* \\_em\\_ \\~\\~gone\\~\\~" in md
    assert all(code_span(c) in md for c in meta["commands"])  # a backtick stays inside its command's span


@pytest.mark.parametrize(("text", "span"), [
    ("plain", "`plain`"), ("a`b", "``a`b``"), ("``x", "``` ``x ```"), ("x`", "`` x` ``"), ("a|b", "`a\\|b`"),
    ("a\nb", "`a b`"),
])
def test_code_span_cannot_be_closed_from_inside(text: str, span: str) -> None:
    assert code_span(text) == span


def test_grid_bins_many_sequence_lengths() -> None:
    records = [trial(f"t{s}", "completed", acc=0.5, flops=s, params=s, time_s=1, latency=1, val_loss=2 - s / 1000,
                     seq_len=s) for s in (8, 12, 16, 20, 24, 28, 32, 36, 40)]
    md = render_markdown(example_tables(records))
    assert "| cell | 0–9 | 10–19 | 20–29 | 30–39 | 40–49 |" in md
    assert bad_rows(md) == []


# -------------------------------------------------------------------------------------------------- Parquet


def arrow_type_ok(arrow_type: pa.DataType, dtype: str) -> bool:
    if dtype == "Int64":
        return arrow_type == pa.int64()
    if dtype == "float64":
        return arrow_type == pa.float64()
    if dtype == "boolean":
        return arrow_type == pa.bool_()
    assert dtype == "string"
    return arrow_type in (pa.string(), pa.large_string())


def test_write_tables_types_and_round_trip(tmp_path: Path) -> None:
    t = example_tables()
    write_tables(t, tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([TRIALS_TABLE, HISTORY_TABLE, PARETO_TABLE])
    for name, frame, types in ((TRIALS_TABLE, t.trials, TRIAL_TYPES), (HISTORY_TABLE, t.history, HISTORY_TYPES),
                               (PARETO_TABLE, t.pareto, PARETO_TYPES)):
        back = pd.read_parquet(tmp_path / name)
        assert list(back.columns) == list(types), name
        assert {c: str(d) for c, d in back.dtypes.items()} == types, name
        pd.testing.assert_frame_equal(back, frame.reset_index(drop=True))
        schema = pq.read_table(tmp_path / name).schema
        assert schema.names == list(types)
        wrong = {c: str(schema.field(c).type) for c, d in types.items() if not arrow_type_ok(schema.field(c).type, d)}
        assert wrong == {}, name
    assert len(pd.read_parquet(tmp_path / TRIALS_TABLE)) == 10


def test_write_tables_twice_gives_equal_tables(tmp_path: Path) -> None:
    t = example_tables()
    write_tables(t, tmp_path)
    first = {n: pd.read_parquet(tmp_path / n) for n in (TRIALS_TABLE, HISTORY_TABLE, PARETO_TABLE)}
    first_arrow = {n: pq.read_table(tmp_path / n) for n in first}
    write_tables(example_tables(), tmp_path)
    for name, frame in first.items():
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / name), frame)
        assert pq.read_table(tmp_path / name).equals(first_arrow[name])
    assert sorted(os.listdir(tmp_path)) == sorted(first)  # no temporary files left behind


# -------------------------------------------------------------------------------------------- Atomic writes


def test_atomic_write_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    atomic_write_text(target, "old content")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("new but cut sho", encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text(encoding="utf-8") == "old content"
    assert os.listdir(tmp_path) == ["file.txt"]


def test_atomic_write_success_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert os.listdir(target.parent) == ["file.txt"]


def test_write_tables_failure_keeps_previous_parquet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = example_tables()
    write_tables(t, tmp_path)
    before = {n: (tmp_path / n).read_bytes() for n in (TRIALS_TABLE, HISTORY_TABLE, PARETO_TABLE)}

    def broken(self: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("no space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    smaller = example_tables(example_records()[:2])
    with pytest.raises(OSError, match="no space left"):
        write_tables(smaller, tmp_path)
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert sorted(os.listdir(tmp_path)) == sorted(before)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / TRIALS_TABLE), t.trials)


# ----------------------------------------------------------------------------------- classify / rungs


RUNGS = {1, 3, 9}


@pytest.mark.parametrize(
    ("last", "ray_status", "error", "want"),
    [
        ({"iteration": 3, "trial_status": "running"}, "TERMINATED", None, "early_stopped"),
        ({"iteration": 9, "trial_status": "running"}, "TERMINATED", None, "early_stopped"),
        ({"iteration": 4, "trial_status": "running"}, "TERMINATED", None, "unfinished"),
        ({"iteration": 3, "trial_status": "running"}, "RUNNING", None, "unfinished"),
        # promotion-type ASHA: waiting at a rung when the search was cut short; nothing decided it should stop
        ({"iteration": 3, "trial_status": "running"}, "PAUSED", None, "paused"),
        ({"iteration": 4, "trial_status": "running"}, "PAUSED", None, "unfinished"),
        ({"iteration": 3, "trial_status": "running"}, None, None, "unfinished"),
        ({"iteration": 16, "trial_status": "completed"}, "TERMINATED", None, "completed"),
        ({"iteration": 16, "trial_status": "completed"}, None, None, "completed"),
        ({"iteration": 3, "trial_status": "diverged"}, "TERMINATED", None, "diverged"),
        ({"iteration": 2, "trial_status": "diverged"}, "TERMINATED", None, "diverged"),
        ({"iteration": 3, "trial_status": "running"}, "ERROR", None, "errored"),
        # a failure that max_failures recovered from leaves error.txt behind; the trial still completed
        ({"iteration": 16, "trial_status": "completed"}, "TERMINATED", "OSError: gone", "completed"),
        ({"iteration": 3, "trial_status": "running"}, "RUNNING", "OSError: gone", "unfinished"),
        # without Ray's state file, an error file is all there is to go on
        ({"iteration": 3, "trial_status": "running"}, None, "OSError: gone", "errored"),
        (None, "ERROR", None, "errored"),
        # never reported a result
        (None, "TERMINATED", None, "not_started"),
        (None, "PENDING", None, "not_started"),
        (None, None, None, "not_started"),
    ],
)
def test_classify(last: dict[str, Any] | None, ray_status: str | None, error: str | None, want: str) -> None:
    assert classify(last, ray_status, error, 16, RUNGS) == want


def test_classify_without_rungs_never_early_stops() -> None:
    assert classify({"iteration": 3, "trial_status": "running"}, "TERMINATED", None, 16, set()) == "unfinished"


def test_held_at_rungs_is_the_highest_rung_a_trial_was_not_promoted_from() -> None:
    state = {"rungs": {"1": {"a": [2.0], "b": [2.1], "c": [2.5], "d": [2.6]}, "2": {"a": [1.8], "b": [1.9]}},
             "promoted": {"1": ["a", "b"], "2": ["a"]}, "waiting": {}}
    assert held_at_rungs(state) == {"b": 2, "c": 1, "d": 1}  # a went on from rung 2 to the full budget
    assert held_at_rungs({}) == {}


@pytest.mark.parametrize(
    ("iteration", "ray_status", "waiting", "want"),
    [
        # the search ended by itself: the scheduler stopped every waiting trial and struck it off its list
        (3, "TERMINATED", False, "early_stopped"),
        (4, "TERMINATED", False, "early_stopped"),  # restarted from its rung's checkpoint after a restore
        (4, "PAUSED", False, "early_stopped"),  # the scheduler's record is newer than Ray's state file
        # the time budget or a Ctrl-C ended the search while it waited for a promotion
        (3, "PAUSED", True, "paused"),
        (3, "TERMINATED", True, "paused"),
        (4, "PAUSED", True, "paused"),
        (4, "RUNNING", False, "unfinished"),  # the driver was killed: nothing was decided about the iteration it ran
    ],
)
def test_classify_a_trial_promotion_asha_held(iteration: int, ray_status: str, waiting: bool, want: str) -> None:
    last = {"iteration": iteration, "trial_status": "running"}
    assert classify(last, ray_status, None, 16, RUNGS, held=True, waiting=waiting) == want


def test_waiting_at_rungs_reads_the_schedulers_list() -> None:
    assert waiting_at_rungs({"waiting": {"a": 3, "b": 1}}) == {"a", "b"}
    assert waiting_at_rungs({}) == set()


# ---------------------------------------------------------------------------------------------------- Plots


def test_plots_write_png(tmp_path: Path) -> None:
    t = example_tables()
    plot_front(t.trials, tmp_path / PLOT_FRONT)
    plot_curves(t.trials, t.history, tmp_path / PLOT_CURVES)
    for name in (PLOT_FRONT, PLOT_CURVES):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
    assert sorted(os.listdir(tmp_path)) == sorted([PLOT_FRONT, PLOT_CURVES])


# ------------------------------------------------------------------------------------- write_report / main


def make_experiment(root: Path, scheduler: str = "asha") -> Path:
    """A hand-made Ray experiment directory: state file, trial folders, result.json lines, an error.txt."""
    exp = root / "exp"
    exp.mkdir()
    (exp / "tuning_experiment.json").write_text(json.dumps({**META, "scheduler": scheduler}), encoding="utf-8")
    base = {"chars_trained": 0, "train_loss": 2.0, "val_loss": 2.0, ACCURACY: 0.4, "train_time_s": 1.0,
            "params": 100, FLOPS: 1000.0}
    trials = {
        # id: (ray status, results by iteration, final extras, error)
        "aaa": ("TERMINATED", 4, {"trial_status": "completed", "inference_latency_ms": 1.0, "sample": "hello",
                                  "sample_prompt": "To be"}, None),
        "bbb": ("TERMINATED", 2, {}, None),  # stopped by ASHA at milestone 2
        "ccc": ("ERROR", 1, {}, "Traceback\n  ...\nRuntimeError: boom\n"),
        "ddd": ("RUNNING", 3, {}, None),
    }
    state = []
    for tid, (status, iters, extra, error) in trials.items():
        d = exp / f"{tid}_00000"
        d.mkdir()
        (d / "params.json").write_text(json.dumps({"cell": "gru", "seq_len": 16, "hidden_size": 32}))
        lines = []
        for it in range(1, iters + 1):
            row = {**base, "iteration": it, "chars_trained": 1000 * it, "val_loss": 2.0 - 0.1 * it,
                   ACCURACY: 0.4 + 0.05 * it, "trial_status": "running"}
            if it == iters:
                row.update(extra)
            lines.append(json.dumps(row))
        (d / "result.json").write_text("\n".join(lines) + "\n")
        if error:
            (d / "error.txt").write_text(error)
        state.append([json.dumps({"trial_id": tid, "status": status, "relative_logdir": d.name}), json.dumps({})])
    (exp / "experiment_state-2024.json").write_text(json.dumps({"trial_data": state}))
    return exp


def test_the_newest_state_file_is_the_newest_name_not_the_newest_mtime(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)  # rungs at iterations 1 and 2
    rows = (exp / "ddd_00000" / "result.json").read_text().splitlines()
    (exp / "ddd_00000" / "result.json").write_text("\n".join(rows[:2]) + "\n")  # ddd reported up to rung 2
    old = exp / "experiment_state-2024.json"  # says ddd is RUNNING
    state = json.loads(old.read_text())
    for entry in state["trial_data"]:  # a later session paused ddd at the rung (promotion-type ASHA)
        if json.loads(entry[0])["trial_id"] == "ddd":
            entry[0] = json.dumps({**json.loads(entry[0]), "status": "PAUSED"})
    (exp / "experiment_state-2025.json").write_text(json.dumps(state))
    future = time.time() + 60
    os.utime(old, (future, future))  # a restored run uploads the earlier session's file again with every save
    _, trials, _ = load_experiment(exp)
    assert trials.set_index("trial_id").loc["ddd", "status"] == "paused"  # 2025's PAUSED, not 2024's RUNNING


@pytest.mark.parametrize(("promoted_from_2", "waiting", "want"),
                         [([], {}, "early_stopped"), ([], {"ddd": 2}, "paused"), (["ddd"], {}, "unfinished")])
def test_promotion_asha_records_say_which_trials_it_held(tmp_path: Path, promoted_from_2: list[str],
                                                          waiting: dict[str, int], want: str) -> None:
    exp = make_experiment(tmp_path, "asha_promotion")  # rungs at iterations 1 and 2; ddd reported 3 iterations
    state_file = exp / "experiment_state-2024.json"
    state = json.loads(state_file.read_text())
    for entry in state["trial_data"]:  # the search ended: Ray stopped every trial still paused
        entry[0] = entry[0].replace('"RUNNING"', '"TERMINATED"')
    state_file.write_text(json.dumps(state))
    _, trials, _ = load_experiment(exp)
    assert trials.set_index("trial_id").loc["ddd", "status"] == "unfinished"  # iteration 3 is not a rung
    (exp / SCHEDULER_DIR).mkdir()
    record = {"rungs": {"1": {"aaa": [1.9], "bbb": [1.9], "ddd": [1.9]}, "2": {"aaa": [1.8], "ddd": [1.8]}},
              "promoted": {"1": ["aaa", "ddd"], "2": ["aaa", *promoted_from_2]}, "waiting": waiting}
    (exp / SCHEDULER_DIR / PROMOTION_STATE).write_text(json.dumps(record))
    _, trials, _ = load_experiment(exp)
    # held at rung 2 (one iteration past it after a restore): stopped by the scheduler, or paused if the search was
    # cut short while it still waited; promoted: cut off on its way
    assert trials.set_index("trial_id").loc["ddd", "status"] == want


@pytest.mark.parametrize(("scheduler", "stopped"), [("asha", "early_stopped"), ("asha_first", "early_stopped"),
                                                     ("none", "unfinished")])
def test_a_trial_ended_at_a_rung_is_early_stopped_under_either_asha(tmp_path: Path, scheduler: str,
                                                                    stopped: str) -> None:
    _, trials, _ = load_experiment(make_experiment(tmp_path, scheduler))
    assert trials.set_index("trial_id")["status"]["bbb"] == stopped


def test_main_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make_experiment(tmp_path)
    out = tmp_path / "report"
    assert report_cli.main([str(exp), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == sorted([TRIALS_TABLE, HISTORY_TABLE, PARETO_TABLE, REPORT_MD, PLOT_FRONT,
                                              PLOT_CURVES])
    trials = pd.read_parquet(out / TRIALS_TABLE).set_index("trial_id")
    assert trials["status"].to_dict() == {"aaa": "completed", "bbb": "early_stopped", "ccc": "errored",
                                          "ddd": "unfinished"}
    assert trials.loc["ccc", "error"] == "RuntimeError: boom"
    fronts = pd.read_parquet(out / PARETO_TABLE)
    assert set(fronts.loc[fronts["budget_iters"] == 4, "trial_id"]) == {"aaa"}
    # rung 1: all four trials measured there, equal in loss and FLOPs, so all on its front
    assert set(fronts.loc[fronts["budget_iters"] == 1, "trial_id"]) == {"aaa", "bbb", "ccc", "ddd"}
    assert len(pd.read_parquet(out / HISTORY_TABLE)) == 4 + 2 + 1 + 3
    md = (out / REPORT_MD).read_text(encoding="utf-8")
    assert "| 1 | 1 | 0 | 0 | 1 | 1 | 0 |" in md and "RuntimeError: boom" in md and bad_rows(md) == []
    assert f"![accuracy against training FLOPs per character]({PLOT_FRONT})" in md
    for png in (PLOT_FRONT, PLOT_CURVES):
        assert (out / png).read_bytes().startswith(PNG_MAGIC)
    printed = capsys.readouterr().out
    assert "1 trial(s) unfinished" in printed and str(out / REPORT_MD) in printed


def test_main_on_a_directory_that_is_not_an_experiment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_cli.main([str(tmp_path)]) == 2
    assert "not an experiment directory" in capsys.readouterr().err


def test_a_trial_that_never_reported_is_not_started_and_costs_nothing(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)
    d = exp / "eee_00000"  # Ray made its folder, then the search ended before its first result
    d.mkdir()
    (d / "params.json").write_text(json.dumps({"cell": "rnn", "seq_len": 16, "hidden_size": 32}))
    meta, trials, history = load_experiment(exp)
    row = trials.set_index("trial_id").loc["eee"]
    assert row["status"] == "not_started" and row["feasible"] is pd.NA
    assert "eee" not in set(history["trial_id"])
    t = build_tables(meta, trials, history)
    assert "eee" not in set(t.pareto["trial_id"])
    md = render_markdown(t)
    assert "`eee`" not in md and "| eee |" not in md


def test_the_whole_split_evaluation_is_read_into_the_trials_table(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)
    _, trials, _ = load_experiment(exp)
    assert trials["full_val_loss"].isna().all() and str(trials["full_val_iteration"].dtype) == "Int64"
    (exp / EVALUATION_DIR).mkdir()
    record = {"trials": {"aaa": {"val_loss": 1.55, "val_acc_last": 0.61, "iteration": 4, "windows": 300,
                                 "validation_chars": 9600}}}
    (exp / EVALUATION_DIR / FULL_VALIDATION).write_text(json.dumps(record))
    _, trials, _ = load_experiment(exp)
    aaa = trials.set_index("trial_id").loc["aaa"]
    assert (aaa["full_val_loss"], aaa["full_val_acc_last"], aaa["full_val_iteration"]) == (1.55, 0.61, 4)
    assert trials.set_index("trial_id")["full_val_loss"].drop("aaa").isna().all()


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"trials": [1]}', '{"trials": {"aaa": 3}}'])
def test_a_missing_or_damaged_whole_split_evaluation_is_ignored(tmp_path: Path, text: str) -> None:
    exp = make_experiment(tmp_path)
    (exp / EVALUATION_DIR).mkdir()
    (exp / EVALUATION_DIR / FULL_VALIDATION).write_text(text)
    assert read_full_validation(exp) == {}
    _, trials, _ = load_experiment(exp)
    assert trials["full_val_loss"].isna().all()


# -------------------------------------------------------------------------------- fronts at equal budget

RUNG_META: dict[str, Any] = {
    **META, "scheduler": "asha_promotion",
    "budget": {"chars_per_iter": 1000, "max_iters": 9, "grace_iters": 1, "reduction_factor": 3},
}


def rung_example() -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """A search cut short before any trial completed; rungs at iterations 1 and 3 of 9.

    (FLOPs/char, val_loss by iteration):
        a paused at 3      100  {1: 2.0, 3: 1.6}
        b paused at 3      200  {1: 1.9, 3: 1.5}
        c unfinished at 5  300  {1: 1.8, 3: 1.55, 5: 1.2}   at rung 3 b beats it; its last loss would beat everyone
        d paused at 3       50  {1: 2.2, 3: 1.9}
        e early_stopped     10  {1: 2.5}
    Rung 3 (a, b, c, d; val_loss & FLOPs): front d, a, b; best first by val_loss: b, a, d. Rung 1: all five.
    """
    losses = {"a": {1: 2.0, 3: 1.6}, "b": {1: 1.9, 3: 1.5}, "c": {1: 1.8, 2: 1.7, 3: 1.55, 4: 1.3, 5: 1.2},
              "d": {1: 2.2, 3: 1.9}, "e": {1: 2.5}}
    flops = {"a": 100, "b": 200, "c": 300, "d": 50, "e": 10}
    status = {"a": "paused", "b": "paused", "c": "unfinished", "d": "paused", "e": "early_stopped"}
    records, rows = [], []
    for tid, by_iter in losses.items():
        last = max(by_iter)
        records.append({**trial(tid, status[tid], acc=0.3 + 0.01 * last, flops=flops[tid], params=flops[tid],
                                val_loss=by_iter[last], iteration=last), "val_windows": 9})
        rows += [{"trial_id": tid, "iteration": it, "chars_trained": 1000 * it, "val_loss": loss,
                  ACCURACY: 0.3 + 0.01 * it, "train_time_s": float(it)} for it, loss in by_iter.items()]
    return records, history_frame(rows)


def rung_tables_example() -> Tables:
    records, history = rung_example()
    return build_tables(dict(RUNG_META), trials_frame(records), history)


def test_rung_fronts_compare_the_trials_measured_at_that_budget() -> None:
    t = rung_tables_example()
    three = t.pareto[t.pareto["budget_iters"] == 3]
    assert list(three["trial_id"]) == ["b", "a", "d"]  # best first; c is dominated by b at rung 3
    assert list(three["val_loss"]) == [1.5, 1.6, 1.9]  # each trial's figure at the rung, not its last
    assert set(three["front"]) == {"val_loss (min) & train_flops_per_char (min) after 3 iterations"}
    assert set(t.pareto.loc[t.pareto["budget_iters"] == 1, "trial_id"]) == {"a", "b", "c", "d", "e"}
    assert set(t.pareto["budget_iters"]) == {1, 3}  # nothing completed: no full-budget front
    md = render_markdown(t)
    assert "## Fronts at equal budget" in md
    assert md.index("### After 3 iterations = 3 k characters (4 trials measured there)") < md.index(
        "### After 1 iteration = 1 k characters (5 trials measured there)")
    assert "so there is no full-budget front; the fronts at equal budget below" in md
    assert bad_rows(md) == []


def test_a_rung_needs_four_trials_for_a_front() -> None:
    records, history = rung_example()
    history = history[~((history["trial_id"] == "d") & (history["iteration"] == 3))]  # rung 3 now holds three
    t = build_tables(dict(RUNG_META), trials_frame(records), history)
    assert set(t.pareto["budget_iters"]) == {1}


def test_without_completed_trials_the_plot_shows_the_highest_rung(tmp_path: Path) -> None:
    t = rung_tables_example()
    labels = plot_front(t.trials, tmp_path / PLOT_FRONT, t.at_rung)
    assert "front after 3 iterations" in labels and "lstm (after 3 iterations)" in labels
    assert (tmp_path / PLOT_FRONT).read_bytes().startswith(PNG_MAGIC)
    assert plot_front(trials_frame([]), tmp_path / "empty.png") == []  # no legend rather than an empty one


def test_fronts_rank_by_the_searched_objective_and_accuracy_comes_second() -> None:
    # x has the lower loss, y the higher accuracy, at equal cost: the loss fronts hold x, the accuracy fronts y.
    records = [trial("x", "completed", acc=0.6, flops=100, params=10, time_s=1, latency=1, val_loss=1.4),
               trial("y", "completed", acc=0.7, flops=100, params=10, time_s=1, latency=1, val_loss=1.6)]
    t = example_tables(records)
    assert front_ids(t, front_name({"val_loss": "min", FLOPS: "min"})) == {"x"}
    assert front_ids(t, ACC_FLOPS_FRONT) == {"y"}
    md = render_markdown(t)
    assert md.index("### val_loss (min) & train_flops_per_char (min)") < md.index("## Accuracy fronts") < md.index(
        f"### {ACC_FLOPS_FRONT}")


def test_wilson_interval() -> None:
    z = 1.959964
    assert wilson_interval(0.0, 10) == (0.0, pytest.approx(z * z / (10 + z * z)))  # closed form at 0 successes
    lo, hi = wilson_interval(0.5, 9)
    assert lo == pytest.approx(1 - hi) and 0.2 < lo < 0.25  # symmetric about 1/2, and wide at 9 windows
    assert all(math.isnan(v) for v in wilson_interval(0.5, 0))


def test_accuracy_on_few_windows_shows_its_interval() -> None:
    md = render_markdown(rung_tables_example())
    assert "| acc 95% CI |" in md and "rests on 9 validation windows" in md
    assert "Wilson" in md
    lo, hi = wilson_interval(0.33, 9)
    assert f"{100 * lo:.0f}–{100 * hi:.0f}%" in md  # b, a and d at rung 3: accuracy 0.33


@pytest.mark.parametrize(("limits", "want"), [
    ([50_000], "the first 50,000 characters of the validation split (the corpus's last 10%)"),
    ([0], "the whole of the validation split (the corpus's last 10%)"),
    ([0, 50_000], "a prefix of the validation split (the corpus's last 10%), of all, 50,000 characters"),
])
def test_the_report_names_the_validation_text(limits: list[int], want: str) -> None:
    records = [{**trial(f"t{i}", "completed", acc=0.5, flops=1, val_loss=1.0), "val_max_chars": v}
               for i, v in enumerate(limits)]
    assert validation_text(trials_frame(records)).startswith(want)
    assert f"| validated on | {want}" in render_markdown(example_tables(records))


def test_early_stopping_saving_counts_only_the_schedulers_stops() -> None:
    # max_iters 4: c1-c5 completed, e1 stopped at 1 and e2 at 2 save 3 + 2 of 7 × 4 iterations; the unfinished u1
    # and any paused trial are cut off by the end of the search and do not count.
    records = [*example_records(), trial("p1", "paused", val_loss=2.0, iteration=2)]
    assert early_stopping_saving(trials_frame(records), 4) == (5, 28)
    md = render_markdown(example_tables(records))
    assert ("early stopping saved 18% of the full budget of the 7 trials that completed or were stopped "
            "(5 of 28 iterations); 1 paused and 1 unfinished trial(s) were cut off") in md
    # iterations past the budget (a restore's repeated row) never make the saving negative
    assert early_stopping_saving(trials_frame([trial("e", "early_stopped", iteration=6)]), 4) == (0, 4)


def test_mixed_budgets_are_marked_in_best_per_cell_and_the_grid() -> None:
    t = example_tables()
    md = render_markdown(t)
    best = md[md.index("## Best trial per cell type"):md.index("## Pareto fronts")]
    assert "| budget | status |" in best
    assert "| 1/4 it | early_stopped |" in best  # e1, rnn's lowest loss, stopped at iteration 1
    grid = md[md.index("## Cell × sequence length"):]
    assert "1/4 it early_stopped" in grid and "4/4 it completed" in grid
    assert budget_label(pd.NA, 4) == "–"
    printed = summary(t, Path("r"))
    assert "[1/4 it early_stopped] e1" in printed and "0 paused" in printed and "0 not_started" in printed


def test_whole_split_figures_sit_beside_the_prefix_ones() -> None:
    records, history = rung_example()
    whole = {"b": (1.45, 3), "c": (1.25, 5)}  # b measured at its rung; c after training on past it
    for r in records:
        if r["trial_id"] in whole:
            r.update(full_val_loss=whole[r["trial_id"]][0], full_val_acc_last=0.4,
                     full_val_iteration=whole[r["trial_id"]][1])
    t = build_tables(dict(RUNG_META), trials_frame(records), history)
    md = render_markdown(t)
    assert "| val loss (whole split) |" in md and "`val loss (whole split)` is the same checkpoint" in md
    rung3 = md[md.index("### After 3 iterations"):md.index("### After 1 iteration =")]
    assert "| 1.5 | 1.45 |" in rung3  # b: measured at rung 3
    rung1 = md[md.index("### After 1 iteration ="):]
    rung1 = rung1[:rung1.index("\n\n", rung1.index("|---"))]
    assert "1.45" not in rung1 and "1.25" not in rung1  # at rung 1 both trials had trained less than measured
    best = md[md.index("## Best trial per cell type"):md.index("## Pareto fronts")]
    assert "| 1.2 | 1.25 |" in best  # c, lstm's best, measured at its last iteration


def test_trials_to_evaluate_are_the_front_trials_and_the_best_per_cell() -> None:
    records, history = rung_example()
    for r in records:
        r["cell"] = "gru" if r["trial_id"] == "e" else "lstm"
    assert trials_to_evaluate(trials_frame(records), history, dict(RUNG_META)) == ["a", "b", "c", "d", "e"]
    history = history[history["iteration"] != 1]  # no rung-1 front: e is still gru's best, c lstm's
    assert trials_to_evaluate(trials_frame(records), history, dict(RUNG_META)) == ["a", "b", "c", "d", "e"]
    t = example_tables()
    want = set(t.pareto["trial_id"]) | {"c4", "c5", "e1"}  # best per cell by val_loss: lstm c4, gru c5, rnn e1
    assert trials_to_evaluate(t.trials, t.history, t.meta) == sorted(want)
