"""Budgets: a sampled configuration whose pre-flight estimate (src/train/estimate/) exceeds the
memory or step-time budget is not launched. The trial is recorded PRUNED with reason
`over_budget`, its estimate in the user attrs and Optuna constraints `memory` and `step_time`
(estimate / budget - 1: > 0 is infeasible, so TPE and NSGA-II learn the region), in well under
a second and without a trial process."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from src.sweep.configs import trial_config


@dataclass
class Budget:
    """memory_mb None: no memory known to hold the run (no GPU on this machine for a GPU run);
    step_ms None: no limit. `per` is how many trials share the memory at once."""

    memory_mb: float | None = None
    step_ms: float | None = None
    source: str = ""  # how memory_mb was chosen, for messages

    def describe(self) -> str:
        parts = []
        if self.memory_mb is not None:
            parts.append(f"memory {self.memory_mb:,.0f} MB ({self.source})")
        if self.step_ms is not None:
            parts.append(f"step time {self.step_ms:,.0f} ms (budget.step_ms)")
        return ", ".join(parts) or "none"


def budget_settings(settings: dict) -> dict:
    """The sweep command's budget.* settings, without the prefix (what resolve_budget takes)."""
    return {k.removeprefix("budget."): v for k, v in settings.items() if k.startswith("budget.")}


def resolve_budget(settings: dict, overrides: list[str], workers: int) -> Budget:
    """The sweep's budget: budget.memory_mb / budget.step_ms as given (file or command line), the
    memory defaulting to the device's: the GPU's memory, or on CPU the RAM available now shared
    by the workers that train at once."""
    from src.train.estimate import available_memory_mb

    memory, step = settings.get("memory_mb"), settings.get("step_ms")
    if memory is not None:
        return Budget(float(memory), _number(step), "budget.memory_mb")
    cfg = trial_config(overrides)
    device = "cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu"
    available = available_memory_mb(device)
    if available is None:
        return Budget(None, _number(step), "no GPU here to read its memory")
    if device == "cuda":
        return Budget(available, _number(step), "this GPU's memory")
    share = f" / {workers} workers" if workers > 1 else ""
    return Budget(available / workers, _number(step), f"RAM available now{share}")


def _number(value) -> float | None:
    return None if value is None else float(value)


@dataclass
class Verdict:
    estimate: dict = field(default_factory=dict)  # peak_mb, step_ms, ... (empty: no estimate)
    constraints: dict[str, float] = field(default_factory=dict)
    reason: str | None = None  # set when the trial must not run
    metrics: dict | None = None  # Estimate.metrics(): the trial process logs them, not re-made

    @property
    def over(self) -> bool:
        return self.reason is not None


_SEQUENCES: dict[str, tuple[int | None, int | None]] = {}


def training_sequence(cfg) -> int | None:
    """The longest training row of cfg's data under its tokenizer (the sequence a trial's peak
    sees), read once per data setting from the tokenized cache; None when the data cannot be
    prepared here (the trial's own run then reports why)."""
    return training_sequences(cfg)[0]


def training_sequences(cfg) -> tuple[int | None, int | None]:
    """(the longest training row, a typical batch's longest row: the sequence a trial's step
    time follows), as a trial's run reads them (src/train/run.py); (None, None) when the data
    cannot be prepared here."""
    from omegaconf import OmegaConf

    parts = [OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "model", "task")]
    key = repr((parts, cfg.seed, cfg.paths.cache_dir))
    if key not in _SEQUENCES:
        from src.errors import ConfigError
        from src.train.batch_rows import batch_sequences
        from src.train.run import prepare_inputs

        try:
            _SEQUENCES[key] = batch_sequences(cfg, prepare_inputs(cfg))
        except ConfigError:
            _SEQUENCES[key] = (None, None)
    return _SEQUENCES[key]


_SIMULATED: dict[tuple[str, int | None], object] = {}  # key -> Simulated
_TIMED: dict[tuple, object] = {}  # (key, step sequence) -> Estimate with its step time


def estimated(cfg, sequence: int | None, timed: bool = True, step_sequence: int | None = None):
    """estimate(cfg) for this longest row, simulated once per configuration that differs in more
    than its learning rate (TPE samples a new rate nearly every trial; the rate changes no tensor
    and no step's work, and a simulation costs ~0.5 s of the trial's start) and timed on the
    device once, from the step simulated at step_sequence (a typical batch's longest row; default
    sequence). Shared by the preflight's budget checks (timed=False: memory only, made while a
    trial trains, when device timings would be slowed by it) and every trial's judgement."""
    import json

    from omegaconf import OmegaConf

    from src.train.estimate import simulate, with_step_time

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("run_name", None)
    plain["optim"].pop("lr", None)
    plain["optim"].get("optimizer", {}).pop("lr", None)
    key = (json.dumps(plain, sort_keys=True, default=str), sequence)
    if key not in _SIMULATED:
        _SIMULATED[key] = simulate(cfg, sequence=sequence)
    if not timed:
        return _SIMULATED[key].estimate
    timed_key = (key, step_sequence)
    if timed_key not in _TIMED:
        _TIMED[timed_key] = with_step_time(_SIMULATED[key], cfg, step_sequence)
    return _TIMED[timed_key]


def judge(overrides: list[str], budget: Budget) -> Verdict:
    """Estimate the trial's configuration and compare it with the budget. An estimator failure
    never stops a sweep: the trial then runs and its own run decides."""
    if budget.memory_mb is None and budget.step_ms is None:
        return Verdict()
    cfg = trial_config(overrides)
    try:
        # Timed, for the trial's own longest row (memory) and typical batch (step time): the
        # trial process logs this estimate instead of making it again (0.5-1 s of its start).
        sequence, step_sequence = training_sequences(cfg)
        est = estimated(cfg, sequence, step_sequence=step_sequence)
    except Exception as err:  # noqa: BLE001 - an architecture the simulation cannot run
        return Verdict({"error": f"{type(err).__name__}: {err}"[:300]})
    found = {
        "peak_mb": round(est.peak_mb, 1),
        "eval_peak_mb": round(est.eval_peak_mb, 1),
        "step_ms": est.step_ms,
        "gflops": est.gflops,
    }
    verdict = Verdict(found, metrics=est.metrics())
    limits = (  # memory: training's peak, or the evaluation pass's where that is bigger
        ("memory", est.needed_mb, budget.memory_mb, "MB", "budget.memory_mb"),
        ("step_time", est.step_ms, budget.step_ms, "ms", "budget.step_ms"),
    )
    for key, value, limit, unit, name in limits:
        if limit is None or value is None or not math.isfinite(value):
            continue
        verdict.constraints[key] = value / limit - 1
        if value > limit and verdict.reason is None:
            verdict.reason = (
                f"estimated {key.replace('_', ' ')} {value:,.0f} {unit} > {name} {limit:,.0f}"
            )
            if key == "memory" and est.eval_peak_mb > est.peak_mb:
                verdict.reason += (
                    f" (its evaluation pass, data.eval_batch_size={est.eval_batch_size})"
                )
    return verdict
