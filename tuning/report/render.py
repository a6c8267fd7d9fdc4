"""The report's Markdown: a function of the tables (:func:`render_markdown`), so it is tested without Ray.

The tables are built by :func:`tuning.report.tables.build_tables`; :mod:`tuning.report.write` writes the
report folder, and is the command ``python -m tuning.report``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from tuning.report.fronts import (
    ACCURACY,
    FLOPS,
    MIN_RUNG_TRIALS,
    best_per_cell,
    front_name,
    full_budget,
    rung_front_name,
    rung_objectives,
    searched_objectives,
)
from tuning.report.results import STATUSES
from tuning.report.tables import Tables, early_stopping_saving, hv_reference, log_axes, wilson_interval
from tuning.spec import pareto
from tuning.spec.space import ASHA_SCHEDULERS


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
