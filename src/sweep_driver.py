"""The sweep loop: open (or resume) the study, then until n_trials are done: ask (under a lock
shared by the local workers of a SQLite study) -> run the trial in its own process -> tell, with
MLflow bookkeeping, one progress line per trial, and the fault rules of src/outcomes.py."""

from __future__ import annotations

import contextlib
import fcntl
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from src import interrupts, tracking
from src.config import compose_config
from src.errors import ConfigError
from src.outcomes import BUGS
from src.sweep_preflight import SIGNATURE_ATTR, space_signature
from src.sweep_spec import SweepSpec, build_pruner, build_sampler
from src.sweep_tracking import SweepRuns, close_stale_run
from src.sweep_trial import REQUEUE, SweepContext, interrupted, one_trial

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
RDB_SCHEMES = {"sqlite", "postgresql", "mysql"}
HEARTBEAT_S = 20


class SweepAborted(RuntimeError):
    """An unexpected trial error (a bug) beyond max_failures: the sweep stops after recording it."""


def _engine_kwargs(url: str) -> dict:
    # The trial process writes to the same SQLite file: wait for its lock rather than fail.
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def open_storage(storage: str, heartbeat_s: int | None = None):
    """RDB storage with heartbeats: a trial whose driver stops beating for 3 intervals is failed
    by the next driver that looks, its MLflow run closed and its params re-queued."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    if storage.startswith("sqlite"):  # relative or absolute, any driver: the folder must exist
        from sqlalchemy.engine import make_url

        Path(make_url(storage).database).parent.mkdir(parents=True, exist_ok=True)
    if storage.split(":", 1)[0].split("+")[0] not in RDB_SCHEMES:
        return storage
    beat = heartbeat_s or HEARTBEAT_S
    return optuna.storages.RDBStorage(storage, heartbeat_interval=beat, grace_period=3 * beat,
                                      heartbeat_stale_trial_callback=on_stale_trial,
                                      engine_kwargs=_engine_kwargs(storage))


def on_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna has just failed a trial whose driver died: close its MLflow run, re-queue it."""
    uri = study.user_attrs.get("mlflow_tracking_uri")
    if uri:
        close_stale_run(MlflowClient(uri), trial.user_attrs.get("run_id"))
    study.set_user_attr(f"stale_trial_{trial.number}", "failed by heartbeat, re-queued")
    REQUEUE(study, trial)


def open_study(spec: SweepSpec, study_name: str, storage: str, heartbeat_s: int | None = None) -> optuna.Study:
    """Create the study, or load it to resume; the objectives must match the stored ones."""
    backend = open_storage(storage, heartbeat_s)
    try:
        existing = optuna.load_study(study_name=study_name, storage=backend)
    except KeyError:
        existing = None
    n_existing = len(existing.trials) if existing else 0
    if existing is not None:
        stored = [d.name.lower() for d in existing.directions]
        if stored != spec.directions:
            raise ConfigError([(f"study '{study_name}' in {storage} has directions {stored}, the sweep file "
                               f"says {spec.directions}; pick another study_name")])
    study = optuna.create_study(study_name=study_name, storage=backend, load_if_exists=True,
                                sampler=build_sampler(spec, n_existing), pruner=build_pruner(spec.pruner),
                                directions=spec.directions)
    optuna.storages.fail_stale_trials(study)
    if n_existing == 0:  # known-good starting points run first (a fresh study only)
        for params in spec.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def run_sweep(spec: SweepSpec, study_name: str, storage: str, n_trials: int | None = None,
              timeout: float | None = None, quiet: bool = False, overrides: list[str] = (),
              workers: int = 1, heartbeat_s: int | None = None) -> optuna.Study:
    """Run trials until the study holds n_trials finished ones (or the timeout passes)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials = n_trials or spec.n_trials
    timeout = timeout if timeout is not None else spec.timeout
    base = compose_config([*spec.base, *overrides])
    uri = tracking.tracking_uri(base.logger.tracking_uri)
    study = open_study(spec, study_name, storage, heartbeat_s)
    runs = SweepRuns(uri, base.logger.experiment, base.logger.artifact_root)
    runs.close_dead_parents(study_name)
    runs.start(spec, study_name, storage, n_trials)
    # space_signature: what a later resume is compared with (src/sweep_preflight.py refuses a
    # changed space unless allow_space_change=true, checked before this point).
    for key, value in {"sweep": spec.name, "mlflow_parent_run_id": runs.run_id, "mlflow_tracking_uri": uri,
                       "objectives": spec.objectives, "reports_root": str(base.paths.root),
                       SIGNATURE_ATTR: space_signature(spec)}.items():
        study.set_user_attr(key, value)
    ctx = SweepContext(spec=spec, study=study, storage=storage, runs=runs, uri=uri, quiet=quiet,
                       overrides=[*spec.base, *overrides], log_dir=Path(base.paths.root) / "sweeps" / study_name)
    plan = Plan(n_trials=n_trials, deadline=time.time() + timeout if timeout is not None else None,
                trial_cap=_seconds(OmegaConf.select(base, "trainer.max_time", default=None)), heartbeat_s=heartbeat_s)
    status = "FAILED"
    try:
        if workers > 1:
            from src.sweep_workers import run_workers

            run_workers(workers, ctx, plan)
        else:
            drive(ctx, plan)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        number = interrupted(ctx)
        print(resume_hint(spec, study_name, storage, number, overrides), flush=True)
        raise
    finally:
        runs.finish(study, spec, status)
    return study


@dataclass
class Plan:
    """How much to run: total trials wanted, wall deadline, per-trial training cap."""

    n_trials: int
    deadline: float | None
    trial_cap: float | None
    heartbeat_s: int | None


def drive(ctx: SweepContext, plan: Plan) -> None:
    """This process's ask -> run -> tell loop (one per worker)."""
    progress, failures = Progress(ctx.spec, ctx.study.study_name, plan.n_trials), 0
    while True:
        interrupts.check()
        trial = next_trial(ctx, plan)
        if trial is None:
            return
        frozen = one_trial(ctx, trial, max_time=_trial_budget(plan.deadline, plan.trial_cap))
        progress.line(ctx.study, frozen)
        if frozen.user_attrs.get("reason") in BUGS:
            failures += 1
            if failures > ctx.spec.max_failures:
                raise SweepAborted(abort_message(ctx, frozen, failures))


def next_trial(ctx: SweepContext, plan: Plan):
    """Ask for the next trial, or None when the sweep is done. Counting and asking happen under
    one lock, so local workers on one SQLite study never start more trials than wanted."""
    study, name = ctx.study, ctx.study.study_name
    with slot_lock(ctx.storage):
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed and re-queued
        if counted(study) >= plan.n_trials:
            return None
        if plan.deadline is not None and time.time() > plan.deadline:
            print(f"[sweep {name}] timeout reached; stopping", flush=True)
            return None
        if getattr(study.sampler, "is_exhausted", lambda _: False)(study):
            print(f"[sweep {name}] grid exhausted; stopping", flush=True)
            return None
        return study.ask()


def counted(study: optuna.Study) -> int:
    """Trials that count toward n_trials: finished ones (except failures that were re-queued and
    will run again) plus the ones running now in any worker."""
    trials = study.get_trials(deepcopy=False)
    requeued = {n for t in trials for n in REQUEUE.retry_history(t)}  # every ancestor of a retry
    return sum((t.state in FINISHED and t.number not in requeued) or t.state == TrialState.RUNNING for t in trials)


@contextlib.contextmanager
def slot_lock(storage: str):
    """An exclusive file lock next to a SQLite study (local workers); other storages: none
    (several hosts may then overshoot n_trials by at most workers - 1, like Optuna's own)."""
    if not storage.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(storage[len("sqlite:///"):]).with_suffix(".lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def abort_message(ctx: SweepContext, trial, failures: int) -> str:
    tail = (trial.user_attrs.get("traceback") or "").rstrip()
    return (f"trial #{trial.number} failed with an unexpected error ({failures} so far, max_failures="
            f"{ctx.spec.max_failures}): {trial.user_attrs.get('fail_reason')}\n"
            + (f"--- trial traceback (tail) ---\n{tail}\n------------------------------\n" if tail else "")
            + "The sweep stopped. Fix the cause and resume with the same command, "
            "or tolerate such failures with max_failures=N.")


def resume_hint(spec: SweepSpec, study_name: str, storage: str, requeued: int | None, overrides=()) -> str:
    again = f" Trial #{requeued} was stopped, recorded as FAIL (interrupted) and re-queued." if requeued is not None else ""
    return (f"[sweep {study_name}] interrupted.{again} Resume with:\n"
            f"  python -m src.sweep sweep={spec.path} study_name={study_name} storage={storage} "
            + " ".join(overrides)).rstrip()


def _seconds(max_time) -> float | None:
    """Lightning's max_time as seconds: 'DD:HH:MM:SS' or a {days, hours, minutes, seconds} map."""
    if max_time is None:
        return None
    if isinstance(max_time, str):
        days, hours, minutes, seconds = (int(x) for x in max_time.split(":"))
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return sum(float(max_time.get(k, 0)) * f for k, f in
               (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1)))


def _trial_budget(deadline: float | None, trial_cap: float | None) -> float | None:
    """The sweep timeout is a wall budget: a trial may train only until it runs out, and never
    longer than the file's own per-trial trainer.max_time."""
    left = None if deadline is None else max(1.0, deadline - time.time())
    caps = [c for c in (left, trial_cap) if c is not None]
    return min(caps) if caps else None


class Progress:
    """One sweep-level line per finished trial: k/N, state, value, best so far, state counts."""

    def __init__(self, spec: SweepSpec, study_name: str, n_trials: int):
        self.spec, self.name, self.n = spec, study_name, n_trials

    def line(self, study: optuna.Study, trial) -> None:
        trials = study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == s for t in trials) for s in FINISHED}
        reason = trial.user_attrs.get("reason")
        state = trial.state.name + (f"({reason})" if reason not in (None, "complete", "pruned") else "") + (
            f"@{trial.user_attrs['pruned_at_step']}" if trial.user_attrs.get("pruned_at_step") is not None else "")
        value = self._fmt(trial.values) if trial.values else (trial.user_attrs.get("fail_reason") or "")[:100]
        print(f"[sweep {self.name}] trial {counted(study)}/{self.n} #{trial.number} "
              f"{trial.user_attrs.get('method', '')} {state} {value} ({trial.user_attrs.get('wall_s', 0):.0f}s)"
              f" | best {self._best(study)} | complete {counts[TrialState.COMPLETE]} "
              f"pruned {counts[TrialState.PRUNED]} failed {counts[TrialState.FAIL]}", flush=True)

    def _fmt(self, values) -> str:
        return " ".join(f"{m}={v:.4g}" for m, v in zip(self.spec.metrics, values))

    def _best(self, study: optuna.Study) -> str:
        if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            return "-"
        if len(self.spec.objectives) > 1:
            return f"pareto set of {len(study.best_trials)}"
        return f"#{study.best_trial.number} {self._fmt(study.best_trial.values)}"
