"""The study and its storage: Optuna RDB storage with heartbeats (a trial whose driver stops
beating is failed and re-queued by the next driver that looks), the SQLite slot lock shared by
local workers, and opening (or resuming) a study."""

from __future__ import annotations

import contextlib
import fcntl
import warnings
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from src.errors import ConfigError
from src.sweep.samplers import build_pruner, build_sampler
from src.sweep.spec import SweepSpec
from src.sweep.tracking import close_stale_run

RDB_SCHEMES = {"sqlite", "postgresql", "mysql"}
HEARTBEAT_S = 20
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# Optuna's own convention for re-queued trials (system attrs failed_trial / retry_history).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    REQUEUE = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)


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
    return optuna.storages.RDBStorage(
        storage,
        heartbeat_interval=beat,
        grace_period=3 * beat,
        heartbeat_stale_trial_callback=on_stale_trial,
        engine_kwargs=_engine_kwargs(storage),
    )


def on_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna has just failed a trial whose driver died: close its MLflow run, re-queue it."""
    uri = study.user_attrs.get("mlflow_tracking_uri")
    if uri:
        close_stale_run(MlflowClient(uri), trial.user_attrs.get("run_id"))
    study.set_user_attr(f"stale_trial_{trial.number}", "failed by heartbeat, re-queued")
    REQUEUE(study, trial)


def open_study(
    spec: SweepSpec, study_name: str, storage: str, heartbeat_s: int | None = None
) -> optuna.Study:
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
            raise ConfigError(
                [
                    f"study '{study_name}' in {storage} has directions {stored}, "
                    f"the sweep file says {spec.directions}; pick another study_name"
                ]
            )
    study = optuna.create_study(
        study_name=study_name,
        storage=backend,
        load_if_exists=True,
        sampler=build_sampler(spec, n_existing),
        pruner=build_pruner(spec.pruner),
        directions=spec.directions,
    )
    optuna.storages.fail_stale_trials(study)
    if n_existing == 0:  # known-good starting points run first (a fresh study only)
        for params in spec.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def heartbeat(study, trial):
    """(beat, seconds between beats) for RDB storages with heartbeats, else (None, 10)."""
    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache wrapper
    if (
        not isinstance(storage, optuna.storages.RDBStorage)
        or storage.get_heartbeat_interval() is None
    ):
        return None, 10.0
    return (lambda: storage.record_heartbeat(trial._trial_id)), float(
        storage.get_heartbeat_interval()
    )


@contextlib.contextmanager
def slot_lock(storage: str):
    """An exclusive file lock next to a SQLite study (local workers); other storages: none
    (several hosts may then overshoot n_trials by at most workers - 1, like Optuna's own)."""
    if not storage.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(storage[len("sqlite:///") :]).with_suffix(".lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def counted(study: optuna.Study) -> int:
    """Trials that count toward n_trials: finished ones (except failures that were re-queued and
    will run again) plus the ones running now in any worker."""
    trials = study.get_trials(deepcopy=False)
    requeued = {n for t in trials for n in REQUEUE.retry_history(t)}  # every ancestor of a retry
    return sum(
        (t.state in FINISHED and t.number not in requeued) or t.state == TrialState.RUNNING
        for t in trials
    )
