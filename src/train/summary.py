"""The one-screen summary printed after a run."""

from __future__ import annotations

import math

ROWS = [
    (
        "accuracy",
        [
            ("val/acc", "val acc", "{:.4f}"),
            ("test/acc", "test acc", "{:.4f}"),
            ("val/perplexity", "val ppl", "{:.2f}"),
            ("test/perplexity", "test ppl", "{:.2f}"),
        ],
    ),
    (
        "memory",
        [
            ("mem/peak_mb", "peak MB", "{:.0f}"),
            ("mem/weights_mb", "weights MB", "{:.1f}"),
            ("mem/optimizer_mb", "optimizer MB", "{:.1f}"),
        ],
    ),
    (
        "time",
        [
            ("time/train_s", "train s", "{:.1f}"),
            ("time/step_ms", "step ms", "{:.1f}"),
            ("throughput/tokens_per_s", "tokens/s", "{:.0f}"),
        ],
    ),
    (
        "params",
        [
            ("params/trainable", "trainable", "{:,.0f}"),
            ("params/total", "total", "{:,.0f}"),
            ("params/trainable_pct", "trainable %", "{:.3f}"),
        ],
    ),
]


def format_summary(title: str, metrics: dict[str, float], run_id: str | None) -> str:
    lines = [f"== {title} " + "=" * max(0, 70 - len(title))]
    for group, cells in ROWS:
        parts = [
            f"{label} {_cell(metrics[key], fmt)}" for key, label, fmt in cells if key in metrics
        ]
        lines.append(f"  {group:<9}" + "   ".join(parts))
    if run_id:
        lines.append(f"  mlflow    run {run_id}  (make ui)")
    return "\n".join(lines)


def _cell(value: float, fmt: str) -> str:
    # NaN is "not measured" (step time needs batches past the 2 warm-up ones): say so, not nan.
    return "n/a" if isinstance(value, float) and math.isnan(value) else fmt.format(value)
