"""The estimate as the user reads it: a sum, each line saying what it counts."""

from __future__ import annotations

from src.train import allocator
from src.train.estimate.estimator import Estimate

SLACK = {
    "cpu": "freed heap memory malloc keeps (calibration.py)",
    "cuda": "library workspaces (cuBLAS'), measured on an H100 and an H200",
}
# Under glibc's default the heap's retention is a quarter to a third of most shipped experiments'
# resident peak (MiniLM LoRA r16: 240 of 729 MB); from that share on the estimate says how a
# fixed mmap threshold gives it back (BENCHMARKS.md measures both).
HINT_FROM_SHARE = 0.25
FIXED_THRESHOLD_HINT = "MALLOC_MMAP_THRESHOLD_=131072 gives most back, at ~1.5x step time (README)"


def format_estimate(est: Estimate, title: str, sequence_note: str) -> str:
    tokens = f" + {est.virtual_tokens} virtual tokens" if est.virtual_tokens else ""
    rows = [
        ("weights", est.weights_mb, f"{_count(est.params_total)} params, as stored"),
        ("gradients", est.gradients_mb, f"trainable only: {_count(est.params_trainable)}"),
        ("optimizer state", est.optimizer_mb, "created at the first step"),
        ("activations", est.activations_mb, f"kept for backward; logits {est.logits_mb:,.1f} MB"),
        ("step temporaries", est.temporaries_mb, "the rest of the tensor peak"),
    ]
    lines = [
        title,
        f"  batch {est.batch_size} x sequence {est.sequence}{tokens} ({sequence_note})",
        *(f"  {name:<22}{mb:>12,.1f} MB   {note}" for name, mb, note in rows),
        f"  {'= tensor peak':<22}{est.tensor_peak_mb:>12,.1f} MB",
        f"  {'beyond tensors':<22}{est.overhead_mb:>12,.1f} MB   {_slack(est.device)}",
        *_fixed_threshold_hint(est),
        f"  {'= expected peak':<22}{est.peak_mb:>12,.1f} MB",
        f"  {'evaluation pass':<22}{est.eval_peak_mb:>12,.1f} MB   batch {est.eval_batch_size} "
        "(data.eval_batch_size), no grad, between steps",
    ]
    if est.eval_peak_mb > est.peak_mb:
        lines.append(
            "  the evaluation pass needs more than training: lower data.eval_batch_size to "
            "bring it under the training peak"
        )
    if est.time_parts_ms is None:
        lines.append(f"step time: not estimated (no {est.device} on this machine to measure)")
    else:
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in est.time_parts_ms.items())
        lines.append(
            f"step time: {est.step_ms:,.0f} ms ({est.gflops:,.2f} GFLOP; {parts} ms) "
            f"on {est.device_label}"
        )
    return "\n".join(lines)


def _slack(device: str) -> str:
    if device == "cpu" and allocator.threshold_is_fixed():
        kb = allocator.HEAP_BLOCK_MAX // 1024
        return f"malloc's own: blocks from {kb:,} kB are mapped and given back (fixed threshold)"
    return SLACK[device]


def _fixed_threshold_hint(est: Estimate) -> list[str]:
    """Where glibc's heap retention is a large part of a CPU estimate, how to be rid of it."""
    if (
        est.device != "cpu"
        or allocator.threshold_is_fixed()
        or est.overhead_mb < HINT_FROM_SHARE * est.peak_mb
    ):
        return []
    return [f"  {'':<22}{'':>12}      {FIXED_THRESHOLD_HINT}"]


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:,.1f}{unit}"
    return str(n)
