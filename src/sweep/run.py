"""One sweep invocation: open (or resume) the study, start its MLflow parent run, run one driver
here or N worker processes, and close the parent run with the best trial or Pareto set."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from src.sweep.budget import resolve_budget
from src.sweep.configs import method_choices, trial_config
from src.sweep.confirm import confirm_best
from src.sweep.driver import IdleWork, Plan, drive, max_time_seconds
from src.sweep.preflight.budget import method_budget_checks
from src.sweep.process.runner import start_fork_server
from src.sweep.slurm import SlurmResources, detached_hint, submit_workers
from src.sweep.slurm import follow as follow_jobs
from src.sweep.spec import SIGNATURE_ATTR, SweepSpec, space_signature
from src.sweep.storage import open_study
from src.sweep.tracking import SweepRuns
from src.sweep.trial import SweepContext, interrupted
from src.sweep.urls import display_url
from src.sweep.workers import run_workers
from src.train import tracking
from src.train.quiet import quiet_libraries


def run_sweep(
    spec: SweepSpec,
    study_name: str,
    storage: str,
    n_trials: int | None = None,
    timeout: float | None = None,
    quiet: bool = True,
    overrides: list[str] = (),
    workers: int = 1,
    heartbeat_s: int | None = None,
    confirm: tuple[int, int] = (0, 0),
    budget: dict | None = None,
    slurm: SlurmResources | None = None,
    follow: bool = True,
) -> optuna.Study:
    """Run trials until the study holds n_trials finished ones (or the timeout passes); then
    re-train the confirm[0] best configurations with confirm[1] more seeds each. budget
    (memory_mb, step_ms) overrides the sweep file's."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_libraries()  # the driver's estimates build models: PEFT's deprecation notices, etc.
    n_trials = n_trials or spec.n_trials
    timeout = timeout if timeout is not None else spec.timeout
    if workers == 1 and slurm is None:  # started already by the command line; here for callers
        start_fork_server()  # of run_sweep (local workers start their own at their first trial)
    base = trial_config([*spec.base, *overrides])
    uri = tracking.tracking_uri(base.logger.tracking_uri)
    study = open_study(spec, study_name, storage, heartbeat_s)
    runs = SweepRuns(uri, base.logger.experiment, base.logger.artifact_root)
    runs.close_dead_parents(study_name)
    runs.start(spec, study_name, storage, n_trials)
    # space_signature: what a later resume is compared with (the preflight refuses a
    # changed space unless allow_space_change=true, checked before this point).
    for key, value in {
        "sweep": spec.name,
        "mlflow_parent_run_id": runs.run_id,
        "mlflow_tracking_uri": uri,
        "objectives": spec.objectives,
        "reports_root": str(base.paths.root),
        SIGNATURE_ATTR: space_signature(spec),
    }.items():
        study.set_user_attr(key, value)
    ctx = SweepContext(
        spec=spec,
        study=study,
        storage=storage,
        runs=runs,
        uri=uri,
        quiet=quiet,
        overrides=[*spec.base, *overrides],
        log_dir=Path(base.paths.root) / "sweeps" / study_name,
    )
    plan = Plan(
        n_trials=n_trials,
        deadline=time.time() + timeout if timeout is not None else None,
        trial_cap=max_time_seconds(OmegaConf.select(base, "trainer.max_time", default=None)),
        heartbeat_s=heartbeat_s,
        budget=resolve_budget({**spec.budget, **(budget or {})}, ctx.overrides, workers),
    )
    # The preflight's budget check of every method: while trial #0 starts (its own configuration
    # is judged before it launches) by a single local driver, before anything else otherwise.
    budget_checks = IdleWork(unfit_method_warnings(spec, ctx.overrides, plan.budget))
    status = "FAILED"
    try:
        if slurm is not None:
            budget_checks.finish()
            if not on_slurm(ctx, plan, workers, slurm, follow):
                status = None  # detached: the jobs go on, `status` finishes the parent run
                return study
        elif workers > 1:
            budget_checks.finish()
            run_workers(workers, ctx, plan)
        else:
            drive(ctx, plan, idle=budget_checks)
            budget_checks.finish()  # no trial was launched: the warnings are still due
        if confirm[0] and confirm[1]:
            confirm_best(ctx, *confirm)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        number = interrupted(ctx)
        print(resume_hint(spec, study_name, storage, number, overrides), flush=True)
        raise
    finally:
        if status is not None:
            runs.finish(study, status)
    return study


def on_slurm(ctx, plan, workers: int, resources: SlurmResources, follow: bool) -> bool:
    """Submit the workers as a SLURM job array; follow them unless told not to. True when every
    worker job has ended, False when this command detached (follow=false or Ctrl-C)."""
    record = submit_workers(workers, ctx, plan, resources)
    hint = detached_hint(ctx.study.study_name, display_url(ctx.storage), record)
    print(hint, flush=True)
    if follow and follow_jobs(ctx.study, ctx.spec, plan.n_trials, record):
        return True
    print(f"[sweep {ctx.study.study_name}] not following; the jobs keep running.", flush=True)
    return False


def unfit_method_warnings(spec: SweepSpec, overrides: list[str], budget):
    """The preflight's budget check, one method per step: a warning, not an error (the estimate
    may be pessimistic, and the other methods still run)."""
    for text in method_budget_checks(spec, method_choices(spec.space, overrides), budget):
        if text:
            print(f"warning: {text}", file=sys.stderr, flush=True)
        yield


def resume_hint(
    spec: SweepSpec, study_name: str, storage: str, requeued: int | None, overrides=()
) -> str:
    again = (
        f" Trial #{requeued} was stopped, recorded as FAIL (interrupted) and re-queued."
        if requeued is not None
        else ""
    )
    return (
        f"[sweep {study_name}] interrupted.{again} Resume with:\n"
        f"  python -m src.sweep sweep={spec.path} study_name={study_name} "
        f"storage={display_url(storage)} " + " ".join(overrides)
    ).rstrip()
