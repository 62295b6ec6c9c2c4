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
from src.sweep.driver import Plan, drive, max_time_seconds
from src.sweep.preflight.budget import budget_warnings
from src.sweep.spec import SIGNATURE_ATTR, SweepSpec, space_signature
from src.sweep.storage import open_study
from src.sweep.tracking import SweepRuns
from src.sweep.trial import SweepContext, interrupted
from src.sweep.urls import display_url
from src.sweep.workers import run_workers
from src.train import tracking


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
) -> optuna.Study:
    """Run trials until the study holds n_trials finished ones (or the timeout passes); then
    re-train the confirm[0] best configurations with confirm[1] more seeds each. budget
    (memory_mb, step_ms) overrides the sweep file's."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials = n_trials or spec.n_trials
    timeout = timeout if timeout is not None else spec.timeout
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
    warn_unfit_methods(spec, ctx.overrides, plan.budget)
    status = "FAILED"
    try:
        if workers > 1:
            run_workers(workers, ctx, plan)
        else:
            drive(ctx, plan)
        if confirm[0] and confirm[1]:
            confirm_best(ctx, *confirm)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        number = interrupted(ctx)
        print(resume_hint(spec, study_name, storage, number, overrides), flush=True)
        raise
    finally:
        runs.finish(study, spec, status)
    return study


def warn_unfit_methods(spec: SweepSpec, overrides: list[str], budget) -> None:
    """The preflight's budget check: a warning, not an error (the estimate may be pessimistic,
    and the other methods still run)."""
    for text in budget_warnings(spec, method_choices(spec.space, overrides), budget):
        print(f"warning: {text}", file=sys.stderr, flush=True)


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
