"""Framework overhead: steady-state step time of src.train vs a minimal PyTorch + PEFT loop.

Same model (embedded MiniLM), data, batch, sequence length (every batch padded to max_length),
method, optimizer, scheduler and gradient clipping. Each measurement is the median wall time
between consecutive optimizer steps after warm-up; the two sides alternate, REPEATS times, and
the ratio uses the median over repeats. Results: bench/results/overhead.json.

    .venv/bin/python bench/overhead.py [--steps 30] [--repeats 2] [--methods full,lora_r16,qlora_r8]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from transformers import get_scheduler

from src.train import build_datamodule, compose_config, models, prepare_inputs, train
from src.train.adapters import apply_adapter
from src.train.optimizer import build_optimizer, warmup_steps

WARMUP = 3


def config(method: str, steps: int):
    return compose_config(
        [
            f"+experiment={method}",
            "logger=none",
            "checkpoint.enabled=false",
            "early_stopping.enabled=false",
            "summary=false",
            "trainer.enable_progress_bar=false",
            f"trainer.max_steps={steps}",
            "trainer.max_epochs=-1",
            "trainer.val_check_interval=100000",
            "trainer.check_val_every_n_epoch=null",
            "data.pad_to_max_length=true",
            "data.max_train_samples=2000",
            "data.max_eval_samples=64",
            "data.test_size=64",
        ]
    )


def framework_step_ms(cfg) -> float:
    return train(cfg)["time/step_ms"]


def hand_loop_step_ms(cfg, steps: int) -> float:
    """The loop a careful engineer writes by hand around the same PEFT model."""
    inputs = prepare_inputs(cfg)
    torch.manual_seed(cfg.seed)
    model = models.load_model(
        cfg, inputs.model_path, len(inputs.labels), inputs.tokenizer.pad_token_id
    )
    model = apply_adapter(model, cfg).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg.optim, model)  # the run's optimizer (fused AdamW)
    scheduler = get_scheduler(cfg.optim.scheduler, optimizer, warmup_steps(cfg.optim, steps), steps)
    loader = build_datamodule(cfg, inputs).train_dataloader()
    stamps = []
    batches = iter(loader)
    for _ in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.trainer.gradient_clip_val)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    intervals = [b - a for a, b in zip(stamps[WARMUP:], stamps[WARMUP + 1 :], strict=False)]
    return 1000 * statistics.median(intervals)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", default="full,lora_r16,qlora_r8")
    parser.add_argument("--out", default="bench/results/overhead.json")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    for method in args.methods.split(","):
        cfg = config(method, args.steps)
        hand, ours = [], []
        for _ in range(args.repeats):
            hand.append(hand_loop_step_ms(cfg, args.steps))
            ours.append(framework_step_ms(cfg))
        row = {
            "method": method,
            "hand_step_ms": statistics.median(hand),
            "framework_step_ms": statistics.median(ours),
            "hand_runs": hand,
            "framework_runs": ours,
        }
        row["ratio"] = row["framework_step_ms"] / row["hand_step_ms"]
        rows.append(row)
        print(
            f"{method:10s} hand {row['hand_step_ms']:8.1f} ms  "
            f"src.train {row['framework_step_ms']:8.1f} ms"
            f"  ratio {row['ratio']:.3f}",
            flush=True,
        )
    result = {
        "benchmark": "overhead",
        "steps": args.steps,
        "warmup_steps": WARMUP,
        "repeats": args.repeats,
        "batch_size": cfg.data.batch_size,
        "seq_len": cfg.data.max_length,
        "model": "minilm",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "rows": rows,
        "target_ratio": 1.05,
        "max_ratio": max(r["ratio"] for r in rows),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}; worst ratio {result['max_ratio']:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
