"""The recommendation: which configuration to pick under each memory level that was measured, and
what each method costs and gives against full fine-tuning, with the uncertainty of accuracies
measured on a few hundred rows. Markdown: printed at the end, saved as report.md."""

from __future__ import annotations

import math

import pandas as pd

from src.sweep.report.table import (
    best_per_method,
    difference_interval,
    interval_text,
    state_text,
)


def recommendation(frame: pd.DataFrame, study_name: str) -> str:
    counts = {s: int((frame["state"] == s).sum()) for s in ("COMPLETE", "PRUNED", "FAIL")}
    lines = [
        f"# Recommendation: sweep {study_name}",
        f"{len(frame)} trials: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
        f"{counts['FAIL']} failed. Accuracies carry 95% Wilson intervals from the validation "
        "rows; pruned trials are shown at their last check and not ranked.",
        "",
    ]
    complete = frame[(frame["state"] == "COMPLETE") & frame["val/acc"].notna()]
    if complete.empty:
        return "\n".join([*lines, "No trial completed: nothing to recommend yet."])
    lines += _best(complete) + [""] + _memory_levels(complete) + [""] + _against_full(frame)
    return "\n".join(lines + _confirmed(frame))


def _confirmed(frame: pd.DataFrame) -> list[str]:
    if "confirm/n" not in frame or frame["confirm/n"].isna().all():
        return []
    out = [
        "",
        "## Confirmed with more seeds (confirm.top / confirm.seeds)",
        "| trial | method | val acc of the search | mean +- sd over seeds | seeds |",
        "|---|---|---|---|---|",
    ]
    for _, row in frame[frame["confirm/n"].notna()].iterrows():
        out.append(
            f"| #{row['trial']} | {row['method']} | {row['val/acc']:.3f} | "
            f"{row['confirm/mean']:.3f} +- {row['confirm/sd']:.3f} | {int(row['confirm/n'])} |"
        )
    return out


def _best(complete: pd.DataFrame) -> list[str]:
    best = complete.loc[complete["val/acc"].idxmax()]
    out = [f"**Best:** {_describe(best)}."]
    tied = complete[complete["tied"] & (complete["trial"] != best["trial"])]
    cheaper = tied[tied["mem/peak_mb"] < best["mem/peak_mb"]].sort_values("mem/peak_mb")
    if not cheaper.empty:
        pick = cheaper.iloc[0]
        out.append(
            f"**Tied with it and cheaper:** {_describe(pick)}: the 95% interval of its "
            "difference from the best contains 0, at "
            f"{pick['mem/peak_mb'] / best['mem/peak_mb']:.2f}x the memory. More validation rows "
            "(or `confirm` seeds) would tell them apart."
        )
    return out


def _memory_levels(complete: pd.DataFrame) -> list[str]:
    """A row wherever a larger memory budget buys a better accuracy (the accuracy x memory
    front): the best configuration up to that peak memory."""
    out = [
        "## Best configuration under each memory level",
        "| peak memory up to | trial | method | val acc [95% CI] | train s | settings |",
        "|---|---|---|---|---|---|",
    ]
    best_so_far = -1.0
    for _, row in complete.sort_values(
        ["mem/peak_mb", "val/acc"], ascending=[True, False]
    ).iterrows():
        if row["val/acc"] > best_so_far:
            best_so_far = row["val/acc"]
            out.append(
                f"| {row['mem/peak_mb']:.0f} MB | #{row['trial']} | {row['method']} | "
                f"{interval_text(row)} | {row['time/train_s']:.1f} | {_settings(row)} |"
            )
    return out


def _against_full(frame: pd.DataFrame) -> list[str]:
    best = best_per_method(frame)
    full = best[(best["method"] == "full") & (best["state"] == "COMPLETE")]
    if full.empty:
        return ["## Against full fine-tuning", "Full fine-tuning did not complete in this sweep."]
    ref = full.iloc[0]
    out = [
        "## Each method against full fine-tuning "
        f"(#{ref['trial']}, {ref['mem/peak_mb']:.0f} MB, {ref['time/train_s']:.1f} s)",
        "| method | trial | memory x | time x | val acc | difference [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in best[best["method"] != "full"].iterrows():
        if row["state"] != "COMPLETE":
            out.append(
                f"| {row['method']} | #{row['trial']} | - | - | {interval_text(row)} | "
                f"not comparable: {state_text(row)} |"
            )
            continue
        low, high = difference_interval(row, ref)
        diff = row["val/acc"] - ref["val/acc"]
        span = "" if math.isnan(low) else f" [{low:+.3f}, {high:+.3f}]"
        out.append(
            f"| {row['method']} | #{row['trial']} | "
            f"{row['mem/peak_mb'] / ref['mem/peak_mb']:.2f} | "
            f"{row['time/train_s'] / ref['time/train_s']:.2f} | {interval_text(row)} | "
            f"{diff:+.3f}{span} |"
        )
    return out


def _describe(row) -> str:
    return (
        f"trial #{row['trial']} {row['method']} ({_settings(row)}): val acc "
        f"{interval_text(row)}, {row['mem/peak_mb']:.0f} MB peak, {row['time/train_s']:.1f} s"
    )


def _settings(row) -> str:
    items = [
        (k.removeprefix("param."), v)
        for k, v in row.items()
        if k.startswith("param.") and k != "param.method" and v is not None and v == v
    ]
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in items)
