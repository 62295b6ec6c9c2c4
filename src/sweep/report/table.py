"""Every finished trial as one row: what it measured (a pruned trial: up to its prune, a failed
one: its reason), a 95% Wilson interval on each accuracy from the rows it was measured on, whether
it is tied with the best, and the Pareto front of accuracy x peak memory x train time."""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import binomtest

from src.sweep.samplers import pruned_by_note

AXES = [("val/acc", "max"), ("mem/peak_mb", "min"), ("time/train_s", "min")]
MEASURED = [
    "val/acc",
    "test/acc",
    "mem/peak_mb",
    "time/train_s",
    "time/step_ms",
    "train/steps",
    "params/trainable",
]
ROWS_OF = {"val/acc": "data/val_rows", "test/acc": "data/test_rows"}
STATES = ("COMPLETE", "PRUNED", "FAIL")


def wilson(accuracy: float | None, rows: float | None, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of an accuracy measured on `rows` rows (NaN when unknown)."""
    if accuracy is None or not rows or math.isnan(accuracy) or math.isnan(rows):
        return math.nan, math.nan
    n = int(rows)
    ci = binomtest(round(accuracy * n), n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def trial_table(study) -> pd.DataFrame:
    """One row per finished trial (COMPLETE, PRUNED, FAIL), params and measurements."""
    attrs = study.user_attrs
    rows = [
        {**_row(t), **_confirmed(attrs.get(f"confirm_{t.number}"))}
        for t in study.get_trials(deepcopy=False)
        if t.state.name in STATES
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for key in MEASURED:
        frame[key] = frame.get(key, math.nan)
    frame["pareto"] = pareto_mask(frame)
    frame["tied"] = tied_with_best(frame)
    return frame


def _row(trial) -> dict:
    metrics = trial.user_attrs.get("metrics") or {}
    row = {
        "trial": trial.number,
        "method": trial.user_attrs.get("method") or "-",
        "state": trial.state.name,
        "reason": trial.user_attrs.get("reason") or trial.state.name.lower(),
        **{key: metrics.get(key, math.nan) for key in MEASURED},
        "pruned_at_step": trial.user_attrs.get("pruned_at_step"),
        "pruned_by": trial.user_attrs.get("pruned_by"),
        "fail_reason": (trial.user_attrs.get("fail_reason") or "")[:200],
        "run_id": trial.user_attrs.get("run_id"),
        # The pre-flight estimate: logged by the run, or kept by a trial pruned over_budget.
        "estimate/peak_mb": metrics.get(
            "estimate/peak_mb", (trial.user_attrs.get("estimate") or {}).get("peak_mb", math.nan)
        ),
    }
    for key, rows_key in ROWS_OF.items():
        row[f"{key}_lo"], row[f"{key}_hi"] = wilson(metrics.get(key), metrics.get(rows_key))
    settings = {**trial.params, **(trial.user_attrs.get("fixed") or {})}
    return {**row, **{f"param.{k}": v for k, v in settings.items()}}


def _confirmed(summary: dict | None) -> dict:
    """confirm.top/seeds results (src/sweep/confirm.py): mean and sd over the seeds run."""
    if not summary:
        return {}
    return {"confirm/mean": summary["mean"], "confirm/sd": summary["sd"], "confirm/n": summary["n"]}


def pareto_mask(frame: pd.DataFrame, axes=AXES) -> list[bool]:
    """True for COMPLETE trials no other COMPLETE trial beats on every axis (at least as good on
    each, better on one). Pruned trials trained less: they are shown, not ranked."""
    complete = frame["state"] == "COMPLETE"
    points = {
        i: [r[k] if d == "max" else -r[k] for k, d in axes] for i, r in frame[complete].iterrows()
    }
    points = {i: p for i, p in points.items() if not any(math.isnan(v) for v in p)}

    def dominated(a):
        return any(
            all(y >= x for x, y in zip(a, b, strict=True))
            and any(y > x for x, y in zip(a, b, strict=True))
            for b in points.values()
        )

    return [i in points and not dominated(points[i]) for i in frame.index]


def tied_with_best(frame: pd.DataFrame) -> list[bool]:
    """True where the 95% interval of the difference from the best COMPLETE trial's val acc
    contains 0 (the best included): on this many rows the two cannot be told apart. (Merely
    overlapping intervals would call a trial 5 points worse on 256 rows tied.)"""
    complete = frame[(frame["state"] == "COMPLETE") & frame["val/acc"].notna()]
    if complete.empty:
        return [False] * len(frame)
    best = complete.loc[complete["val/acc"].idxmax()]
    tied = []
    for _, row in frame.iterrows():
        low, high = difference_interval(row, best)
        tied.append(row["trial"] == best["trial"] or bool(low <= 0 <= high))
    return tied


def difference_interval(a, b, key: str = "val/acc") -> tuple[float, float]:
    """Newcombe's interval for the difference of two accuracies, from their Wilson intervals."""
    pa, la, ha = a[key], a[f"{key}_lo"], a[f"{key}_hi"]
    pb, lb, hb = b[key], b[f"{key}_lo"], b[f"{key}_hi"]
    diff = pa - pb
    return (
        diff - math.sqrt((pa - la) ** 2 + (hb - pb) ** 2),
        diff + math.sqrt((ha - pa) ** 2 + (pb - lb) ** 2),
    )


def best_per_method(frame: pd.DataFrame) -> pd.DataFrame:
    """Each method that ran: its best COMPLETE trial, else its best pruned one, else a failure."""
    order = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}
    ranked = frame.assign(_order=frame["state"].map(order), _acc=frame["val/acc"].fillna(-1.0))
    ranked = ranked.sort_values(["_order", "_acc"], ascending=[True, False])
    best = ranked.groupby("method", sort=False).head(1).drop(columns=["_order", "_acc"])
    return best.sort_values("val/acc", ascending=False, na_position="last").reset_index(drop=True)


def interval_text(row, key: str = "val/acc") -> str:
    if math.isnan(row[key]):
        return "-"
    if math.isnan(row[f"{key}_lo"]):
        return f"{row[key]:.3f}"
    return f"{row[key]:.3f} [{row[f'{key}_lo']:.3f}, {row[f'{key}_hi']:.3f}]"


def format_table(frame: pd.DataFrame) -> str:
    """The terminal table: best trial per method, every method that ran."""
    best = best_per_method(frame)
    shown = pd.DataFrame(
        {
            "method": best["method"],
            "trial": best["trial"].map(lambda t: f"#{t}"),
            "state": [state_text(r) for _, r in best.iterrows()],
            "val acc [95% CI]": [interval_text(r) for _, r in best.iterrows()],
            "peak MB": best["mem/peak_mb"].map(_number("{:.0f}")),
            "est. MB": best["estimate/peak_mb"].map(_number("{:.0f}")),
            "train s": best["time/train_s"].map(_number("{:.1f}")),
            "trainable": best["params/trainable"].map(_number("{:,.0f}")),
            "": [
                " ".join(word for word, on in (("pareto", p), ("tied", t)) if on)
                for p, t in zip(best["pareto"], best["tied"], strict=True)
            ],
        }
    )
    return shown.to_string(index=False)


def state_text(row) -> str:
    """COMPLETE, PRUNED@step (PRUNED@step behind_best when that rule stopped it), PRUNED(reason)
    (oom, nan, over_budget), or FAIL(reason)."""
    if row["state"] == "PRUNED" and pd.notna(row.get("pruned_at_step")):
        return f"PRUNED@{int(row['pruned_at_step'])}{pruned_by_note(row.get('pruned_by'))}"
    if row["state"] == "PRUNED" and row["reason"] not in ("pruned", "complete"):
        return f"PRUNED({row['reason']})"
    if row["state"] == "FAIL":
        return f"FAIL({row['reason']})"
    return row["state"]


def _number(fmt: str):
    return lambda v: "-" if pd.isna(v) else fmt.format(v)
