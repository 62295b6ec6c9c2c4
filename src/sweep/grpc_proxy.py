"""storage=grpc://HOST:PORT: the sweep's study through Optuna's gRPC storage proxy (served by
`python -m src.sweep serve-storage`, src/sweep/grpc_server.py), so that hundreds of workers
share the proxy's few database connections instead of holding their own.

Optuna's proxy client (GrpcStorageProxy) is a plain BaseStorage: no heartbeats, and no way to
take the PostgreSQL advisory lock drivers count under. Our server adds a second gRPC service
(COORDINATION) for both, and ProxyStorage here uses it, so fail_stale_trials, the stale-trial
callback (MLflow run closed, parameters re-queued) and the slot lock work as on PostgreSQL.
A plain Optuna proxy lacks that service: the preflight refuses it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import random
import time
import warnings
from urllib.parse import urlsplit

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat

from src.sweep.storage import reconnecting

SCHEME = "grpc"
DEFAULT_PORT = 13000  # Optuna's
COORDINATION = "ftsweep.Coordination"
METHODS = ("Info", "RecordHeartbeat", "StaleTrialIds", "TryLock", "Unlock")
# A driver holds the slot lock while it counts and asks (milliseconds; TPE's ask at 10,000
# trials takes longer): the lease only matters when a holder dies, then others wait this long.
LEASE_S = 60.0
READY_TIMEOUT_S = 5


def is_grpc(url: str) -> bool:
    return url.startswith(f"{SCHEME}://")


def parse_url(url: str) -> tuple[str, int]:
    """(host, port) of grpc://HOST[:PORT]; ValueError saying what is wrong."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as err:  # a port that is not a number, or out of range
        raise ValueError(f"bad port ({err})") from None
    if parts.scheme != SCHEME or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"expected {SCHEME}://HOST[:PORT] (port {DEFAULT_PORT} if left out)")
    if parts.query or parts.username:
        raise ValueError("a gRPC storage URL takes no user, password or query")
    return parts.hostname, port


def dump_message(message: dict) -> bytes:
    return json.dumps(message).encode()


def load_message(data: bytes) -> dict:
    return json.loads(data)


class ProxyStorage(GrpcStorageProxy, BaseHeartbeat):
    """Optuna's proxy client plus heartbeats through our coordination service. The heartbeat
    interval and grace period are the driver's (like RDBStorage's); the database's clock
    decides staleness. Every call waits out a restarting proxy (src/sweep/storage.reconnecting)."""

    def __init__(self, host: str, port: int, heartbeat_s: int | None = None, on_stale=None):
        self._heartbeat_s, self._on_stale = heartbeat_s, on_stale
        super().__init__(host=host, port=port)

    def _setup(self) -> None:
        super()._setup()
        self._calls = {
            name: self._channel.unary_unary(
                f"/{COORDINATION}/{name}",
                request_serializer=dump_message,
                response_deserializer=load_message,
            )
            for name in METHODS
        }

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        del state["_calls"]
        return state

    def call(self, method: str, **request) -> dict:
        return self._calls[method](request)

    def record_heartbeat(self, trial_id: int) -> None:
        self.call("RecordHeartbeat", trial_id=trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if self._heartbeat_s is None:
            return []
        return self.call("StaleTrialIds", study_id=study_id, grace_s=3 * self._heartbeat_s)["ids"]

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_s

    def get_heartbeat_stale_trial_callback(self):
        return self._on_stale


def _retried(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return reconnecting(method, self, *args, **kwargs)

    return wrapper


# Every storage call (Optuna's and ours) rides out a proxy that is restarting: gRPC fails fast
# with UNAVAILABLE, which src/sweep/storage.reconnecting counts as a lost connection.
for _name, _method in [*vars(GrpcStorageProxy).items(), ("call", ProxyStorage.call)]:
    if inspect.isfunction(_method) and not _name.startswith("_") and _name != "close":
        setattr(ProxyStorage, _name, _retried(_method))


def open_proxy(url: str, heartbeat_s: int | None = None, on_stale=None) -> ProxyStorage:
    host, port = parse_url(url)
    with warnings.catch_warnings():  # experimental since Optuna 4.2: said once, in docs/cluster.md
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return ProxyStorage(host, port, heartbeat_s, on_stale)


@functools.cache
def _lock_client(url: str) -> ProxyStorage:
    return open_proxy(url)


@contextlib.contextmanager
def proxy_lock(url: str, name: str, lease_s: float = LEASE_S):
    """The slot lock as a lease held in the proxy process. Waiters poll (with jitter) instead of
    blocking: a blocked call would hold one of the server's few threads, and hundreds of them
    would starve the holder's own calls."""
    client, delay = _lock_client(url), 0.01
    while not (token := client.call("TryLock", name=name, lease_s=lease_s)["token"]):
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(2 * delay, 0.5)
    try:
        yield
    finally:
        client.call("Unlock", name=name, token=token)


def proxy_problems(url: str) -> list[str]:
    """The preflight for grpc://: a valid URL, grpc installed, a server that answers and is
    ours (Optuna's bare proxy has no heartbeats and no slot lock)."""
    where = f"storage={url}: "
    try:
        parse_url(url)
    except ValueError as err:
        return [f"{where}{err}"]
    try:
        import grpc
    except ImportError:
        return [f"{where}needs grpcio and protobuf: pip install -e '.[grpc]'"]
    client = open_proxy(url)
    try:
        client.wait_server_ready(timeout=READY_TIMEOUT_S)
        client._calls["Info"]({}, timeout=READY_TIMEOUT_S)
    except ConnectionError:
        return [
            f"{where}no gRPC storage proxy answers within {READY_TIMEOUT_S} s (start one: "
            "python -m src.sweep serve-storage, see docs/cluster.md)"
        ]
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNIMPLEMENTED:
            return [
                f"{where}a plain Optuna proxy: it has no heartbeats and no slot lock, so dead "
                "workers' trials would stay RUNNING; serve it with python -m src.sweep "
                "serve-storage"
            ]
        return [f"{where}the proxy answered {err.code().name}: {err.details()}"]
    finally:
        client.close()
    return []
