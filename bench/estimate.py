"""Pre-flight estimates against measurements: every shipped experiment and tiny models, batch and
sequence varied. Each row is a real `train()` run in a fresh process (so resident memory starts
clean) for a few optimizer steps, every batch padded to data.max_length (the estimate's
sequence); the run logs its own estimate next to what it measured:

  mem/peak_mb         peak resident memory during fit minus the resident set before the model
                      was built (src/train/measure.py): weights, gradients, optimizer state,
                      activations, allocator slack and library workspaces
  mem/tensor_peak_mb  exact peak of live tensor bytes over the first 3 training steps
  time/step_ms        median wall time between optimizer steps after 2 warm-up steps

--calibrate fits what tensors cannot show (src/train/estimate/calibration.py: resident memory
beyond the tensor peak as fixed + ratio x heap-served bytes; Lightning's fixed work per step) on
the tiny-model rows only, rewrites that file, and reports every row with the new numbers, so the
shipped experiments' rows are out of sample. Results: bench/results/estimate.json.

    .venv/bin/python bench/estimate.py [--calibrate] [--only SUBSTRING] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "estimate.json"
MEASURED_KINDS = ("mem", "time", "estimate")
CALIBRATION = ROOT / "src" / "train" / "estimate" / "calibration.py"

SMALL_DATA = [
    "data.max_train_samples=256",
    "data.max_eval_samples=32",
    "data.test_size=64",
    "data.pad_to_max_length=true",
]
TINY = [
    ("tiny_bert lora b8 s32", ["model=tiny_bert", "data.batch_size=8", "data.max_length=32"]),
    ("tiny_bert lora b32 s128", ["model=tiny_bert", "data.batch_size=32", "data.max_length=128"]),
    ("tiny_bert full b64 s64", ["model=tiny_bert", "adapter=full", "data.batch_size=64"]),
    ("tiny_bert lora nf4 b16", ["model=tiny_bert", "quant=nf4", "data.batch_size=16"]),
    ("tiny_bert prompt b32", ["model=tiny_bert", "adapter=prompt"]),
    ("tiny_llama sft lora b8 s64", ["model=tiny_llama", "task=generation", "data.batch_size=8"]),
    (
        "tiny_llama sft full b16 s128",
        [
            "model=tiny_llama",
            "task=generation",
            "adapter=full",
            "data.batch_size=16",
            "data.max_length=128",
        ],
    ),
    (
        "tiny_llama sft prefix int8 b8",
        [
            "model=tiny_llama",
            "task=generation",
            "adapter=prefix",
            "quant=int8",
            "data.batch_size=8",
        ],
    ),
]


def shipped() -> list[tuple[str, list[str]]]:
    names = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    return [(name, [f"+experiment={name}"]) for name in names]


def rows() -> list[tuple[str, list[str], bool]]:
    """(name, overrides, used for calibration)."""
    varied = [
        ("lora_r16 b8 s128", ["+experiment=lora_r16", "data.batch_size=8", "data.max_length=128"]),
        ("full b64 s32", ["+experiment=full", "data.batch_size=64", "data.max_length=32"]),
        ("qlora_r8 checkpointing", ["+experiment=qlora_r8", "activation_checkpointing=true"]),
    ]
    return [(n, o, True) for n, o in TINY] + [(n, o, False) for n, o in shipped() + varied]


def run_row(overrides: list[str], steps: int) -> dict:
    """One measured run in a fresh interpreter; returns its metrics."""
    args = [
        *overrides,
        *SMALL_DATA,
        f"trainer.max_steps={steps}",
        "trainer.max_epochs=-1",
        "logger=none",
        "summary=false",
        "checkpoint.enabled=false",
        "early_stopping.enabled=false",
        "trainer.enable_progress_bar=false",
        "eval.forgetting=false",
    ]
    code = (
        "import json, sys; from src.train.quiet import quiet_libraries; quiet_libraries();"
        "from src.train import compose_config, train;"
        "m = train(compose_config(sys.argv[1:])); print('METRICS ' + json.dumps(m))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True
    )
    for line in done.stdout.splitlines():
        if line.startswith("METRICS "):
            return json.loads(line.removeprefix("METRICS "))
    raise RuntimeError(f"run failed ({' '.join(overrides)}):\n{done.stderr[-2000:]}")


def progress_line(name: str, metrics: dict, row: dict) -> str:
    return (
        f"{name:34} measured {metrics['mem/peak_mb']:8.1f} MB, tensors "
        f"{metrics['mem/tensor_peak_mb']:8.1f} (est {metrics['estimate/tensor_peak_mb']:8.1f}), "
        f"step {metrics['time/step_ms']:7.1f} ms (modelled {row['modelled_step_ms']:7.1f})"
    )


def fit_overhead(rows: list[dict]) -> dict:
    """Least squares of (resident - estimated tensor peak) = fixed + heap_ratio x estimated
    heap-served MB, and the median of (measured - modelled) step time, over the given rows."""
    xs = [r["estimate/heap_mb"] for r in rows]
    ys = [r["mem/peak_mb"] - r["estimate/tensor_peak_mb"] for r in rows]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    ratio = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var)
    fixed = max(0.0, mean_y - ratio * mean_x)
    step = max(0.0, statistics.median(r["time/step_ms"] - r["modelled_step_ms"] for r in rows))
    return {
        "fixed_mb": round(fixed, 1),
        "heap_ratio": round(ratio, 3),
        "step_fixed_ms": round(step, 1),
    }


def write_calibration(cpu: dict) -> None:
    from src.train.estimate.calibration import OVERHEAD

    text = CALIBRATION.read_text()
    start = text.index("OVERHEAD = {")
    OVERHEAD["cpu"] = cpu
    body = "OVERHEAD = {\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in OVERHEAD.items()) + "}\n"
    CALIBRATION.write_text(text[:start] + body.replace("'", '"'))


def apply(row: dict, calib: dict) -> dict:
    tensor = row["estimate/tensor_peak_mb"]
    peak = tensor + calib["fixed_mb"] + calib["heap_ratio"] * row["estimate/heap_mb"]
    step = row["modelled_step_ms"] + calib["step_fixed_ms"]
    return {
        **row,
        "estimate_peak_mb": peak,
        "estimate_step_ms": step,
        "peak_error": peak / row["mem/peak_mb"] - 1,
        "tensor_error": tensor / row["mem/tensor_peak_mb"] - 1,
        "step_error": step / row["time/step_ms"] - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    from src.train.estimate.calibration import OVERHEAD

    measured = []
    for name, overrides, calibrating in rows():
        if args.only not in name:
            continue
        metrics = run_row(overrides, args.steps)
        used = OVERHEAD["cpu"]["step_fixed_ms"]  # the run's estimate included it: take it out
        measured.append(
            {
                "name": name,
                "overrides": overrides,
                "calibration_row": calibrating,
                "modelled_step_ms": metrics["estimate/step_ms"] - used,
                **{
                    k: v
                    for k, v in metrics.items()
                    if k.split("/")[0] in ("mem", "time", "estimate")
                },
            }
        )
        print(progress_line(name, metrics, measured[-1]), flush=True)
    calib = OVERHEAD["cpu"]
    if args.calibrate:
        calib = fit_overhead([r for r in measured if r["calibration_row"]])
        write_calibration(calib)
    table = [apply(r, calib) for r in measured]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "estimate",
                "steps": args.steps,
                "calibration": calib,
                "machine": {"cpu": platform.processor() or platform.machine()},
                "rows": table,
            },
            indent=2,
        )
    )
    for r in table:
        print(
            f"{r['name']:34} peak {r['mem/peak_mb']:8.1f} est {r['estimate_peak_mb']:8.1f} "
            f"({r['peak_error']:+.0%})  tensor {r['tensor_error']:+.1%}  step "
            f"{r['time/step_ms']:7.1f} est {r['estimate_step_ms']:7.1f} ({r['step_error']:+.0%})"
        )


if __name__ == "__main__":
    main()
