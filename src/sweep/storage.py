"""The study and its storage: Optuna RDB storage with heartbeats (a trial whose driver stops
beating is failed and re-queued by the next driver that looks) that rides out a lost database
connection (a PostgreSQL restart), the slot lock under which a driver counts and asks (a file
lock for SQLite, an advisory lock for PostgreSQL), and opening (or resuming) a study."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import threading
import time
import warnings
import zlib
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


RECONNECT_S = 120  # how long a lost database connection is retried before the error stands


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # The trial process writes to the same SQLite file: wait for its lock rather than fail.
        return {"connect_args": {"timeout": 60}}
    if _backend(url) == "postgresql":
        # After a server restart every pooled connection is dead: test one before using it, and
        # do not hang on a server that does not answer (the retry below waits instead).
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    return {}


def _backend(url: str) -> str:
    return url.split(":", 1)[0].split("+")[0]


def _connection_lost(err: BaseException) -> bool:
    """Whether err (or what it was raised from) is a lost or refused database connection, which
    a retry on a fresh connection can cure; not a bad query, a constraint or bad data."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    while err is not None:
        if isinstance(err, DBAPIError) and (
            err.connection_invalidated or isinstance(err, (OperationalError, InterfaceError))
        ):
            return True
        if _proxy_unavailable(err):
            return True
        err = err.__cause__
    return False


def _proxy_unavailable(err: BaseException) -> bool:
    """A gRPC storage proxy that does not answer (stopped, restarting): grpc's UNAVAILABLE."""
    code = getattr(err, "code", None)
    if not type(err).__module__.startswith("grpc") or not callable(code):
        return False
    import grpc

    return code() == grpc.StatusCode.UNAVAILABLE


_retrying = threading.local()


def reconnecting(call, *args, **kwargs):
    """call(*args, **kwargs), retried with a fresh connection for up to RECONNECT_S while the
    database is unreachable (a restart takes seconds). Nested calls do not retry on their own."""
    if getattr(_retrying, "active", False):
        return call(*args, **kwargs)
    deadline, delay, warned = time.monotonic() + RECONNECT_S, 0.2, False
    _retrying.active = True
    try:
        while True:
            try:
                return call(*args, **kwargs)
            except Exception as err:
                if not _connection_lost(err) or time.monotonic() + delay > deadline:
                    raise
                if not warned:
                    print(f"[sweep] storage connection lost; retrying for up to {RECONNECT_S} s")
                    warned = True
            time.sleep(delay)
            delay = min(2 * delay, 5.0)
    finally:
        _retrying.active = False


class ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage on a database server whose every operation survives a lost
    connection (reconnecting); a wrong password is retried too, but the preflight has caught it.
    A write whose commit reached the server but whose answer was lost is sent again: with a
    restart at that very moment a trial could be created twice (Optuna's own retry of
    create_new_trial has the same window)."""


def _retried(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return reconnecting(method, self, *args, **kwargs)

    return wrapper


# Private ones too: Optuna's cache wrapper and fail_stale_trials call _create_new_trial,
# _get_trials, _get_stale_trial_ids... directly.
for _name, _method in vars(optuna.storages.RDBStorage).items():
    if inspect.isfunction(_method) and not _name.startswith("__"):
        setattr(ReconnectingRDBStorage, _name, _retried(_method))


def open_storage(storage: str, heartbeat_s: int | None = None, pool_size: int | None = None):
    """RDB storage (or the gRPC proxy) with heartbeats: a trial whose driver stops beating for 3
    intervals is failed by the next driver that looks, its MLflow run closed and its params
    re-queued. pool_size: database connections kept (SQLAlchemy's default 5, +10 overflow)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    if storage.startswith("grpc://"):  # the proxy (src/sweep/grpc_proxy.py): heartbeats too
        from src.sweep.grpc_proxy import open_proxy

        return open_proxy(storage, heartbeat_s or HEARTBEAT_S, on_stale_trial)
    if storage.startswith("sqlite"):  # relative or absolute, any driver: the folder must exist
        from sqlalchemy.engine import make_url

        Path(make_url(storage).database).parent.mkdir(parents=True, exist_ok=True)
    if _backend(storage) not in RDB_SCHEMES:
        return storage
    beat = heartbeat_s or HEARTBEAT_S
    kwargs = {
        "heartbeat_interval": beat,
        "grace_period": 3 * beat,
        "heartbeat_stale_trial_callback": on_stale_trial,
        "engine_kwargs": _engine_kwargs(storage),
    }
    if pool_size:  # the proxy server: as many connections as threads that may query at once
        kwargs["engine_kwargs"].update(pool_size=pool_size, max_overflow=0)
    if _backend(storage) == "sqlite":  # a file: no connection to lose (its lock has a timeout)
        return optuna.storages.RDBStorage(storage, **kwargs)
    return reconnecting(ReconnectingRDBStorage, storage, **kwargs)  # it connects at once


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
    # RDB storage, or the gRPC proxy's client (src/sweep/grpc_proxy.py)
    if not hasattr(storage, "record_heartbeat") or storage.get_heartbeat_interval() is None:
        return None, 10.0
    return (lambda: storage.record_heartbeat(trial._trial_id)), float(
        storage.get_heartbeat_interval()
    )


@contextlib.contextmanager
def slot_lock(storage: str, name: str = "slots"):
    """Held while a driver counts trials and asks for one, so workers never start more trials
    than wanted: a file lock next to a SQLite study (local workers), an advisory lock on
    PostgreSQL (workers on any host; name narrows it, e.g. to one study), a lease in the gRPC
    proxy (the workers behind that proxy); other storages: none
    (several hosts may then overshoot n_trials by at most workers - 1, like Optuna's own)."""
    if _backend(storage) == "postgresql":
        with _advisory_lock(storage, name):
            yield
        return
    if storage.startswith("grpc://"):  # a lease held by the proxy (src/sweep/grpc_proxy.py)
        from src.sweep.grpc_proxy import proxy_lock

        with proxy_lock(storage, name):
            yield
        return
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


@functools.cache
def _lock_engine(url: str):
    import sqlalchemy

    return sqlalchemy.create_engine(url, pool_size=1, **_engine_kwargs(url))


@contextlib.contextmanager
def _advisory_lock(url: str, name: str):
    """PostgreSQL's lock on a number, held by an open transaction: the server releases it when
    the transaction ends, or when the connection dies with its driver."""
    import sqlalchemy

    key = zlib.crc32(f"ftsweep:{name}".encode())
    conn = reconnecting(_locked_connection, _lock_engine(url), key)
    try:
        yield
    finally:
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):  # a dead connection: unlocked
            conn.rollback()
        conn.close()


def _locked_connection(engine, key: int):
    import sqlalchemy

    conn = engine.connect()
    try:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    except BaseException:
        conn.close()
        raise
    return conn


def counted(study: optuna.Study) -> int:
    """Trials that count toward n_trials: finished ones (except failures that were re-queued and
    will run again) plus the ones running now in any worker."""
    trials = study.get_trials(deepcopy=False)
    requeued = {n for t in trials for n in REQUEUE.retry_history(t)}  # every ancestor of a retry
    return sum(
        (t.state in FINISHED and t.number not in requeued) or t.state == TrialState.RUNNING
        for t in trials
    )
