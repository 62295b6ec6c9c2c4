"""How a CPU run's resident peak grows with its length: the pre-flight estimate's heap term was
fitted on 8-step runs with every batch padded to data.max_length (bench/estimate.py; since
2026-12-08 on whole runs, --whole-run), while users run whole epochs with each batch padded to
its longest row (the default). Each row is a real
`train()` in a fresh process on the embedded MiniLM and Rotten Tomatoes; after every optimizer
step a callback reads the process's peak resident set (VmHWM) and glibc's own counters
(mallinfo2: bytes in use, and the arena's free bytes, which it keeps). The peak so far at step k
is VmHWM(k) minus the run's memory baseline (src/train/measure.py); the run's mem/peak_mb also
covers the validation at its end, and its own estimate is logged beside it.

    .venv/bin/python bench/heap_growth.py [--steps 94] [--only SUBSTRING,...] [--set methods]

--set methods runs every shipped MiniLM experiment, one as the default sweep's trials run (4
validations an epoch) and tiny-model rows instead, and prints for each the heap ratio its
plateau implies (what calibration.py's heap_ratio would have to be for the estimate to meet it).
Results: bench/results/heap_growth.json (heap_growth_methods.json); BENCHMARKS.md summarises
them.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
USERS_RUN = [
    "data.max_train_samples=3000",
    "data.max_eval_samples=64",
    "data.test_size=64",
    "trainer.max_epochs=1",
    "trainer.val_check_interval=1.0",  # no validation inside the measured steps
    "early_stopping.enabled=false",
    "logger=none",
    "checkpoint.enabled=false",
    "summary=false",
    "eval.forgetting=false",
    "trainer.enable_progress_bar=false",
]
LORA = ["+experiment=lora_r16"]
ROWS = [
    ("lora_r16 padded to its longest row", LORA, False),
    ("lora_r16 padded to max_length", [*LORA, "data.pad_to_max_length=true"], False),
    ("lora_r16 padded to its longest row, malloc_trim every step", LORA, True),
    ("full padded to its longest row", ["+experiment=full"], False),
]
MINILM = ("dora_r8", "freeze_top2", "full", "ia3", "lora_r16", "prefix", "prompt", "qlora_r8")
METHODS = [
    *((name, [f"+experiment={name}"], False) for name in MINILM),
    (
        "lora_r16 as a default sweep trial (validation 4x an epoch)",
        [*LORA, "trainer.val_check_interval=0.25", "data.max_eval_samples=256"],
        False,
    ),
    ("tiny_bert lora b32 s128", ["model=tiny_bert", "data.max_length=128"], False),
    ("tiny_bert full b64", ["model=tiny_bert", "adapter=full", "data.batch_size=64"], False),
    ("tiny_bert prompt b32", ["model=tiny_bert", "adapter=prompt"], False),
]
SETS = {"default": (ROWS, "heap_growth.json"), "methods": (METHODS, "heap_growth_methods.json")}
REPORTED_STEPS = (8, 16, 40, 60, 94)


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
            *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
        )
    ]


def one_row(overrides: list[str], trim: bool) -> dict:
    """In this (fresh) process: the run, and its heap after every optimizer step."""
    import lightning.pytorch as pl

    from src.train import compose_config, measure, train
    from src.train.allocator import trim_heap

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2

    class Probe(pl.Callback):
        def __init__(self):
            self.steps: list[dict] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trim:
                trim_heap()
            info = libc.mallinfo2()
            self.steps.append(
                {
                    "sequence": int(batch["input_ids"].shape[1]),
                    "hwm_mb": measure.peak_rss_mb(),
                    "in_use_mb": info.uordblks / 2**20,
                    "arena_free_mb": info.fordblks / 2**20,
                }
            )

    # The run's own memory baseline (the resident set before the model is built), as taken.
    baselines, take_baseline = [], measure.PeakMemory.baseline

    def baseline(self):
        take_baseline(self)
        baselines.append(self.baseline_mb)

    measure.PeakMemory.baseline = baseline
    probe = Probe()
    metrics = train(compose_config(overrides), callbacks=[probe])
    for step in probe.steps:
        step["peak_mb"] = step["hwm_mb"] - baselines[0]
    return {"metrics": metrics, "steps": probe.steps}


def measure_row(name: str, overrides: list[str], trim: bool, steps: int) -> dict:
    args = [*overrides, *USERS_RUN, f"trainer.max_steps={steps}"]
    done = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps({"overrides": args, "trim": trim})],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    for line in done.stdout.splitlines():
        if line.startswith("ROW "):
            return {"name": name, "overrides": args, **json.loads(line.removeprefix("ROW "))}
    raise RuntimeError(f"{name} failed:\n{done.stderr[-5000:]}")


def summary(row: dict) -> str:
    m, peaks = row["metrics"], [s["peak_mb"] for s in row["steps"]]
    at = ", ".join(f"{k}: {peaks[k - 1]:,.0f}" for k in REPORTED_STEPS if k <= len(peaks))
    return (
        f"{row['name']}: estimate {m['estimate/peak_mb']:,.0f} MB; peak after step {at}; "
        f"the run's (with its last validation) {m['mem/peak_mb']:,.0f} "
        f"({m['estimate/peak_mb'] / m['mem/peak_mb'] - 1:+.0%}); tensor peak "
        f"{m['mem/tensor_peak_mb']:,.0f}; heap ratio implied {implied_heap_ratio(row):.2f}; "
        f"step {m['time/step_ms']:,.0f} ms"
    )


def implied_heap_ratio(row: dict) -> float:
    """The heap_ratio (calibration.py) at which this row's estimate would equal its peak."""
    from src.train.estimate.calibration import OVERHEAD

    m, calib = row["metrics"], OVERHEAD["cpu"]
    beyond = m["mem/peak_mb"] - m["estimate/tensor_peak_mb"] - calib["fixed_mb"]
    return beyond / m["estimate/heap_mb"] if m.get("estimate/heap_mb") else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=94)
    parser.add_argument("--only", default="")
    parser.add_argument("--set", choices=sorted(SETS), default="default")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print("ROW " + json.dumps(one_row(spec["overrides"], spec["trim"])))
        return
    rows, file = SETS[args.set]
    results = []
    for name, overrides, trim in rows:
        if any(part in name for part in args.only.split(",")):
            results.append(measure_row(name, overrides, trim, args.steps))
            print(summary(results[-1]), flush=True)
    out = RESULTS / file
    out.write_text(
        json.dumps({"machine": platform.node(), "steps": args.steps, "rows": results}, indent=1)
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
