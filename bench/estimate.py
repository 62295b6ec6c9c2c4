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
beyond the tensor peak as fixed + ratio x heap-served bytes, another ratio under activation
checkpointing; Lightning's fixed work per step) on the tiny-model rows only, rewrites that file,
and reports every row with the new numbers, so the shipped experiments' rows are out of sample;
it first drops the cached device timings, so every one is taken again in this run. Results:
bench/results/estimate.json.

    .venv/bin/python bench/estimate.py [--calibrate] [--only SUBSTRING,...] [--skip SUBSTRING,...]
        [--steps 8] [--whole-run]

Under a fixed glibc mmap threshold (`MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python
bench/estimate.py --only ...`) the rows run with it and go to estimate_mmap<bytes>.json.

--whole-run runs each row as users run it: one epoch of up to 3,000 training rows (at most 100
steps) with every batch padded to its own longest row (the default), validated once at its end;
the run logs its estimate at its longest row (memory) and at a typical batch's (step time). The
resident peak keeps growing for tens of steps as longer batches arrive (bench/heap_growth.py),
so this is the figure the estimate is for, and --whole-run --calibrate fits it; results:
estimate_whole_run.json.

--as-run runs the rows as a user's `python -m src.train` does (an MLflow run in a temporary
store, checkpoints saved, early stopping, the summary) instead of with logging, checkpoints and
summary off, so the figures every run logs are checked as users see them; results:
estimate_as_run.json.

On a GPU (`--device cuda`): the same rows with trainer=gpu plus rows at the precisions people use
there, measured against torch.cuda.max_memory_allocated (results: estimate_cuda.json); with
`--large CONFIG_DIR` also LoRA and QLoRA r16 of that architecture at batch 4 x 2048, with and
without activation checkpointing, on random-init weights written there first (memory and time
do not depend on weight values). Where the asset packages cannot be installed, run
bench/standin_assets.py first.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = {
    "cpu": ROOT / "bench" / "results" / "estimate.json",
    "cuda": ROOT / "bench" / "results" / "estimate_cuda.json",
}
MEASURED_KINDS = ("mem", "time", "estimate")
CALIBRATION = ROOT / "src" / "train" / "estimate" / "calibration.py"

SMALL_DATA = [
    "data.max_train_samples=256",
    "data.max_eval_samples=32",
    "data.test_size=64",
    "data.pad_to_max_length=true",
]
WHOLE_RUN = [
    "data.max_train_samples=3000",
    "data.max_eval_samples=64",
    "data.test_size=64",
    "trainer.max_epochs=1",
    "trainer.max_steps=100",  # MiniLM's batch 32: the whole epoch, 94 steps
    "trainer.val_check_interval=1.0",
]


def short_run(steps: int) -> list[str]:
    """A few steps of a small split, every batch padded to data.max_length."""
    return [*SMALL_DATA, f"trainer.max_steps={steps}", "trainer.max_epochs=-1"]


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
CHECKPOINTING = "activation_checkpointing=true"
# Activation checkpointing's heap ratio is fitted on these (calibration.py).
TINY += [
    (f"{name} checkpointing", [*overrides, CHECKPOINTING])
    for name, overrides in TINY
    if name in ("tiny_bert lora b32 s128", "tiny_bert full b64 s64", "tiny_llama sft full b16 s128")
]


def shipped() -> list[tuple[str, list[str]]]:
    names = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    return [(name, [f"+experiment={name}"]) for name in names]


# What GPU users run that the CPU rows do not: bf16 weights or autocast, longer sequences.
GPU_ONLY = [
    (
        "full bf16-mixed b32 s128",
        ["+experiment=full", "precision=bf16-mixed", "data.batch_size=32", "data.max_length=128"],
    ),
    (
        "smollm2_lora_r16 bf16-true b16 s256",
        [
            "+experiment=smollm2_lora_r16",
            "precision=bf16-true",
            "data.batch_size=16",
            "data.max_length=256",
        ],
    ),
    (
        "smollm2_qlora_r8 bf16-mixed b16 s256",
        [
            "+experiment=smollm2_qlora_r8",
            "precision=bf16-mixed",
            "data.batch_size=16",
            "data.max_length=256",
        ],
    ),
    (
        "smollm2_sft_lora bf16-true b8 s512",
        [
            "+experiment=smollm2_sft_lora",
            "precision=bf16-true",
            "data.batch_size=8",
            "data.max_length=512",
        ],
    ),
]


def large_rows(config_dir: str) -> list[tuple[str, list[str]]]:
    """LoRA (bf16 weights) and QLoRA (nf4 base, bf16 autocast) r16 at sequence 2048: batch 4 with
    activation checkpointing, and without it at the largest batch the estimate fits in 80 GB.
    Evaluation runs at the training batch (at the default 64 rows it would need ~200 GB, which
    the estimate's evaluation line now says; the first GPU run went out of memory there)."""
    base = [
        "model=hf",
        f"model.name_or_path={config_dir}",
        "task=generation",
        "adapter=lora",
        "adapter.peft.r=16",
        "data.max_length=2048",
    ]
    methods = {
        "lora r16 bf16-true": ["quant=none", "precision=bf16-true"],
        "qlora r16 bf16-mixed": ["quant=nf4", "precision=bf16-mixed"],
    }
    # (method, activation checkpointing, batch): QLoRA without checkpointing needs ~93 GB at 4.
    runs = [
        ("lora r16 bf16-true", True, 4),
        ("qlora r16 bf16-mixed", True, 4),
        ("lora r16 bf16-true", False, 4),
        ("qlora r16 bf16-mixed", False, 2),
    ]
    name = Path(config_dir).name
    return [
        (
            f"{name} {method}{' checkpointing' if ckpt else ''} b{batch} s2048",
            [
                *base,
                *methods[method],
                f"activation_checkpointing={str(ckpt).lower()}",
                f"data.batch_size={batch}",
                f"data.eval_batch_size={batch}",
            ],
        )
        for method, ckpt, batch in runs
    ]


def prepare_large(config_dir: str) -> None:
    """Random-init bf16 weights (built on the GPU: seconds, not minutes) and SmolLM2's tokenizer
    (any will do: batches are padded to data.max_length) beside the config, once."""
    folder = Path(config_dir)
    if not any(folder.glob("*.safetensors")):
        code = (
            "import sys, torch; from transformers import AutoConfig, AutoModelForCausalLM;"
            "torch.manual_seed(0);"
            "cfg = AutoConfig.from_pretrained(sys.argv[1]); torch.set_default_device('cuda');"
            "m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16);"
            "m.save_pretrained(sys.argv[1])"
        )
        subprocess.run([sys.executable, "-c", code, config_dir], check=True)
    if not (folder / "tokenizer.json").exists():
        from src.train import compose_config
        from src.train.models import load_tokenizer, resolve_source

        tokenizer = load_tokenizer(resolve_source(compose_config(["model=smollm2"]).model))
        tokenizer.save_pretrained(folder)


def rows(device: str = "cpu", large: str | None = None) -> list[tuple[str, list[str], bool]]:
    """(name, overrides, used for calibration)."""
    varied = [
        ("lora_r16 b8 s128", ["+experiment=lora_r16", "data.batch_size=8", "data.max_length=128"]),
        ("full b64 s32", ["+experiment=full", "data.batch_size=64", "data.max_length=32"]),
        *(
            (f"{name} checkpointing", [f"+experiment={name}", CHECKPOINTING])
            for name in ("qlora_r8", "lora_r16", "full", "smollm2_lora_r16")
        ),
    ]
    if device == "cuda":
        varied += GPU_ONLY + (large_rows(large) if large else [])
    return [(n, o, True) for n, o in TINY] + [(n, o, False) for n, o in shipped() + varied]


# What a measured row leaves out by default: nothing the estimate models, only work around fit.
STRIPPED = [
    "logger=none",
    "summary=false",
    "checkpoint.enabled=false",
    "early_stopping.enabled=false",
]


def as_run(scratch: Path) -> list[str]:
    """A user's run instead (--as-run): MLflow tracking and checkpoints, kept out of the repo."""
    return [f"paths.root={scratch}", f"logger.tracking_uri=sqlite:///{scratch}/mlflow.db"]


def run_row(overrides: list[str], length: list[str], around_fit: list[str] = STRIPPED) -> dict:
    """One measured run in a fresh interpreter (length: its data and steps); its metrics."""
    args = [
        *overrides,
        *length,
        *around_fit,
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
    raise RuntimeError(f"run failed ({' '.join(overrides)}):\n{done.stderr[-5000:]}")


def progress_line(name: str, metrics: dict, row: dict) -> str:
    modelled = row["matmul_ms"] + row["other_ms"]
    return (
        f"{name:34} measured {metrics['mem/peak_mb']:8.1f} MB, tensors "
        f"{metrics['mem/tensor_peak_mb']:8.1f} (est {metrics['estimate/tensor_peak_mb']:8.1f}), "
        f"step {metrics['time/step_ms']:7.1f} ms (modelled {modelled:7.1f})"
    )


def fit_memory(rows: list[dict], device: str) -> dict:
    """Least squares of (resident - estimated tensor peak) = fixed + heap_ratio x estimated
    heap-served MB over the given rows without activation checkpointing, then of the same with
    checkpointing_heap_ratio over those with it, through the same fixed part; on CPU only rows
    whose peak is a training step's (the heap-served bytes are the step's: where validation's
    tensors are bigger, the excess over them says little about the step's heap). On a GPU the
    measured peak is the caching allocator's count of allocated blocks: beyond the tensors only
    fixed workspaces (cuBLAS'), their median."""
    if device == "cuda":
        extra = statistics.median(r["mem/peak_mb"] - r["estimate/tensor_peak_mb"] for r in rows)
        return {"fixed_mb": round(extra, 1), "heap_ratio": 0.0, "checkpointing_heap_ratio": 0.0}
    rows = [r for r in rows if needed_tensors(r) == r["estimate/tensor_peak_mb"]]
    plain = [r for r in rows if not checkpointing(r)]
    xs = [r["estimate/heap_mb"] for r in plain]
    ys = [_beyond_tensors(r) for r in plain]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    ratio = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var)
    fixed = round(max(0.0, mean_y - ratio * mean_x), 1)
    # Checkpointing changes how much the heap retains, not the fixed part: a line through it.
    recomputing = [r for r in rows if checkpointing(r)]
    xs = [r["estimate/heap_mb"] for r in recomputing]
    ys = [_beyond_tensors(r) - fixed for r in recomputing]
    ckpt_ratio = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
    return {
        "fixed_mb": fixed,
        "heap_ratio": round(ratio, 3),
        "checkpointing_heap_ratio": round(max(0.0, ckpt_ratio), 3),
    }


def _beyond_tensors(row: dict) -> float:
    return row["mem/peak_mb"] - needed_tensors(row)


def needed_tensors(row: dict) -> float:
    """The tensor peak of the run the row measured: its training step's or, where bigger, its
    validation's (a causal LM validated on a larger batch: the logits; whole runs validate
    64 rows in one batch). Rows stored before the latter was kept: the step's."""
    step = row["estimate/tensor_peak_mb"]
    return max(step, row.get("estimate/eval_tensor_peak_mb", step))


def checkpointing(row: dict) -> bool:
    return CHECKPOINTING in row["overrides"]


def fit_time(rows: list[dict], device: str) -> dict:
    """measured step = matmuls + other_scale x (the other modelled parts) + step_fixed_ms, by
    least squares of the log ratio over the given rows (a grid: two numbers). On a GPU only
    step_fixed_ms (Lightning's work per step on the host): a tiny model's GPU step is Python and
    kernel-launch time, and a scale fitted to it over-counts bigger models (on an H200 x1.85
    took SmolLM2's rows from +7% to +77%; on an H100 x1.5 doubled the MiniLM rows' errors)."""
    scales = [s / 20 for s in range(10, 81)] if device == "cpu" else [1.0]

    def loss(scale: float, fixed: float) -> float:
        return sum(
            math.log(r["time/step_ms"] / (r["matmul_ms"] + scale * r["other_ms"] + fixed)) ** 2
            for r in rows
        )

    grid = [(s, f / 2) for s in scales for f in range(0, 101)]
    scale, fixed = min(grid, key=lambda g: loss(*g))
    return {"other_scale": scale, "step_fixed_ms": fixed}


def memory_parts(row: dict) -> dict:
    """The row's memory estimate made again here (no device timings: any machine can)."""
    from src.train.estimate import estimate

    est = estimate(row_config(row), _logged_sequence(row), timed=False)
    return {
        "estimate/tensor_peak_mb": est.tensor_peak_mb,
        "estimate/eval_tensor_peak_mb": est.eval_tensor_peak_mb,
        "estimate/heap_mb": est.heap_mb,
    }


def row_config(row: dict):
    from src.train import compose_config

    return compose_config([*row["overrides"], *row.get("length", SMALL_DATA)])


def _logged_sequence(row: dict, kind: str = "sequence") -> int | None:
    """The longest row (kind "sequence") or typical batch's row ("step_sequence") the run's own
    estimate was made at (rows stored before it was logged: None, data.max_length, which their
    padded batches had)."""
    key = f"estimate/{kind}"
    return int(row[key]) if key in row else None


def raw_time_parts(row: dict, device: str) -> dict:
    """The row's modelled time parts without calibration (same device timings as its run)."""
    from src.train.estimate import estimate
    from src.train.estimate.calibration import OVERHEAD

    saved = dict(OVERHEAD[device])
    OVERHEAD[device].update(other_scale=1.0, step_fixed_ms=0.0)
    try:
        step_sequence = _logged_sequence(row, "step_sequence")
        est = estimate(row_config(row), _logged_sequence(row), step_sequence=step_sequence)
    finally:
        OVERHEAD[device].update(saved)
    matmul = est.time_parts_ms["matmuls"]
    other = sum(est.time_parts_ms.values()) - matmul
    # Every part kept too, so a GPU's rows can be refitted elsewhere (--refit) under another way
    # of combining them (the device timings stay on the machine that took them).
    return {
        "matmul_ms": matmul,
        "other_ms": other,
        "time_parts_ms": est.time_parts_ms,
        "estimate/heap_mb": est.heap_mb,
        "estimate/eval_tensor_peak_mb": est.eval_tensor_peak_mb,
    }


def write_calibration(device: str, fitted: dict) -> None:
    from src.train.estimate.calibration import OVERHEAD

    text = CALIBRATION.read_text()
    start = text.index("OVERHEAD = {")
    OVERHEAD[device] = fitted
    body = "".join(
        f'    "{name}": {{\n'
        + "".join(f'        "{k}": {v!r},\n' for k, v in numbers.items())
        + "    },\n"
        for name, numbers in OVERHEAD.items()
    )
    CALIBRATION.write_text(text[:start] + "OVERHEAD = {\n" + body + "}\n")


def apply(row: dict, calib: dict) -> dict:
    from src.train.estimate.calibration import overhead_mb

    tensor = row["estimate/tensor_peak_mb"]
    peak = needed_tensors(row) + overhead_mb(calib, row["estimate/heap_mb"], checkpointing(row))
    step = row["matmul_ms"] + calib["other_scale"] * row["other_ms"] + calib["step_fixed_ms"]
    return {
        **row,
        "estimate_peak_mb": peak,
        "estimate_step_ms": step,
        "peak_error": peak / row["mem/peak_mb"] - 1,
        "tensor_error": tensor / row["mem/tensor_peak_mb"] - 1,
        "step_error": step / row["time/step_ms"] - 1,
    }


def markdown(table: list[dict], device: str) -> str:
    """The BENCHMARKS.md table: measured vs estimated, per row."""
    peak = "resident MB" if device == "cpu" else "allocated MB"
    lines = [
        f"| row | {peak} | est. | err | tensor MB | est. | err | step ms | est. | err |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        mark = " (calibration)" if r["calibration_row"] else ""
        lines.append(
            f"| {r['name']}{mark} | {r['mem/peak_mb']:,.0f} | {r['estimate_peak_mb']:,.0f} | "
            f"{r['peak_error']:+.0%} | {r['mem/tensor_peak_mb']:,.1f} | "
            f"{r['estimate/tensor_peak_mb']:,.1f} | {r['tensor_error']:+.1%} | "
            f"{r['time/step_ms']:,.0f} | {r['estimate_step_ms']:,.0f} | {r['step_error']:+.0%} |"
        )
    return "\n".join(lines)


def measure(
    only: str,
    length: list[str],
    device: str,
    large: str | None,
    around_fit: list[str] = STRIPPED,
    skip: str = "",
) -> list[dict]:
    measured = []
    gpu = ["trainer=gpu"] if device == "cuda" else []
    for name, overrides, calibrating in rows(device, large):
        if not any(part in name for part in only.split(",")):
            continue
        if skip and any(part in name for part in skip.split(",")):
            continue
        try:
            metrics = run_row([*overrides, *gpu], length, around_fit)
        except RuntimeError as error:  # one row's failure (an OOM, say) must not lose the rest
            print(f"{name}: FAILED\n{error}", flush=True)
            continue
        row = {
            "name": name,
            "overrides": [*overrides, *gpu],
            "calibration_row": calibrating,
            "length": length,
        }
        row.update({k: v for k, v in metrics.items() if k.split("/")[0] in MEASURED_KINDS})
        row.update(raw_time_parts(row, device))
        measured.append(row)
        print(progress_line(name, metrics, row), flush=True)
        print("ROW " + json.dumps(row), flush=True)  # a run cut short keeps what it measured
    return measured


def forget_device_timings(device: str) -> None:
    """A calibration takes every device timing again in its own quiet run: the cache keeps each
    shape's first timing for good, and on 2026-12-05 stale ones (cause unknown: a busy moment its
    noise check missed, or a slower day) made the tiny causal LM's matmuls and large blocks
    1.7-2x slower than a fresh timing, which the fit then absorbed into the wrong constants."""
    from src.train import compose_config
    from src.train.estimate.device import DeviceSpeed

    DeviceSpeed(device, compose_config([]).paths.cache_dir).path.unlink(missing_ok=True)


def machine(device: str) -> dict:
    info = {"cpu": platform.processor() or platform.machine()}
    if device == "cuda":
        import torch

        info.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--refit", action="store_true", help="re-fit the stored rows, run none")
    parser.add_argument("--only", default="", help="comma-separated parts of row names")
    parser.add_argument("--skip", default="", help="comma-separated parts of row names")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--large", help="folder with a causal LM's config.json (cuda only)")
    parser.add_argument("--as-run", action="store_true", help="with tracking and checkpoints")
    parser.add_argument("--whole-run", action="store_true", help="one epoch, as users run")
    args = parser.parse_args()
    from src.train.estimate.calibration import OVERHEAD

    results = RESULTS[args.device]
    from src.train import allocator

    if args.device == "cpu" and allocator.threshold_is_fixed():
        # MALLOC_MMAP_THRESHOLD_ fixed (inherited by every row's run): a table of its own; the
        # calibration is fitted under glibc's default only.
        if args.calibrate or args.refit:
            parser.error("--calibrate/--refit fit glibc's default: unset MALLOC_MMAP_THRESHOLD_")
        results = results.with_name(f"estimate_mmap{allocator.HEAP_BLOCK_MAX}.json")
    around_fit = STRIPPED
    if args.as_run:
        if args.calibrate or args.refit:
            parser.error("--as-run checks the calibration; it fits nothing")
        results = results.with_name(results.stem + "_as_run.json")
        around_fit = as_run(Path(tempfile.mkdtemp(prefix="estimate-as-run-")))
    length = short_run(args.steps)
    if args.whole_run:
        if args.as_run:
            parser.error("--whole-run and --as-run are separate tables: pick one")
        results, length = results.with_name(results.stem + "_whole_run.json"), WHOLE_RUN
    where = machine(args.device) if not args.refit else None
    if args.refit:
        stored = json.loads(results.read_text())
        measured, where = stored["rows"], stored["machine"]
        for row in measured:  # cuda rows keep the time parts measured on their GPU
            timed = args.device == "cpu"
            row.update(raw_time_parts(row, args.device) if timed else memory_parts(row))
    else:
        if args.calibrate:
            forget_device_timings(args.device)
        if args.large:
            prepare_large(args.large)
        measured = measure(args.only, length, args.device, args.large, around_fit, args.skip)
        if (args.only or args.skip) and results.exists():  # rows not run again stay as they were
            fresh = {r["name"] for r in measured}
            kept = [r for r in json.loads(results.read_text())["rows"] if r["name"] not in fresh]
            measured = kept + measured
    calib = dict(OVERHEAD[args.device])
    if args.calibrate or args.refit:
        tiny = [r for r in measured if r["calibration_row"]]
        calib = {**fit_memory(tiny, args.device), **fit_time(tiny, args.device)}
        write_calibration(args.device, calib)
    table = [apply(r, calib) for r in measured]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(
        json.dumps(
            {
                "benchmark": "estimate",
                "device": args.device,
                "length": length,
                "calibration": calib,
                "machine": where,
                "rows": table,
            },
            indent=2,
        )
    )
    print(markdown(table, args.device))
    for r in table:
        print(
            f"{r['name']:34} peak {r['mem/peak_mb']:8.1f} est {r['estimate_peak_mb']:8.1f} "
            f"({r['peak_error']:+.0%})  tensor {r['tensor_error']:+.1%}  step "
            f"{r['time/step_ms']:7.1f} est {r['estimate_step_ms']:7.1f} ({r['step_error']:+.0%})"
        )


if __name__ == "__main__":
    main()
