"""The report: trade-off tables in Parquet and Markdown, plots and text samples.

``python -m tuning.report EXPERIMENT_DIR [--out DIR]`` regenerates it from any experiment directory of ours,
finished or interrupted. The tables are built by plain functions of DataFrames (:func:`build_tables`) and the
Markdown by a function of those tables (:func:`render_markdown`), so both are tested without Ray.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuning.errors import ArgumentParser, UserError
from tuning.files import (
    HISTORY_TABLE,
    PARETO_TABLE,
    PLOT_CURVES,
    PLOT_FRONT,
    REPORT_MD,
    TRIALS_TABLE,
    atomic_write,
    atomic_write_text,
)
from tuning.report.fronts import (
    ACCURACY,
    COSTS,
    FLOPS,
    MIN_RUNG_TRIALS,
    PARETO_TYPES,
    best_per_cell,
    build_fronts,
    front_name,
    full_budget,
    rung_front_name,
    rung_objectives,
    rung_tables,
    searched_objectives,
)
from tuning.report.results import STATUSES, load_experiment
from tuning.spec import pareto
from tuning.spec.space import ASHA_SCHEDULERS

__all__ = ["ACCURACY", "COSTS", "PARETO_TYPES", "Tables", "build_tables", "front_name", "full_budget",
           "render_markdown", "searched_objectives", "trials_to_evaluate", "write_report"]
FRONT_HPARAMS = ("cell", "seq_len", "embed_dim", "hidden_size", "num_layers", "dropout", "head_depth", "head_width",
                 "head_dropout", "lr", "batch_size")
# Minimised costs that span orders of magnitude across a search (50 k to 16 M training FLOPs per character in the
# 12-minute multi-objective benchmark): hypervolumes measure them on a log10 axis (see on_log_axes).
LOG_METRICS = frozenset({*COSTS, "flops", "macs", "calflops_flops", "calflops_macs", "flops_per_char",
                         "macs_per_char"})


@dataclass
class Tables:
    meta: dict[str, Any]
    trials: pd.DataFrame
    history: pd.DataFrame
    pareto: pd.DataFrame  # one row per (front, trial on it)
    hypervolume: float
    hv_reference: dict[str, float]
    hv_trace: pd.DataFrame | None = None  # multi-objective searches: hypervolume as trials complete
    at_rung: dict[int, pd.DataFrame] = field(default_factory=dict)  # rung -> the trials measured there


def hv_reference(done: pd.DataFrame, objectives: dict[str, str]) -> dict[str, float]:
    """A reference point 10% beyond the worst completed trial in each objective (0 for a maximised share)."""
    ref = {}
    for metric, mode in objectives.items():
        values = done[metric].astype("float64")
        if mode == "max":
            ref[metric] = 0.0 if values.min() >= 0 else float(values.min() * 1.1)
        else:
            ref[metric] = float(values.max() * 1.1)
    return ref


def log_axes(objectives: Mapping[str, str]) -> list[str]:
    """The objectives a hypervolume measures in decades: minimised costs named in :data:`LOG_METRICS`."""
    return [m for m, mode in objectives.items() if mode == "min" and m in LOG_METRICS]


def on_log_axes(df: pd.DataFrame, reference: Mapping[str, float],
                objectives: Mapping[str, str]) -> tuple[pd.DataFrame, dict[str, float]]:
    """The rows and the reference point with every :func:`log_axes` objective as its log10.

    A model's cost is judged by ratios (half the FLOPs is as good a saving at 100 k as at 10 M), and the costs of
    the models in one search span decades. On a linear axis the strip between the most accurate model and the
    reference holds nearly all the area (94% of a 12-minute search's accuracy/FLOPs hypervolume), so the
    hypervolume ranks searches by their best accuracy alone; on a log axis every halving of the cost adds the same
    area wherever it happens. Fronts do not change (log10 is monotone); only areas do. A cost ≤ 0 becomes NaN, and
    :mod:`tuning.spec.pareto` leaves such rows out of the hypervolume.
    """
    logged = log_axes(objectives)
    if not logged:
        return df, dict(reference)
    costs = {m: df[m].astype("float64") for m in logged}
    out = df.assign(**{m: np.log10(c.where(c > 0)) for m, c in costs.items()})
    return out, {**reference, **{m: math.log10(reference[m]) for m in logged}}


def hypervolume_trace(trials: pd.DataFrame, history: pd.DataFrame, objectives: dict[str, str],
                      started_at: float) -> pd.DataFrame:
    """Hypervolume of the searched objectives' front as trials complete, against wall time and compute.

    Compute at a moment is every character trained by any trial up to then (early-stopped trials included:
    they were paid for). The reference point is fixed from all completed trials, so the curve is monotone. Cost
    objectives count in decades (:func:`on_log_axes`).
    """
    done = full_budget(trials).dropna(subset=[*objectives, "ended_at"]).sort_values("ended_at")
    columns = ["trial_id", "wall_s", "chars_trained", "hypervolume"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    logged, ref = on_log_axes(done, hv_reference(done, objectives), objectives)
    stamps = history["timestamp"].astype("float64")
    rows = []
    for k in range(1, len(done) + 1):
        seen = done.iloc[:k]
        end = float(seen["ended_at"].iloc[-1])
        points = pareto.to_minimisation(logged.iloc[:k], objectives)
        ref_min = [(-ref[m] if mode == "max" else ref[m]) for m, mode in objectives.items()]
        rows.append({"trial_id": seen["trial_id"].iloc[-1], "wall_s": end - started_at,
                     "chars_trained": int(history.loc[stamps <= end, "chars_trained"].groupby(
                         history.loc[stamps <= end, "trial_id"]).max().sum()),
                     "hypervolume": pareto.hypervolume(points, ref_min)})
    return pd.DataFrame(rows, columns=columns)


def accuracy_hypervolume(trials: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """Hypervolume of the full-budget accuracy / training-FLOPs front (over log10 FLOPs: :func:`on_log_axes`) and
    its reference point (in FLOPs): accuracy 0 and 10% above the most expensive completed trial."""
    done = full_budget(trials)
    flops = done[FLOPS].astype("float64")
    reference = {ACCURACY: 0.0, FLOPS: float(flops.max() * 1.1) if flops.notna().any() else 1.0}
    objectives = {ACCURACY: "max", FLOPS: "min"}
    logged, logged_ref = on_log_axes(done, reference, objectives)
    hv = pareto.hypervolume_2d(logged, objectives, logged_ref) if len(done) else 0.0
    return float(hv), reference


def build_tables(meta: dict[str, Any], trials: pd.DataFrame, history: pd.DataFrame) -> Tables:
    hv, reference = accuracy_hypervolume(trials)
    trace = None
    objectives = searched_objectives(meta)
    if len(objectives) > 1:
        started = pd.Timestamp(meta["started_at"]).timestamp() if meta.get("started_at") else 0.0
        trace = hypervolume_trace(trials, history, objectives, started)
    return Tables(meta, trials, history, build_fronts(trials, history, meta), hv, reference, trace,
                  rung_tables(trials, history, meta))


def trials_to_evaluate(trials: pd.DataFrame, history: pd.DataFrame, meta: dict[str, Any]) -> list[str]:
    """The trials worth evaluating on the whole validation split: every one on a front the report shows (full
    budget and per rung) and the best of each cell type by the searched objective, sorted by id.

    A rung-front trial may have trained past its rung; its checkpoint is its last one, and the evaluation records
    that iteration, so the report shows the whole-split figure only where the iterations agree.
    """
    on_fronts = set(build_fronts(trials, history, meta)["trial_id"])
    return sorted(on_fronts | set(best_per_cell(trials, meta)["trial_id"]))


def early_stopping_saving(trials: pd.DataFrame, max_iters: int) -> tuple[int, int]:
    """(iterations the scheduler saved, full budget in iterations) over the completed and early-stopped trials.

    Only the scheduler's decisions count: a trial paused, unfinished or never started was cut off by the end of
    the search, not saved by early stopping. Counted in iterations, since characters round up to whole batches.
    """
    judged = trials[trials["status"].isin(["completed", "early_stopped"])]
    stopped = judged.loc[judged["status"] == "early_stopped", "iteration"].astype("float64").fillna(0)
    saved = int((max_iters - stopped).clip(lower=0).sum())
    return saved, len(judged) * max_iters


def wilson_interval(share: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``share`` of ``n`` trials (Wilson 1927, JASA 22:209-212).

    Unlike share ± z·se it stays within [0, 1] and keeps a useful width at the small counts a smoke search has.
    """
    if n <= 0 or not math.isfinite(share):
        return math.nan, math.nan
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def validation_text(trials: pd.DataFrame) -> str:
    """Which validation text the trials were scored on, in words (``val_max_chars``: 0 means the whole split)."""
    split = "the validation split (the corpus's last 10%)"
    limits = sorted({int(v) for v in trials["val_max_chars"].dropna()}) if "val_max_chars" in trials else []
    if not limits or limits == [0]:
        return f"the whole of {split}"
    if len(limits) == 1:
        return f"the first {limits[0]:,} characters of {split}"
    return (f"a prefix of {split}, of " + ", ".join(f"{v:,}" if v else "all" for v in limits)
            + " characters depending on the trial")


# ---------------------------------------------------------------------------------------------- Markdown


# Characters a Markdown renderer would read as syntax, not text: HTML's (as entities, which render as the
# character) and the inline syntax of links, emphasis, code and strikethrough (backslash-escaped, CommonMark §2.4).
_HTML_ENTITIES = {"<": "&lt;", ">": "&gt;"}
# An ampersand reads as a character reference only before a name or a '#' ("&lt;"); " & " stays as typed.
_ENTITY_START = re.compile(r"&(?=[#A-Za-z0-9])")
_MD_PUNCTUATION = "\\`*[]~|"
# An underscore opens or closes emphasis only beside a space or punctuation (CommonMark §6.2): ``val_loss`` stays.
_EDGE_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")


def md_escape(value: Any) -> str:
    """Any text as Markdown that renders as that text, in a paragraph or a table cell: HTML and inline syntax
    escaped, newlines as <br>.

    Descriptions, commands, trial ids and errors come from users and their programs; unescaped, a ``<script>``
    or a ``javascript:`` link in them would reach whoever opens the report.
    """
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    if value is pd.NA:
        text = ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ENTITY_START.sub("&amp;", text)
    text = "".join(_HTML_ENTITIES.get(c) or (f"\\{c}" if c in _MD_PUNCTUATION else c) for c in text)
    text = _EDGE_UNDERSCORE.sub(r"\\_", text)
    return text.replace("\n", "<br>")


def code_span(value: Any) -> str:
    """Text as an inline code span that nothing inside can close, also inside a table cell.

    The fence is one backtick longer than the longest run of backticks in the text (CommonMark §6.1); pipes
    are escaped because GFM splits table cells before it reads code spans; a newline becomes a space.
    """
    text = str(value).replace("\r\n", " ").replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fmt(value: Any, kind: str = "") -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if kind == "pct":
        return f"{100 * float(value):.2f}%"
    if kind == "si":
        v = float(value)
        for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {unit}"
        return f"{v:.3g}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def md_table(frame: pd.DataFrame, columns: dict[str, tuple[str, str]]) -> str:
    """columns: {column: (header, format kind)}."""
    head = "| " + " | ".join(md_escape(h) for h, _ in columns.values()) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(md_escape(fmt(row[c], kind)) for c, (_, kind) in columns.items()) + " |"
            for _, row in frame.iterrows()]
    return "\n".join([head, rule, *body]) if body else "_none_"


TRIAL_COLUMNS = {
    "trial_id": ("trial", ""), "cell": ("cell", ""), "seq_len": ("seq", ""), "hidden_size": ("H", ""),
    "num_layers": ("L", ""), "head_depth": ("head", ""), "lr": ("lr", ""), "batch_size": ("B", ""),
    "val_loss": ("val loss", ""), ACCURACY: ("acc (last)", "pct"), "params": ("params", "si"),
    "train_flops_per_char": ("train FLOPs/char", "si"), "train_time_s": ("train s", ""),
    "inference_latency_ms": ("latency ms", ""),
}
STATUS_MEANINGS = {
    "completed": "trained its full budget",
    "early_stopped": "stopped at a rung by the scheduler",
    "paused": "waiting at a rung for a promotion when the search ended",
    "diverged": "its loss blew up",
    "errored": "raised an error",
    "unfinished": "cut off mid-way by an interrupt or the time budget",
    "not_started": "never reported a result",
}


def budget_label(iteration: Any, max_iters: int) -> str:
    """Iterations reached out of the budget, e.g. ``1/27 it``."""
    return "–" if iteration is None or iteration is pd.NA or pd.isna(iteration) else f"{int(iteration)}/{max_iters} it"


def annotate(rows: pd.DataFrame, max_iters: int) -> pd.DataFrame:
    """``rows`` with the derived columns the report's trial tables show.

    ``budget``: iterations reached of the budget; ``acc_ci``: the 95% Wilson interval of ``val_acc_last`` over its
    ``val_windows``; ``whole_val_loss``: the whole-split loss where it was measured at the row's own iteration.
    """
    out = rows.copy()
    out["budget"] = [budget_label(i, max_iters) for i in out["iteration"]]
    windows = out["val_windows"] if "val_windows" in out else pd.Series(pd.NA, index=out.index)
    intervals = [wilson_interval(float(a), int(n)) if pd.notna(a) and pd.notna(n) else (math.nan, math.nan)
                 for a, n in zip(out[ACCURACY], windows, strict=True)]
    out["acc_ci"] = [f"{100 * lo:.0f}–{100 * hi:.0f}%" if math.isfinite(lo) else None for lo, hi in intervals]
    if "full_val_loss" in out:
        same = (out["full_val_iteration"] == out["iteration"]).fillna(False).astype(bool)
        out["whole_val_loss"] = out["full_val_loss"].where(same)
    else:
        out["whole_val_loss"] = math.nan
    return out


def trial_columns(rows: pd.DataFrame, *, budget: bool = False) -> dict[str, tuple[str, str]]:
    """:data:`TRIAL_COLUMNS`, with the whole-split loss beside the prefix one and the accuracy's interval where
    the rows have them, and each row's budget and status when the rows mix budgets."""
    columns: dict[str, tuple[str, str]] = {}
    for column, spec in TRIAL_COLUMNS.items():
        columns[column] = spec
        if column == "val_loss" and rows["whole_val_loss"].notna().any():
            columns["whole_val_loss"] = ("val loss (whole split)", "")
        if column == ACCURACY and rows["acc_ci"].notna().any():
            columns["acc_ci"] = ("acc 95% CI", "")
    if budget:
        columns.update({"budget": ("budget", ""), "status": ("status", "")})
    return columns


def seq_bins(values: pd.Series) -> pd.Series:
    distinct = sorted(values.dropna().unique())
    if len(distinct) <= 8:
        return values.astype("string")
    low = (values // 10) * 10
    return low.astype("Int64").astype("string") + "–" + (low + 9).astype("Int64").astype("string")


def cell_grid(trials: pd.DataFrame, max_iters: int) -> str:
    """Rows: cells; columns: sequence lengths; each entry the best trial there (the homework's view)."""
    valid = trials[trials["val_loss"].notna() & ~trials["status"].isin(["diverged", "not_started"])].copy()
    if valid.empty:
        return "_no trial reported a validation loss_"
    valid["seq"] = seq_bins(valid["seq_len"])
    order = sorted(valid["seq"].unique(), key=lambda s: int(str(s).split("–")[0]))
    lines = ["| cell | " + " | ".join(md_escape(s) for s in order) + " |", "|---|" + "---|" * len(order)]
    for cell in sorted(valid["cell"].dropna().unique()):
        entries = []
        for s in order:
            group = valid[(valid["cell"] == cell) & (valid["seq"] == s)]
            if group.empty:
                entries.append("–")
                continue
            b = group.loc[group["val_loss"].idxmin()]
            entries.append(f"{fmt(b['val_loss'])} · {fmt(b[ACCURACY], 'pct')} · {fmt(b['train_time_s'])} s · "
                           f"{fmt(b['params'], 'si')} params · {fmt(b['train_flops_per_char'], 'si')} FLOPs/char · "
                           f"{budget_label(b['iteration'], max_iters)} {b['status']}")
        lines.append(f"| {md_escape(cell)} | " + " | ".join(md_escape(e) for e in entries) + " |")
    return "\n".join(lines) + "\n\nEach entry: validation loss (nats/char) · accuracy after a full window · " \
        "training time · parameters · training FLOPs per character · iterations trained of the budget and status, " \
        "for the trial with the lowest validation loss in that cell. Entries trained for different budgets are " \
        "not comparable: a trial stopped early has a higher loss partly because it trained less."


def _header(t: Tables) -> list[str]:
    meta, trials = t.meta, t.trials
    budget = meta.get("budget", {})
    max_iters = int(budget.get("max_iters", 0))
    started = trials[trials["status"] != "not_started"]
    chars = int(started["chars_trained"].fillna(0).sum())
    saved, full = early_stopping_saving(trials, max_iters)
    judged = full // max_iters if max_iters else 0
    cut = {s: int((trials["status"] == s).sum()) for s in ("paused", "unfinished")}
    compute = f"{fmt(chars, 'si')} characters trained by {len(started)} trials"
    if full:
        compute += (f"; early stopping saved {100 * saved / full:.0f}% of the full budget of the {judged} trials that "
                    f"completed or were stopped ({saved} of {full} iterations)")
    if cut["paused"] or cut["unfinished"]:
        compute += (f"; {cut['paused']} paused and {cut['unfinished']} unfinished trial(s) were cut off by the end "
                    "of the search, not by the scheduler, and are not counted in that saving")
    hw, versions = meta.get("hardware", {}), meta.get("versions", {})
    out = [f"# Search report: {code_span(meta.get('space', '?'))}", ""]
    if meta.get("description"):
        out += [md_escape(meta["description"]), ""]
    commands = meta.get("commands", [])
    out += ["| | |", "|---|---|"]
    header = [
        ("command(s)", "<br>".join(code_span(c) for c in commands)),
        ("corpus", meta.get("corpus")),
        ("validated on", validation_text(trials)),
        ("objective(s)", ", ".join(f"{k} ({v})" for k, v in searched_objectives(meta).items())),
        ("constraints", ", ".join(f"{k} ≤ {fmt(v, 'si')}" for k, v in (meta.get("constraints") or {}).items())
         or "none"),
        ("sampler", f"{meta.get('sampler')} (seed {meta.get('seed')})"),
        ("scheduler", str(meta.get("scheduler", "?")) + (
            f" on {ranked['metric']} ({ranked['mode']})" if (ranked := meta.get("scheduler_metric")) else "") + (
            f" (grace {budget.get('grace_iters')}, reduction factor {budget.get('reduction_factor')}, "
            f"max {budget.get('max_iters')} iterations)" if meta.get("scheduler") in ASHA_SCHEDULERS else "")),
        ("budget", f"{budget.get('max_iters')} iterations × {fmt(budget.get('chars_per_iter'), 'si')} characters"),
        ("hardware", f"{hw.get('cpu', '?')} × {hw.get('cpu_count', '?')} CPUs"
                     + (f", {hw.get('gpu_count')} × {hw.get('gpu')}" if hw.get("gpu") else ", no GPU")),
        ("resources per trial", meta.get("resources")),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("started / finished", f"{meta.get('started_at')} / {meta.get('finished_at') or 'not finished'}"),
        ("wall time", f"{fmt(meta.get('wall_time_s'))} s" if meta.get("wall_time_s") else "–"),
        ("compute spent", compute),
    ]
    return out + [f"| {md_escape(k)} | {md_escape(v) if k != 'command(s)' else v} |" for k, v in header]


def _damaged(meta: dict[str, Any]) -> list[str]:
    """The experiment's damaged files (:func:`tuning.report.results.load_experiment`), so a reader knows what is
    missing."""
    if not meta.get("damaged"):
        return []
    return ["", "## Damaged files", "", "This report leaves out what these files held:", ""] + [
        f"- {md_escape(problem)}" for problem in meta["damaged"]]


def _status(trials: pd.DataFrame, meta: dict[str, Any]) -> list[str]:
    counts = {s: int((trials["status"] == s).sum()) for s in STATUSES}
    out = ["", "## Trial status", "", "| " + " | ".join(STATUSES) + " |", "|" + "---|" * len(STATUSES),
           "| " + " | ".join(str(counts[s]) for s in STATUSES) + " |", "",
           "; ".join(f"`{s}` {m}" for s, m in STATUS_MEANINGS.items()) + ".", ""]
    if counts["unfinished"] or counts["paused"]:
        out += [f"**{counts['unfinished']} trial(s) unfinished**, **{counts['paused']} paused**: the experiment was "
                "interrupted or ran out of time; "
                f"{code_span(meta.get('resume_command', 'python -m tuning.search --resume'))} continues it.", ""]
    for _, row in trials[trials["status"] == "errored"].iterrows():
        out.append(f"- {code_span(row['trial_id'])} errored: {md_escape(row['error'])}")
    return out


def _measured_on(t: Tables, shown: pd.DataFrame) -> list[str]:
    """What the figures in the tables below mean: which validation text, how many windows, which is whole-split."""
    windows = shown["val_windows"].dropna() if "val_windows" in shown else pd.Series(dtype="Int64")
    text = (f"Validation loss (`val_loss`, nats per character) and accuracy (`val_acc_last`, the next-character "
            f"prediction after a full window) are measured on {validation_text(t.trials)}.")
    if len(windows):
        low, high = int(windows.min()), int(windows.max())
        text += (f" Accuracy rests on {low}{f'–{high}' if high != low else ''} validation windows (one prediction "
                 "each), so it is shown with its 95% binomial (Wilson) interval, `acc 95% CI`.")
    if shown["whole_val_loss"].notna().any():
        text += (" `val loss (whole split)` is the same checkpoint scored afterwards on the whole validation split; "
                 "`val loss` is the figure the search saw.")
    return [text, ""]


def _fronts(t: Tables) -> list[str]:
    meta, trials = t.meta, t.trials
    max_iters = int(meta.get("budget", {}).get("max_iters", 0))
    chars_per_iter = meta.get("budget", {}).get("chars_per_iter", 0)
    objectives = searched_objectives(meta)
    by_id = annotate(trials, max_iters).set_index("trial_id")
    out = ["## Pareto fronts", "",
           f"The search optimised {front_name(objectives)}; each front below weighs that against a "
           "cost. Only trials that trained their full budget enter these fronts: early-stopped trials would look "
           "cheap only because they were cut short.", ""]
    full = t.pareto[t.pareto["budget_iters"] == max_iters] if len(t.pareto) else t.pareto
    rung_names = {rung_front_name(rung_objectives(meta), r) for r in t.at_rung}
    accuracy = [f for f in full["front"].unique() if f.startswith(f"{ACCURACY} (")]
    for front, group in full[~full["front"].isin(accuracy)].groupby("front", sort=False):
        rows = by_id.loc[list(group["trial_id"])].reset_index()
        out += [f"### {md_escape(front)}", "", md_table(rows, trial_columns(rows)), ""]
    if full.empty:
        out += ["_No trial completed its full budget, so there is no full-budget front"
                + ("; the fronts at equal budget below compare the trials where they were all measured._"
                   if rung_names else "._"), ""]
    if t.at_rung:
        out += ["## Fronts at equal budget", "",
                f"At each ASHA rung every trial that got there was measured after the same training, so these fronts "
                f"compare like with like even where no trial finished: {front_name(rung_objectives(meta))}, with each "
                f"trial's figures at that rung. Shown for rungs that at least {MIN_RUNG_TRIALS} trials reached. "
                "A trial may have trained on past the rung; its whole-split loss is shown only where it was measured "
                "at the rung.", ""]
        for rung in sorted(t.at_rung, reverse=True):
            name = rung_front_name(rung_objectives(meta), rung)
            ids = list(t.pareto.loc[t.pareto["front"] == name, "trial_id"])
            table = annotate(t.at_rung[rung], max_iters).set_index("trial_id").loc[ids].reset_index()
            iterations = f"{rung} iteration{'s' if rung != 1 else ''}"
            out += [f"### After {iterations} = {fmt(rung * int(chars_per_iter or 0), 'si')} characters "
                    f"({len(t.at_rung[rung])} trials measured there)", "", md_table(table, trial_columns(table)), ""]
    if accuracy:
        out += ["## Accuracy fronts", "",
                "The same full-budget trials, ranked by accuracy after a full window instead of the searched "
                "objective: the homework's view.", ""]
        for front in accuracy:
            rows = by_id.loc[list(full.loc[full["front"] == front, "trial_id"])].reset_index()
            out += [f"### {md_escape(front)}", "", md_table(rows, trial_columns(rows)), ""]
        out += [f"Hypervolume of the accuracy / training-FLOPs-per-character front: **{t.hypervolume:.6g}** "
                f"(accuracy × decades of FLOPs; reference point: accuracy {t.hv_reference[ACCURACY]}, "
                f"{fmt(t.hv_reference[FLOPS], 'si')} FLOPs/char = 1.1 × the costliest completed "
                "trial). Costs count on a log10 axis, so halving a model's FLOPs adds the same area at any size; on "
                "a linear axis the area right of the most accurate model would swamp the rest.", ""]
    return out


def _searched(t: Tables) -> list[str]:
    meta, trials = t.meta, t.trials
    if t.hv_trace is None:
        return []
    objectives = searched_objectives(meta)
    done = full_budget(trials)
    out = ["## The searched objectives", "",
           f"Front over {front_name(objectives)} among full-budget trials, and its hypervolume as trials "
           "completed, against wall time and characters trained (reference point: "
           + ", ".join(f"{k} {fmt(v)}" for k, v in (hv_reference(done, objectives) if len(done) else {}).items())
           + ")" + (f"; {', '.join(log_axes(objectives))} on a log10 axis (decades), as above"
                    if log_axes(objectives) else "") + ".", ""]
    anchors = meta.get("cost_anchor") or []
    anchors = [anchors] if isinstance(anchors, dict) else anchors  # an experiment from before families: one
    if anchors:
        points = "; ".join(", ".join(f"{k} {v}" for k, v in a.items()) for a in anchors)
        out += [("The first trial was the space's cheapest model" if len(anchors) == 1 else
                 f"The first {len(anchors)} trials were the cheapest model of each family")
                + f" (cost anchor: {points}), the cheap end of the front.", ""]
    front = pareto.pareto_front(done, objectives) if len(done) else done
    return out + [md_table(front, TRIAL_COLUMNS), "",
                  md_table(t.hv_trace, {"trial_id": ("completed trial", ""), "wall_s": ("wall s", ""),
                                        "chars_trained": ("characters trained", "si"),
                                        "hypervolume": ("hypervolume", "")}), ""]


def render_markdown(t: Tables, plots: dict[str, str] | None = None) -> str:
    meta, trials = t.meta, t.trials
    max_iters = int(meta.get("budget", {}).get("max_iters", 0))
    out = _header(t) + _damaged(meta) + _status(trials, meta)
    best = annotate(best_per_cell(trials, meta), max_iters)
    metric = next(iter(searched_objectives(meta)))
    out += ["", "## Best trial per cell type", "",
            f"The best trial of each cell type by {metric}, at whatever budget it reached (`budget`: iterations "
            "trained of the full budget).", "", md_table(best, trial_columns(best, budget=True)), ""]
    shown = annotate(trials[trials["trial_id"].isin(set(t.pareto["trial_id"]) | set(best["trial_id"]))], max_iters)
    out += _measured_on(t, shown) + _fronts(t) + _searched(t)
    if "feasible" in trials and (trials["feasible"] == False).any():  # noqa: E712 (nullable boolean)
        bad = trials[trials["feasible"] == False]  # noqa: E712
        out += [f"{len(bad)} trial(s) broke a constraint and are kept off every front: "
                + ", ".join(code_span(i) for i in bad["trial_id"]), ""]
    if plots:
        out += ["## Plots", ""] + [f"![{md_escape(k)}]({v})" for k, v in plots.items()] + [""]
    out += ["## Cell × sequence length", "", cell_grid(trials, max_iters), ""]
    for status, title, when in (("early_stopped", "Early-stopped trials", "stopped at iter"),
                                ("paused", "Paused trials", "paused at iter")):
        held = trials[trials["status"] == status].sort_values("val_loss")
        if status == "early_stopped" or len(held):
            out += [f"## {title}", "", md_table(held, {**TRIAL_COLUMNS, "iteration": (when, "")}), ""]
    # A sample comes from a trial's final model, so only the full-budget fronts' trials have one worth showing.
    on_full = set(t.pareto.loc[t.pareto["budget_iters"] == max_iters, "trial_id"])
    samples = trials[trials["trial_id"].isin(on_full) & trials["sample"].notna()]
    if not samples.empty:
        out += ["## Text samples from the front models", ""]
        for _, row in samples.sort_values(ACCURACY, ascending=False).iterrows():
            out += [f"**{md_escape(row['trial_id'])}** ({md_escape(row['cell'])}, seq {row['seq_len']}, "
                    f"H {row['hidden_size']}, "
                    f"acc {fmt(row[ACCURACY], 'pct')}) — prompt then sample:", "",
                    "```text", f"{row['sample_prompt']}⟶{row['sample']}".replace("```", "ʼʼʼ"), "```", ""]
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------- Plots


def _axes() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))


def save_png(fig: Any, path: Path) -> None:
    """Lay out, write atomically (never a half-written plot) and free a figure; every plot of ours ends here."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _finish(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:  # an empty legend box says nothing
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_png(fig, path)


def plot_front(trials: pd.DataFrame, path: Path, at_rung: dict[int, pd.DataFrame] | None = None) -> list[str]:
    """Accuracy against training FLOPs per character, with the full-budget front; where no trial completed, the
    highest rung's trials (``at_rung``: :attr:`Tables.at_rung`) and their front, all measured at that budget.
    Returns the legend's labels."""
    fig, ax = _axes()
    done = full_budget(trials)
    rung = max(at_rung) if at_rung and done[[ACCURACY, FLOPS]].dropna().empty else None
    shown = trials if rung is None else at_rung[rung]  # type: ignore[index]
    shown = shown[shown[ACCURACY].notna() & shown[FLOPS].notna()]
    for cell, group in shown.groupby("cell"):
        if rung is not None:
            ax.scatter(group[FLOPS], group[ACCURACY], label=f"{cell} (after {rung} iterations)", s=30)
            continue
        full = group[group["status"] == "completed"]
        rest = group[group["status"] != "completed"]
        line = ax.scatter(full[FLOPS], full[ACCURACY], label=f"{cell} (full budget)", s=30)
        ax.scatter(rest[FLOPS], rest[ACCURACY], s=12, alpha=0.35, color=line.get_facecolor(),
                   label=f"{cell} (stopped early)")
    among = done if rung is None else shown
    if len(among):
        front = pareto.pareto_front(among, {ACCURACY: "max", FLOPS: "min"}).sort_values(FLOPS)
        ax.step(front[FLOPS], front[ACCURACY], where="post", color="black", lw=1,
                label="front" if rung is None else f"front after {rung} iterations")
    if rung is not None:
        ax.set_title(f"No trial completed: every trial measured after {rung} iterations", fontsize=9)
    ax.set_xscale("log")
    labels = list(ax.get_legend_handles_labels()[1])
    _finish(fig, ax, path, "training FLOPs per character", "validation accuracy (after a full window)")
    return labels


def plot_curves(trials: pd.DataFrame, history: pd.DataFrame, path: Path, top: int = 6) -> None:
    fig, ax = _axes()
    best = trials[trials["best_val_loss"].notna()].nsmallest(top, "best_val_loss")
    for _, row in best.iterrows():
        curve = history[history["trial_id"] == row["trial_id"]]
        ax.plot(curve["chars_trained"], curve["val_loss"], marker=".",
                label=f"{row['trial_id']} {row['cell']} H{row['hidden_size']} seq{row['seq_len']}")
    _finish(fig, ax, path, "characters trained", "validation loss (nats/char)")


# ------------------------------------------------------------------------------------------------ Output


def write_tables(t: Tables, out: Path) -> None:
    for name, frame in ((TRIALS_TABLE, t.trials), (HISTORY_TABLE, t.history), (PARETO_TABLE, t.pareto)):
        def write(tmp: Path, f: pd.DataFrame = frame) -> None:
            f.to_parquet(tmp, index=False, engine="pyarrow")

        atomic_write(out / name, write)


def write_report(experiment_dir: Path, out: Path) -> Tables:
    """Read an experiment directory and write every report file into ``out``."""
    meta, trials, history = load_experiment(Path(experiment_dir))
    tables = build_tables(meta, trials, history)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"report folder {out}: cannot be made ({exc.strerror or type(exc).__name__}); "
                        "--out takes a directory, made if missing") from None
    write_tables(tables, out)
    plots = {}
    if trials[ACCURACY].notna().any():
        plot_front(trials, out / PLOT_FRONT, tables.at_rung)
        plots["accuracy against training FLOPs per character"] = PLOT_FRONT
    if len(history):
        plot_curves(trials, history, out / PLOT_CURVES)
        plots["learning curves of the best trials"] = PLOT_CURVES
    atomic_write_text(out / REPORT_MD, render_markdown(tables, plots))
    return tables


def summary(t: Tables, report_dir: Path) -> str:
    """One screen for the terminal: status counts, the best trial per cell with its budget, where the report is."""
    trials = t.trials
    max_iters = int(t.meta.get("budget", {}).get("max_iters", 0))
    counts = ", ".join(f"{int((trials['status'] == s).sum())} {s}" for s in STATUSES)
    metric = next(iter(searched_objectives(t.meta)))
    lines = [f"\n{len(trials)} trials: {counts}", f"best per cell type (by {metric}):"]
    for _, row in best_per_cell(trials, t.meta).iterrows():
        lines.append(f"  {row['cell']:<5} val_loss {fmt(row['val_loss'])}  acc(last) {fmt(row[ACCURACY], 'pct')}  "
                     f"seq {row['seq_len']}  H {row['hidden_size']}  L {row['num_layers']}  "
                     f"[{budget_label(row['iteration'], max_iters)} {row['status']}] {row['trial_id']}")
    lines += [f"damaged: {problem}" for problem in t.meta.get("damaged", [])]
    lines.append(f"report: {Path(report_dir) / REPORT_MD}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tuning.report",
                                     description="Regenerate the report of an experiment directory.")
    parser.add_argument("experiment_dir")
    parser.add_argument("--out", help="report directory (default: EXPERIMENT_DIR/report)")
    try:
        args = parser.parse_args(argv)
        experiment = Path(args.experiment_dir)
        out = Path(args.out) if args.out else experiment / "report"
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out}: a file, not a directory; give a directory (made if missing)")
        tables = write_report(experiment, out)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summary(tables, out))
    cut = {s: int((tables.trials["status"] == s).sum()) for s in ("unfinished", "paused")}
    if any(cut.values()):
        print(f"{cut['unfinished']} trial(s) unfinished, {cut['paused']} paused: --resume continues the search")
    return 0


if __name__ == "__main__":
    sys.exit(main())
