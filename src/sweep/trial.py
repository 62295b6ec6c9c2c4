"""One trial of a sweep: ask Optuna, run the trial process (and once more with half the
micro-batch after an OOM when oom.retry is on), record it in MLflow, tell Optuna why it ended."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from src.errors import ConfigError
from src.sweep import interrupts
from src.sweep.budget import Budget, judge, training_sequence
from src.sweep.configs import job_config, trial_config, trial_settings
from src.sweep.outcomes import STATE, describe_error
from src.sweep.process.runner import TrialJob, TrialOutcome, run_trial
from src.sweep.space import method_param, suggest
from src.sweep.spec import SweepSpec
from src.sweep.storage import REQUEUE, heartbeat
from src.sweep.tracking import SweepRuns
from src.train.estimate.micro_batch import retry_batch


@dataclass
class SweepContext:
    """What every trial of one sweep invocation shares."""

    spec: SweepSpec
    study: optuna.Study
    storage: str
    runs: SweepRuns
    uri: str
    quiet: bool
    overrides: list[str]
    log_dir: Path
    running: list = field(default_factory=list)  # the trial this process is running, if any
    requeued: int | None = None  # the trial an interrupt stopped and re-queued


def one_trial(
    ctx: SweepContext,
    trial: optuna.Trial,
    max_time: float | None = None,
    budget: Budget | None = None,
    idle=None,
) -> optuna.trial.FrozenTrial:
    """Run a trial just asked from the study to its end; return it as stored. A configuration
    whose estimate exceeds the budget is recorded over_budget without starting a process.
    idle(): called while waiting for the trial process (the driver's deferred work)."""
    study, spec = ctx.study, ctx.spec
    ctx.running[:] = [trial]
    suggestion = suggest(trial, spec.space)
    method = suggestion.values.get(method_param(spec.space) or "", "")
    run_name = f"{study.study_name}-t{trial.number:03d}" + (f"-{method}" if method else "")
    tags = {
        "trial": str(trial.number),
        "study_name": study.study_name,
        "sweep": spec.name,
        "sweep_method": str(method),
        "worker": worker_label(),
        # The GPUs this trial could see (its worker's share, or its SLURM job's).
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
    }
    for key, value in {
        "method": method,
        "fixed": suggestion.fixed,
        "overrides": suggestion.overrides,
        "log_path": _log_path(ctx, trial),
        "worker": tags["worker"],
    }.items():
        trial.set_user_attr(key, value)
    overrides = [*ctx.overrides, *suggestion.overrides]
    verdict = judge(overrides, budget or Budget())
    trial.set_user_attr("estimate", verdict.estimate)
    for key, value in verdict.constraints.items():
        trial.set_constraint(key, value)
    if verdict.over:
        outcome = TrialOutcome("PRUNED", reason="over_budget", fail_reason=verdict.reason)
    else:
        outcome = _attempt(
            ctx, trial, overrides, run_name, tags, max_time, verdict.metrics, idle=idle
        )
    if outcome.reason == "oom" and spec.oom_retry and not interrupts.requested():
        outcome = _retry_smaller_batch(
            ctx, trial, outcome, overrides, (run_name, tags, max_time), budget
        )
    if interrupts.requested() and outcome.state != "COMPLETE":  # it ended because we were stopped
        outcome.state, outcome.reason = "FAIL", "interrupted"
    check_objectives(outcome, spec)
    outcome.run_id = ctx.runs.record_trial(
        trial.number, outcome, run_name, tags, _log_path(ctx, trial)
    )
    if verdict.over:  # no run logged its estimate: the trial's MLflow run gets it here
        ctx.runs.log_estimate(outcome.run_id, verdict.estimate)
    tell(study, trial, outcome, spec)
    ctx.running.clear()
    if outcome.reason == "interrupted":  # the trial process got the Ctrl-C first
        _requeue(ctx, trial)
        raise KeyboardInterrupt("trial interrupted")
    frozen = study._storage.get_trial(trial._trial_id)
    ctx.runs.log_progress(
        trial.number,
        {
            "trial/value": frozen.values[0] if frozen.values else None,
            "trial/wall_s": outcome.wall_s,
        },
    )
    return frozen


def _attempt(
    ctx: SweepContext,
    trial,
    overrides: list[str],
    run_name: str,
    tags: dict,
    max_time: float | None,
    estimate: dict | None = None,
    idle=None,
) -> TrialOutcome:
    settings = trial_settings(run_name, ctx.uri, ctx.quiet, max_time)
    try:
        config = job_config(overrides, settings)
    except ConfigError as err:  # a value the config refuses fails the trial, not the sweep
        return TrialOutcome(STATE["error"], reason="error", fail_reason=describe_error(err))
    job = TrialJob(
        study_name=ctx.study.study_name,
        storage=ctx.storage,
        trial_id=trial._trial_id,
        number=trial.number,
        config=config,
        pruner=ctx.spec.pruner,
        prune=ctx.spec.prunes,
        monitor=ctx.spec.metrics[0],
        parent_run_id=ctx.runs.run_id,
        tags=tags,
        cwd=os.getcwd(),
        quiet=ctx.quiet,
        log_path=_log_path(ctx, trial),
        estimate=estimate,
        profile_dir=os.environ.get("FTSWEEP_PROFILE_START") or None,
    )
    # The run id goes into the trial at once: if this driver dies, whoever fails the stale trial
    # can still close its MLflow run.
    beat, every_s = heartbeat(ctx.study, trial)
    return run_trial(
        job,
        heartbeat=beat,
        every_s=every_s,
        on_run=lambda run_id: trial.set_user_attr("run_id", run_id),
        on_start=lambda pid: trial.set_user_attr("pid", pid),
        idle=idle,
    )


def _retry_smaller_batch(
    ctx, trial, first: TrialOutcome, overrides, naming, budget: Budget | None
) -> TrialOutcome:
    """oom.retry: the same trial once more with a smaller micro-batch that the estimate picks
    (src/train/estimate/micro_batch.retry_batch) and more gradient accumulation (same effective
    batch); the first attempt's MLflow run stays, marked oom."""
    run_name, tags, max_time = naming
    cfg = trial_config(overrides)
    if cfg.data.batch_size == "auto":  # the trial chose its micro-batch: what it ran is logged
        first.fail_reason = f"{first.fail_reason} (no oom retry: data.batch_size=auto)"
        return first
    batch, accumulate = int(cfg.data.batch_size), int(cfg.trainer.accumulate_grad_batches)
    if batch < 2:
        first.fail_reason = f"{first.fail_reason} (no oom retry: data.batch_size is already 1)"
        return first
    first_run = ctx.runs.record_trial(trial.number, first, run_name, tags, None)
    ctx.runs.client.set_tag(first_run, "oom_retry", "first attempt")
    from src.train.estimate import estimate  # torch: imported only when a retry needs it

    new_batch = retry_batch(
        batch,
        accumulate,
        lambda b: estimate(cfg, training_sequence(cfg), batch_size=b, timed=False),
        budget.memory_mb if budget else None,
    )
    smaller = [
        f"data.batch_size={new_batch}",
        f"trainer.accumulate_grad_batches={batch * accumulate // new_batch}",
    ]
    trial.set_user_attr("oom_retry", {"first_fail_reason": first.fail_reason, "overrides": smaller})
    print(
        f"[sweep {ctx.study.study_name}] trial #{trial.number} ran out of memory; "
        f"retrying once with {' '.join(smaller)}",
        flush=True,
    )
    return _attempt(
        ctx,
        trial,
        [*overrides, *smaller],
        f"{run_name}-retry",
        {**tags, "oom_retry": "retry"},
        max_time,
    )


def _log_path(ctx: SweepContext, trial) -> str | None:
    return str(ctx.log_dir / f"trial-{trial.number:04d}.log") if ctx.quiet else None


def worker_label() -> str:
    """Which worker ran a trial: its SLURM job (array job_task) or, locally, host:pid."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"slurm:{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '0')}"
    if env.get("SLURM_JOB_ID"):
        return f"slurm:{env['SLURM_JOB_ID']}"
    return f"{socket.gethostname()}:{os.getpid()}"


def check_objectives(outcome: TrialOutcome, spec: SweepSpec) -> None:
    """A trial that finished without a finite objective value failed: a setup problem (e.g. a
    budget too small to validate once), so it counts like an error."""
    outcome.metrics = {k: float(v) for k, v in outcome.metrics.items() if math.isfinite(float(v))}
    missing = [m for m in spec.metrics if m not in outcome.metrics]
    if outcome.state == "COMPLETE" and missing:
        outcome.state, outcome.reason = "FAIL", "error"
        outcome.fail_reason = f"objective metric(s) {missing} missing from the trial"


def tell(study: optuna.Study, trial, outcome: TrialOutcome, spec: SweepSpec) -> None:
    """Record what happened in the trial's user attrs (every key, so a re-queued trial does not
    keep its predecessor's), then finish it with the right state."""
    attrs = {
        "metrics": outcome.metrics,
        "state": outcome.state,
        "reason": outcome.reason,
        "run_id": outcome.run_id,
        "pruned_at_step": outcome.pruned_at_step,
        "pruned_by": outcome.pruned_by,
        "fail_reason": outcome.fail_reason,
        "traceback": outcome.traceback,
        "startup_s": outcome.startup_s,
        "setup_s": outcome.setup_s,
        "wall_s": outcome.wall_s,
        "launched_at": outcome.launched_at,
    }
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if outcome.state in ("COMPLETE", "PRUNED"):
        # Optuna's constraint (> 0 = infeasible): samplers that support constraints (TPE,
        # NSGA-II, GP) stop proposing the region of an out-of-memory trial.
        trial.set_constraint("oom", 1.0 if outcome.reason == "oom" else 0.0)
    if outcome.state == "COMPLETE":
        study.tell(trial, [outcome.metrics.get(m) for m in spec.metrics])
    else:
        study.tell(trial, state=TrialState[outcome.state])


def interrupted(ctx: SweepContext) -> int | None:
    """Ctrl-C / SIGTERM during a trial: close its MLflow run as KILLED, finish the Optuna trial
    as FAIL (reason interrupted) and re-queue its params, so a resume runs it again first."""
    if not ctx.running:
        return ctx.requeued
    trial = ctx.running.pop()
    frozen = ctx.study._storage.get_trial(trial._trial_id)
    if frozen.state != TrialState.RUNNING:
        return ctx.requeued
    outcome = TrialOutcome(
        "FAIL",
        reason="interrupted",
        run_id=frozen.user_attrs.get("run_id"),
        fail_reason="the sweep was interrupted (Ctrl-C / SIGTERM) during this trial",
    )
    outcome.run_id = ctx.runs.record_trial(
        trial.number,
        outcome,
        f"{ctx.study.study_name}-t{trial.number:03d}",
        {"trial": str(trial.number), "study_name": ctx.study.study_name},
        None,
    )
    tell(ctx.study, trial, outcome, ctx.spec)
    _requeue(ctx, trial)
    return ctx.requeued


def _requeue(ctx: SweepContext, trial) -> None:
    """An interrupted trial (already told FAIL) goes back to the queue with its params."""
    REQUEUE(ctx.study, ctx.study._storage.get_trial(trial._trial_id))
    ctx.requeued = trial.number
