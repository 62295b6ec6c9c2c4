"""The report's pictures: a PNG of accuracy x peak memory (colour: train time) with 95% intervals,
and one self-contained HTML page (plotly.js inlined once) with the same scatter, Optuna's own
plots where the study has enough trials for them, the recommendation and the trial table."""

from __future__ import annotations

import html
import re
import warnings
from pathlib import Path

import pandas as pd

from src.errors import first_line

MARKERS = {"COMPLETE": "o", "PRUNED": "X"}


def write_png(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers/CI
    import matplotlib.pyplot as plt

    shown = frame[frame["val/acc"].notna() & frame["mem/peak_mb"].notna()]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.errorbar(
        shown["mem/peak_mb"],
        shown["val/acc"],
        fmt="none",
        ecolor="0.7",
        zorder=1,
        yerr=[shown["val/acc"] - shown["val/acc_lo"], shown["val/acc_hi"] - shown["val/acc"]],
    )
    points = None
    for state, marker in MARKERS.items():
        part = shown[shown["state"] == state]
        if part.empty:
            continue
        points = ax.scatter(
            part["mem/peak_mb"],
            part["val/acc"],
            c=part["time/train_s"],
            cmap="viridis",
            marker=marker,
            s=[90 if p else 40 for p in part["pareto"]],
            edgecolors=["black" if p else "none" for p in part["pareto"]],
            label=state.lower(),
            zorder=2,
        )
    for _, row in shown[shown["pareto"] | shown["tied"]].iterrows():
        label = f"#{row['trial']} {row['method']}" + (" (tied)" if row["tied"] else "")
        ax.annotate(
            label,
            (row["mem/peak_mb"], row["val/acc"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    if points is not None:
        fig.colorbar(points, label="train time (s)")
    failed = int((frame["state"] == "FAIL").sum())
    ax.set(
        xlabel="peak memory (MB)",
        ylabel="val accuracy (95% interval)",
        title="accuracy x memory x time: outlined = Pareto front, X = pruned"
        + (f"; {failed} failed (not plotted)" if failed else ""),
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_html(study, frame: pd.DataFrame, recommendation_md: str, path: Path) -> list[str]:
    """The one HTML report; returns the names of Optuna plots skipped (too few trials)."""
    figures, skipped = [("Accuracy x memory x time", _scatter(frame))], []
    for title, fig in _optuna_plots(study, skipped):
        figures.append((title, fig))
    parts = [
        f"<h2>{html.escape(title)}</h2>"
        + fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
        for i, (title, fig) in enumerate(figures)
    ]
    table = frame.drop(columns=["run_id"]).to_html(index=False, na_rep="-", float_format="%.4g")
    page = (
        f"<html><head><meta charset='utf-8'><title>{html.escape(study.study_name)}</title>"
        "</head><body style='font-family:sans-serif'>"
        f"<h1>Sweep {html.escape(study.study_name)}</h1>"
        f"<pre>{html.escape(recommendation_md)}</pre>"
        + "\n".join(parts)
        + f"<h2>Every trial</h2>{table}</body></html>"
    )
    path.write_text(page)
    return skipped


def _scatter(frame: pd.DataFrame):
    import plotly.express as px

    shown = frame[frame["val/acc"].notna()].assign(
        err_plus=lambda f: f["val/acc_hi"] - f["val/acc"],
        err_minus=lambda f: f["val/acc"] - f["val/acc_lo"],
    )
    return px.scatter(
        shown,
        x="mem/peak_mb",
        y="val/acc",
        color="time/train_s",
        symbol="state",
        error_y="err_plus",
        error_y_minus="err_minus",
        hover_data=[c for c in shown.columns if c not in ("run_id", "err_plus", "err_minus")],
    )


def _optuna_plots(study, skipped: list[str]):
    import optuna.visualization as vis

    multi = len(study.directions) > 1
    target = {"target": (lambda t: t.values[0]), "target_name": "objective 0"} if multi else {}
    plots = [
        ("Optimization history", vis.plot_optimization_history, target),
        ("Intermediate values (what the pruner saw)", vis.plot_intermediate_values, {}),
        ("Parameter importances", vis.plot_param_importances, target),
        ("Timeline", vis.plot_timeline, {}),
    ]
    for title, plot, kwargs in plots:
        if multi and plot is vis.plot_intermediate_values:
            continue  # multi-objective trials report no intermediate values
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.filterwarnings("always", message="Some regimes for parameter")
                figure = plot(study, **kwargs)
        except Exception as err:  # noqa: BLE001 - e.g. too few complete trials for importances
            skipped.append(f"{title}: {type(err).__name__}: {first_line(err)[:120]}")
            continue
        yield title + _caveat(caught), figure


def _caveat(caught: list[warnings.WarningMessage]) -> str:
    """The importances warn once per parameter with values tried by fewer than 2 trials (every
    parameter of a short sweep): said once in the plot's title, not as lines on the console.
    Any other warning is shown as usual."""
    thin = []
    for w in caught:
        if found := re.search(r"parameter `([^`]+)` have less than 2 trials", str(w.message)):
            thin.append(found.group(1))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return (
        f" (rough: values tried by fewer than 2 trials for {', '.join(sorted(thin))})"
        if thin
        else ""
    )
