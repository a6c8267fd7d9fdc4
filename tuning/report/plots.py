"""The report's plots: the accuracy/FLOPs front and the learning curves, as PNG files (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tuning.files import atomic_write
from tuning.report.fronts import ACCURACY, FLOPS, full_budget
from tuning.spec import pareto


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
