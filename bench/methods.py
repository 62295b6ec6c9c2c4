"""Accuracy / memory / time of fine-tuning methods on one model and data, one fresh process each
(so peak memory is per run). Results: bench/results/<name>.json and a markdown table on stdout.

    .venv/bin/python bench/methods.py --name minilm --experiments full,lora_r16,qlora_r8,prompt
    .venv/bin/python bench/methods.py --name smollm2 \\
        --experiments smollm2_lora_r16,smollm2_qlora_r8 \\
        --overrides data.max_train_samples=256 data.max_eval_samples=128 data.test_size=256
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = [
    "val/acc",
    "test/acc",
    "mem/peak_mb",
    "mem/weights_mb",
    "mem/weights_nonembed_mb",
    "mem/optimizer_mb",
    "time/train_s",
    "time/step_ms",
    "params/trainable",
    "train/steps",
]

CHILD = """
import json, sys
from src.train import compose_config, train
metrics = train(compose_config(sys.argv[1:]))
print("METRICS " + json.dumps(metrics))
"""


def run_one(experiment: str, overrides: list[str]) -> dict:
    args = [
        f"+experiment={experiment}",
        "logger=none",
        "checkpoint.enabled=false",
        "summary=false",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=ROOT, capture_output=True, text=True
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("METRICS ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{experiment} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads(lines[-1].removeprefix("METRICS "))
    return {
        "experiment": experiment,
        **{k: metrics.get(k) for k in KEYS},
        **{k: v for k, v in metrics.items() if k.startswith(("ptq/", "forget/"))},
    }


def table(rows: list[dict]) -> str:
    head = (
        "| experiment | val acc | test acc | peak MB | weights MB | non-emb weights MB "
        "| optimizer MB | train s | step ms | trainable |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['experiment']} | {r['val/acc']:.3f} | {r['test/acc']:.3f} "
            f"| {r['mem/peak_mb']:.0f} | "
            f"{r['mem/weights_mb']:.1f} | {r['mem/weights_nonembed_mb']:.1f} "
            f"| {r['mem/optimizer_mb']:.1f} | "
            f"{r['time/train_s']:.0f} | {r['time/step_ms']:.0f} | {int(r['params/trainable']):,} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--experiments", required=True)
    parser.add_argument("--overrides", nargs="*", default=[])
    args = parser.parse_args()
    rows = []
    for experiment in args.experiments.split(","):
        rows.append(run_one(experiment, args.overrides))
        print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "bench" / "results" / f"methods_{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "overrides": args.overrides,
                "machine": platform.machine(),
                "cpus": len(__import__("os").sched_getaffinity(0)),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(table(rows))


if __name__ == "__main__":
    main()
