"""Writing an experiment's report folder, and the command ``python -m tuning.report EXPERIMENT_DIR [--out DIR]``.

It regenerates the report from any experiment directory of ours, finished or interrupted: the tables
(:mod:`tuning.report.tables`), the Markdown (:mod:`tuning.report.render`) and the plots
(:mod:`tuning.report.plots`).
"""

from __future__ import annotations

import sys
from pathlib import Path

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
from tuning.report.fronts import ACCURACY, best_per_cell, searched_objectives
from tuning.report.plots import plot_curves, plot_front
from tuning.report.render import budget_label, fmt, render_markdown
from tuning.report.results import STATUSES, load_experiment
from tuning.report.tables import Tables, build_tables


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
