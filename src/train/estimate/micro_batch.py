"""Micro-batch sizes chosen by the estimate: data.batch_size=auto (the largest micro-batch with
which training and the evaluation pass fit the memory budget, gradient accumulation keeping the
effective batch) and the smaller micro-batch an out-of-memory retry uses."""

from __future__ import annotations

from omegaconf import DictConfig

from src.errors import ConfigError


def divisors(n: int) -> list[int]:
    """Micro-batches that keep an effective batch of n exactly, largest first."""
    return sorted((d for d in range(1, n + 1) if n % d == 0), reverse=True)


def largest_fitting(candidates: list[int], fits) -> int | None:
    """The largest candidate c with fits(c), by bisection (memory grows with the batch)."""
    ordered = sorted(candidates)
    lo, hi, best = 0, len(ordered) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(ordered[mid]):
            best, lo = ordered[mid], mid + 1
        else:
            hi = mid - 1
    return best


def memory_budget_mb(cfg: DictConfig, device: str) -> float:
    """budget.memory_mb, else the device's memory (the GPU's, or the RAM available now)."""
    from src.train.estimate.device import available_memory_mb

    given = cfg.get("budget", {}).get("memory_mb")
    budget = given if given is not None else available_memory_mb(device)
    if budget is None:
        raise ConfigError(["data.batch_size=auto needs budget.memory_mb: no GPU here to read"])
    return float(budget)


def auto_batch(cfg: DictConfig, estimate_at, device: str) -> tuple[int, int, object]:
    """(micro-batch, accumulation, its estimate) for data.batch_size=auto; ConfigError when not
    even a micro-batch of 1 fits. estimate_at(b) estimates the config at micro-batch b."""
    effective = cfg.data.effective_batch_size
    budget = memory_budget_mb(cfg, device)
    seen = {}

    def fits(b: int) -> bool:  # the whole run: training's peak and the evaluation pass's
        seen[b] = estimate_at(b)
        return seen[b].needed_mb <= budget

    chosen = largest_fitting(divisors(effective), fits)
    if chosen is None:
        one = seen.get(1) or estimate_at(1)
        raise ConfigError([_nothing_fits(one, budget)])
    return chosen, effective // chosen, seen[chosen]


def _nothing_fits(one, budget: float) -> str:
    """Why not even a micro-batch of 1 fits: training itself, or the evaluation pass, whose
    batch (data.eval_batch_size) auto does not choose."""
    if one.peak_mb <= budget:
        return (
            f"data.batch_size=auto: training fits at a micro-batch of 1 ({one.peak_mb:,.0f} MB) "
            f"but evaluation at data.eval_batch_size={one.eval_batch_size} is estimated at "
            f"{one.eval_peak_mb:,.0f} MB, over the memory budget {budget:,.0f} MB; lower "
            "data.eval_batch_size"
        )
    return (
        f"data.batch_size=auto: even a micro-batch of 1 is estimated at {one.peak_mb:,.0f} MB, "
        f"over the memory budget {budget:,.0f} MB; use activation_checkpointing=true, a "
        "quantized base (quant=nf4), a shorter data.max_length or a larger budget.memory_mb"
    )


def retry_batch(batch: int, accumulate: int, estimate_at, budget_mb: float | None) -> int:
    """The micro-batch an out-of-memory retry uses: the largest one keeping the effective batch
    whose estimate is at most 80% of what failed (the estimate at the failed batch, or the
    budget when that is lower: the estimate was evidently too low); half the batch when the
    estimate cannot say."""
    effective = batch * accumulate
    candidates = [b for b in divisors(effective) if b < batch]
    if not candidates:
        return max(1, batch // 2)
    try:
        failed = estimate_at(batch).peak_mb
        target = 0.8 * min(failed, budget_mb or failed)
        return largest_fitting(candidates, lambda b: estimate_at(b).peak_mb <= target) or min(
            candidates
        )
    except Exception:  # noqa: BLE001 - an architecture the simulation cannot run
        return max(b for b in candidates if b <= max(1, batch // 2))
