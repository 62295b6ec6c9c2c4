"""`python -m src.sweep serve-storage [storage=URL] [host=H] [port=P] [threads=N]`: Optuna's gRPC
storage proxy in front of the sweep's database, so that hundreds of workers (storage=grpc://H:P)
share `threads` database connections. Behind it is our reconnecting RDB storage
(src/sweep/storage.py): a PostgreSQL restart is waited out here while the workers' calls wait.

Next to Optuna's StorageService it serves COORDINATION (JSON over gRPC's generic handlers: no
generated code), what Optuna's proxy lacks and our drivers need:
- heartbeats: recorded in the database's trial_heartbeats table by the database's clock, stale
  trials found with the asking driver's grace period, exactly as RDBStorage does it;
- the slot lock drivers count and ask under (PostgreSQL's advisory lock for direct workers): a
  lease held in this process, so it covers the workers behind this proxy only.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from src.errors import ConfigError, exit_on_config_error
from src.sweep import default_storage
from src.sweep.grpc_proxy import COORDINATION, DEFAULT_PORT, dump_message, is_grpc, load_message
from src.sweep.urls import display_url

KEYS = {"storage", "host", "port", "threads"}
DEFAULT_THREADS = 16
USAGE = f"""usage: python -m src.sweep serve-storage [storage=URL] [host=H] [port=P] [threads=N]

Serves the Optuna storage URL (default $FTSWEEP_STORAGE) as a gRPC storage proxy; workers then
use storage=grpc://H:P. host [127.0.0.1] (0.0.0.0: every network), port [{DEFAULT_PORT}],
threads [{DEFAULT_THREADS}]: calls served at once, each with its own database connection.
Stop with Ctrl-C or SIGTERM. docs/cluster.md, "gRPC storage proxy"."""


class Coordination:
    """The coordination service's methods (each takes and returns a JSON object)."""

    def __init__(self, rdb):
        self.rdb = rdb  # the RDB storage itself (not Optuna's cache wrapper around it)
        self._views: dict[float, object] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # name -> (token, expiry)
        self._mutex = threading.Lock()

    def Info(self) -> dict:  # noqa: N802 - gRPC method names
        return {"service": COORDINATION, "heartbeats": True, "lock": "lease"}

    def RecordHeartbeat(self, trial_id: int) -> dict:  # noqa: N802
        self.rdb.record_heartbeat(trial_id)
        return {}

    def StaleTrialIds(self, study_id: int, grace_s: float) -> dict:  # noqa: N802
        return {"ids": self._with_grace(grace_s)._get_stale_trial_ids(study_id)}

    def TryLock(self, name: str, lease_s: float) -> dict:  # noqa: N802
        now = time.monotonic()
        with self._mutex:
            held = self._leases.get(name)
            if held and held[1] > now:
                return {"token": None}
            token = uuid.uuid4().hex
            self._leases[name] = (token, now + lease_s)
            return {"token": token}

    def Unlock(self, name: str, token: str) -> dict:  # noqa: N802
        with self._mutex:
            if self._leases.get(name, ("",))[0] == token:  # an expired lease may be another's
                del self._leases[name]
        return {}

    def _with_grace(self, grace_s: float):
        """The RDB storage with another grace period: Optuna reads it from the storage object,
        and each driver brings its own. A view shares the engine (a copy would open another)."""
        grace = max(1, round(grace_s))
        with self._mutex:
            if grace not in self._views:
                view = object.__new__(type(self.rdb))
                view.__dict__.update(self.rdb.__dict__)
                view.heartbeat_interval, view.grace_period = grace, grace
                self._views[grace] = view
            return self._views[grace]


def coordination_handler(service: Coordination):
    import grpc

    def unary(method):
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: method(**request),
            request_deserializer=load_message,
            response_serializer=dump_message,
        )

    methods = {name: getattr(service, name) for name in dir(service) if name[0].isupper()}
    return grpc.method_handlers_generic_handler(
        COORDINATION, {name: unary(m) for name, m in methods.items()}
    )


def build_server(storage_url: str, host: str, port: int, threads: int = DEFAULT_THREADS):
    """The proxy server, not started: Optuna's StorageService on our reconnecting RDB storage
    (wrapped in Optuna's cache as run_grpc_proxy_server's docs ask) plus COORDINATION."""
    import optuna
    from optuna.storages._grpc.server import make_server  # the public runner takes no handlers

    from src.sweep.storage import open_storage

    rdb = open_storage(storage_url, pool_size=threads)
    server = make_server(
        optuna.storages.get_storage(rdb), host, port, ThreadPoolExecutor(max_workers=threads)
    )
    server.add_generic_rpc_handlers((coordination_handler(Coordination(rdb)),))
    return server


def serve_main(argv: list[str]) -> None:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return
    with exit_on_config_error():
        args = parse_args(argv)
    server = build_server(args["storage"], args["host"], args["port"], args["threads"])
    server.start()
    print(
        f"[serve-storage] {display_url(args['storage'])} as grpc://{args['host']}:{args['port']} "
        f"({args['threads']} threads); workers: storage=grpc://{args['host']}:{args['port']}",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop(grace=5).wait()  # calls in flight may finish
    print("[serve-storage] stopped", flush=True)


def parse_args(argv: list[str]) -> dict:
    """Every problem with the arguments, the storage and the address, before anything starts."""
    args, problems = read_args(argv)
    problems += _storage_problems(args["storage"])
    if not problems and not _bindable(args["host"], args["port"]):
        problems.append(f"cannot listen on {args['host']}:{args['port']}: in use or not here")
    if problems:
        raise ConfigError(problems)
    return args


def read_args(argv: list[str]) -> tuple[dict, list[str]]:
    """(the arguments with defaults, problems with their form); nothing is connected to."""
    args = {"host": "127.0.0.1", "port": str(DEFAULT_PORT), "threads": str(DEFAULT_THREADS)}
    problems = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            problems.append(f"'{arg}': serve-storage takes {', '.join(sorted(KEYS))} (KEY=VALUE)")
        else:
            args[key] = value
    args.setdefault("storage", default_storage())
    for key, low, high in (("port", 1, 65535), ("threads", 1, 1024)):
        number = int(args[key]) if args[key].isdigit() else None
        if number is None or not low <= number <= high:
            problems.append(f"{key}={args[key]!r}: must be an integer from {low} to {high}")
        args[key] = number
    return args, problems


def _storage_problems(url: str) -> list[str]:
    from src.sweep.preflight.storage import storage_problems

    where = f"storage={display_url(url)}: "
    if is_grpc(url):
        return [f"{where}already a proxy; serve the database itself (postgresql+psycopg://...)"]
    if url.startswith("sqlite"):
        return [
            f"{where}a file on this machine: the proxy is for a database server many machines "
            "share (postgresql+psycopg://...); local workers use the file directly"
        ]
    try:
        import grpc  # noqa: F401
    except ImportError:
        return ["serve-storage needs grpcio and protobuf: pip install -e '.[grpc]'"]
    return storage_problems(url)


def _bindable(host: str, port: int) -> bool:
    try:
        with socket.create_server((host, port)):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    serve_main(sys.argv[1:])
