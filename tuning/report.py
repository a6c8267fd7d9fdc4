"""The report: trade-off tables in Parquet and Markdown, plots and text samples.

``python -m tuning.report EXPERIMENT_DIR [--out DIR]`` regenerates it from any experiment directory of ours,
finished or interrupted. The tables are built by plain functions of DataFrames (:func:`build_tables`) and the
Markdown by a function of those tables (:func:`render_markdown`), so both are tested without Ray.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuning import pareto
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
from tuning.results import STATUSES, load_experiment
from tuning.spaces import ASHA_SCHEDULERS

ACCURACY = "val_acc_last"
COSTS = {
    "train_flops_per_char": "training FLOPs per character",
    "params": "parameters",
    "train_time_s": "training time (s)",
    "inference_latency_ms": "inference latency (ms)",
}
FRONT_HPARAMS = ("cell", "seq_len", "embed_dim", "hidden_size", "num_layers", "dropout", "head_depth", "head_width",
                 "head_dropout", "lr", "batch_size")
# Minimised costs that span orders of magnitude across a search (50 k to 16 M training FLOPs per character in the
# 12-minute multi-objective benchmark): hypervolumes measure them on a log10 axis (see on_log_axes).
LOG_METRICS = frozenset({*COSTS, "flops", "macs", "calflops_flops", "calflops_macs", "flops_per_char",
                         "macs_per_char"})
PARETO_TYPES = {"front": "string", "trial_id": "string", ACCURACY: "float64", "val_loss": "float64",
                **{c: "float64" for c in COSTS}}


@dataclass
class Tables:
    meta: dict[str, Any]
    trials: pd.DataFrame
    history: pd.DataFrame
    pareto: pd.DataFrame  # one row per (front, trial on it)
    hypervolume: float
    hv_reference: dict[str, float]
    hv_trace: pd.DataFrame | None = None  # multi-objective searches: hypervolume as trials complete


def front_name(objectives: dict[str, str]) -> str:
    return " & ".join(f"{k} ({v})" for k, v in objectives.items())


def full_budget(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that may enter a front: completed their budget and within the experiment's constraints."""
    feasible = trials["feasible"].fillna(True).astype(bool) if "feasible" in trials else True
    return trials[(trials["status"] == "completed") & feasible]


def searched_objectives(meta: dict[str, Any]) -> dict[str, str]:
    listed = meta.get("objectives") or [meta.get("objective") or {"metric": "val_loss", "mode": "min"}]
    return {o["metric"]: o["mode"] for o in listed}


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
    :mod:`tuning.pareto` leaves such rows out of the hypervolume.
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


def build_pareto(trials: pd.DataFrame) -> tuple[pd.DataFrame, float, dict[str, float]]:
    """The 2-D fronts of accuracy against each cost and the front over all of them, full-budget trials only.

    Early-stopped trials are left out on purpose: an undertrained tiny model would look non-dominated on
    FLOPs. Returns the rows, the accuracy/FLOPs hypervolume (over log10 FLOPs: :func:`on_log_axes`) and its
    reference point (in FLOPs).
    """
    done = full_budget(trials)
    fronts: list[dict[str, str]] = [{ACCURACY: "max", cost: "min"} for cost in COSTS]
    fronts.append({ACCURACY: "max", **{cost: "min" for cost in COSTS}})
    rows = []
    for objectives in fronts:
        front = pareto.pareto_front(done, objectives) if len(done) else done
        for _, trial in front.iterrows():
            rows.append({"front": front_name(objectives), "trial_id": trial["trial_id"], ACCURACY: trial[ACCURACY],
                         "val_loss": trial["val_loss"], **{c: trial[c] for c in COSTS}})
    frame = pd.DataFrame.from_records(rows, columns=list(PARETO_TYPES))
    frame = frame.astype(PARETO_TYPES)
    # Reference point: accuracy 0 and 10% above the most expensive completed trial (stated in the report).
    flops = done["train_flops_per_char"].astype("float64")
    reference = {ACCURACY: 0.0, "train_flops_per_char": float(flops.max() * 1.1) if flops.notna().any() else 1.0}
    objectives = {ACCURACY: "max", "train_flops_per_char": "min"}
    logged, logged_ref = on_log_axes(done, reference, objectives)
    hv = pareto.hypervolume_2d(logged, objectives, logged_ref) if len(done) else 0.0
    return frame, float(hv), reference


def build_tables(meta: dict[str, Any], trials: pd.DataFrame, history: pd.DataFrame) -> Tables:
    frame, hv, reference = build_pareto(trials)
    trace = None
    objectives = searched_objectives(meta)
    if len(objectives) > 1:
        started = pd.Timestamp(meta["started_at"]).timestamp() if meta.get("started_at") else 0.0
        trace = hypervolume_trace(trials, history, objectives, started)
    return Tables(meta, trials, history, frame, hv, reference, trace)


# ---------------------------------------------------------------------------------------------- Markdown


def md_escape(value: Any) -> str:
    """A table cell that renders on GitHub: pipes escaped, newlines as <br>, nothing else touched."""
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    if value is pd.NA:
        text = ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


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


def seq_bins(values: pd.Series) -> pd.Series:
    distinct = sorted(values.dropna().unique())
    if len(distinct) <= 8:
        return values.astype("string")
    low = (values // 10) * 10
    return low.astype("Int64").astype("string") + "–" + (low + 9).astype("Int64").astype("string")


def cell_grid(trials: pd.DataFrame) -> str:
    """Rows: cells; columns: sequence lengths; each entry the best trial there (the homework's view)."""
    valid = trials[trials["val_loss"].notna() & trials["status"].isin(["completed", "early_stopped"])].copy()
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
                           f"{fmt(b['params'], 'si')} params · {fmt(b['train_flops_per_char'], 'si')} FLOPs/char")
        lines.append(f"| {md_escape(cell)} | " + " | ".join(md_escape(e) for e in entries) + " |")
    return "\n".join(lines) + "\n\nEach entry: validation loss (nats/char) · accuracy after a full window · " \
        "training time · parameters · training FLOPs per character, for the best trial in that cell."


def render_markdown(t: Tables, plots: dict[str, str] | None = None) -> str:
    meta, trials = t.meta, t.trials
    budget = meta.get("budget", {})
    counts = {s: int((trials["status"] == s).sum()) for s in STATUSES}
    chars = int(trials["chars_trained"].fillna(0).sum())
    full = len(trials) * int(budget.get("max_iters", 0)) * int(budget.get("chars_per_iter", 0))
    hw, versions = meta.get("hardware", {}), meta.get("versions", {})
    out = [f"# Search report: `{md_escape(meta.get('space', '?'))}`", ""]
    if meta.get("description"):
        out += [md_escape(meta["description"]), ""]
    commands = meta.get("commands", [])
    out += ["| | |", "|---|---|"]
    header = [
        ("command(s)", "<br>".join(f"`{md_escape(c)}`" for c in commands)),
        ("corpus", meta.get("corpus")),
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
        ("compute spent", f"{fmt(chars, 'si')} characters trained; full budget for all {len(trials)} trials: "
                          f"{fmt(full, 'si')}" + (f" (early stopping saved {100 * (1 - chars / full):.0f}%)"
                                                  if full else "")),
    ]
    out += [f"| {md_escape(k)} | {md_escape(v) if k != 'command(s)' else v} |" for k, v in header]
    out += ["", "## Trial status", "", "| " + " | ".join(STATUSES) + " |", "|" + "---|" * len(STATUSES),
            "| " + " | ".join(str(counts[s]) for s in STATUSES) + " |", ""]
    if counts["unfinished"]:
        out += [f"**{counts['unfinished']} trial(s) unfinished**: the experiment was interrupted or ran out of time; "
                f"`{meta.get('resume_command', 'python -m tuning.search --resume')}` continues it.", ""]
    errored = trials[trials["status"] == "errored"]
    for _, row in errored.iterrows():
        out.append(f"- `{row['trial_id']}` errored: {md_escape(row['error'])}")
    out += ["", "## Best trial per cell type", ""]
    ranked = trials[trials["val_loss"].notna() & (trials["status"] != "diverged")].sort_values("val_loss")
    best = ranked.groupby("cell", sort=True).head(1).sort_values("val_loss")
    out += [md_table(best, {**TRIAL_COLUMNS, "status": ("status", "")}), ""]
    out += ["## Pareto fronts", "",
            "Accuracy is `val_acc_last`: the next-character prediction after a full window, on the held-out last "
            "10% of the corpus. Only trials that trained their full budget enter a front; early-stopped trials "
            "would look cheap only because they were cut short.", ""]
    for front, group in t.pareto.groupby("front", sort=False):
        ids = list(group["trial_id"])
        rows = trials.set_index("trial_id").loc[ids].reset_index()
        out += [f"### {md_escape(front)}", "", md_table(rows, {**TRIAL_COLUMNS}), ""]
    if t.pareto.empty:
        out += ["_No trial completed its full budget, so there is no front._", ""]
    if not t.pareto.empty:
        out += [f"Hypervolume of the accuracy / training-FLOPs-per-character front: **{t.hypervolume:.6g}** "
                f"(accuracy × decades of FLOPs; reference point: accuracy {t.hv_reference[ACCURACY]}, "
                f"{fmt(t.hv_reference['train_flops_per_char'], 'si')} FLOPs/char = 1.1 × the costliest completed "
                "trial). Costs count on a log10 axis, so halving a model's FLOPs adds the same area at any size; on "
                "a linear axis the area right of the most accurate model would swamp the rest.", ""]
    if t.hv_trace is not None:
        objectives = searched_objectives(meta)
        done = full_budget(trials)
        out += ["## The searched objectives", "",
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
        out += [md_table(front, TRIAL_COLUMNS), "",
                md_table(t.hv_trace, {"trial_id": ("completed trial", ""), "wall_s": ("wall s", ""),
                                      "chars_trained": ("characters trained", "si"),
                                      "hypervolume": ("hypervolume", "")}), ""]
    if "feasible" in trials and (trials["feasible"] == False).any():  # noqa: E712 (nullable boolean)
        bad = trials[trials["feasible"] == False]  # noqa: E712
        out += [f"{len(bad)} trial(s) broke a constraint and are kept off every front: "
                + ", ".join(f"`{i}`" for i in bad["trial_id"]), ""]
    if plots:
        out += ["## Plots", ""] + [f"![{md_escape(k)}]({v})" for k, v in plots.items()] + [""]
    out += ["## Cell × sequence length", "", cell_grid(trials), ""]
    early = trials[trials["status"] == "early_stopped"].sort_values("val_loss")
    out += ["## Early-stopped trials", "", md_table(early, {**TRIAL_COLUMNS, "iteration": ("stopped at iter", "")}), ""]
    samples = trials[trials["trial_id"].isin(set(t.pareto["trial_id"])) & trials["sample"].notna()]
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
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_png(fig, path)


def plot_front(trials: pd.DataFrame, path: Path) -> None:
    fig, ax = _axes()
    shown = trials[trials[ACCURACY].notna() & trials["train_flops_per_char"].notna()]
    for cell, group in shown.groupby("cell"):
        done = group[group["status"] == "completed"]
        rest = group[group["status"] != "completed"]
        line = ax.scatter(done["train_flops_per_char"], done[ACCURACY], label=f"{cell} (full budget)", s=30)
        ax.scatter(rest["train_flops_per_char"], rest[ACCURACY], s=12, alpha=0.35, color=line.get_facecolor(),
                   label=f"{cell} (stopped early)")
    done = full_budget(trials)
    if len(done):
        front = pareto.pareto_front(done, {ACCURACY: "max", "train_flops_per_char": "min"})
        front = front.sort_values("train_flops_per_char")
        ax.step(front["train_flops_per_char"], front[ACCURACY], where="post", color="black", lw=1, label="front")
    ax.set_xscale("log")
    _finish(fig, ax, path, "training FLOPs per character", "validation accuracy (after a full window)")


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
    out.mkdir(parents=True, exist_ok=True)
    write_tables(tables, out)
    plots = {}
    if trials[ACCURACY].notna().any():
        plot_front(trials, out / PLOT_FRONT)
        plots["accuracy against training FLOPs per character"] = PLOT_FRONT
    if len(history):
        plot_curves(trials, history, out / PLOT_CURVES)
        plots["learning curves of the best trials"] = PLOT_CURVES
    atomic_write_text(out / REPORT_MD, render_markdown(tables, plots))
    return tables


def summary(t: Tables, report_dir: Path) -> str:
    """One screen for the terminal: status counts, the best trial per cell, where the report is."""
    trials = t.trials
    counts = ", ".join(f"{int((trials['status'] == s).sum())} {s}" for s in STATUSES)
    lines = [f"\n{len(trials)} trials: {counts}", "best per cell type:"]
    ranked = trials[trials["val_loss"].notna() & (trials["status"] != "diverged")].sort_values("val_loss")
    for _, row in ranked.groupby("cell").head(1).iterrows():
        lines.append(f"  {row['cell']:<5} val_loss {fmt(row['val_loss'])}  acc(last) {fmt(row[ACCURACY], 'pct')}  "
                     f"seq {row['seq_len']}  H {row['hidden_size']}  L {row['num_layers']}  [{row['status']}] "
                     f"{row['trial_id']}")
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
        tables = write_report(experiment, out)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summary(tables, out))
    unfinished = int((tables.trials["status"] == "unfinished").sum())
    if unfinished:
        print(f"{unfinished} trial(s) unfinished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
