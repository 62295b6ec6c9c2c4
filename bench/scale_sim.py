"""bench/scale.py's simulation and TPE parts.

Simulation: N threads in one process, each a driver's storage loop with the project's own
functions: next_trial (slot lock, fail_stale_trials, count, study.ask) -> suggest the default
sweep's space -> one heartbeat -> STUB_S of sleep -> study.tell. Each simulated worker opens its
own storage (its own connections, as a driver process would; on PostgreSQL also its own
advisory-lock connection), no MLflow. What it cannot show: N machines' CPUs. Every sampler call
here shares this process's one interpreter lock on 2 cores, so the saturation it finds is an
upper bound on what one ask may cost, not a cluster's.

TPE: a study of the default sweep's space pre-filled with finished trials (random values), then
study.ask() + the space's suggestions timed with the sweep's sampler settings.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from types import SimpleNamespace

STUB_S = 5.0
SIZES = (64, 256, 1024)
PROXY_THREADS = 16
PROXY_PORT = 13071


def simulations(env: dict, quick: bool, measured) -> list[dict]:
    """Every size against PostgreSQL directly, then through a gRPC proxy served here."""
    window = 20.0 if quick else 40.0
    rows = [measured(simulate, env["FTSWEEP_STORAGE"], n, window, "postgresql") for n in SIZES]
    # The proxy in a process of its own (as on a cluster): not sharing the workers' interpreter.
    server = subprocess.Popen(
        [sys.executable, "-m", "src.sweep", "serve-storage", f"port={PROXY_PORT}"]
        + [f"threads={PROXY_THREADS}", f"storage={env['FTSWEEP_STORAGE']}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().startswith("[serve-storage]"), "the proxy did not start"
        url = f"grpc://127.0.0.1:{PROXY_PORT}"
        rows += [measured(simulate, url, n, window, "grpc proxy") for n in SIZES]
    finally:
        server.terminate()
        server.wait(30)
    return rows


def _worker_url(url: str, index: int) -> str:
    """On PostgreSQL a URL per worker: its own engine for the slot lock (cached per URL), as in
    a driver process of its own."""
    if url.startswith("postgresql"):
        return f"{url}?application_name=sim{index}"
    return url


def simulate(url: str, n: int, window_s: float, backend: str) -> dict:
    """n simulated workers for window_s; throughput and ask latency in the steady part."""
    import optuna

    import src.sweep.storage as storage_mod
    from src.sweep.driver import Plan, next_trial
    from src.sweep.spec import load_spec
    from src.sweep.storage import open_storage, open_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage_mod.RECONNECT_S = 10  # a refused connection (too many clients) surfaces in 10 s
    spec = load_spec("default", [])
    name = f"scale-sim-{n}-{uuid.uuid4().hex[:6]}"
    open_study(spec, name, url)  # created once, with the default sweep's enqueued starts
    plan = Plan(n_trials=10**9, deadline=None, trial_cap=None, heartbeat_s=None)
    stop_at = time.time() + window_s + 10  # 10 s to ramp up
    asks, done, errors, lock = [], [], [], threading.Lock()

    def worker(index: int) -> None:
        storage = None
        try:
            storage = open_storage(_worker_url(url, index))
            study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(spec))
            ctx = SimpleNamespace(study=study, storage=_worker_url(url, index))
            time.sleep(random.uniform(0, STUB_S))  # workers start spread out, as jobs do
            while time.time() < stop_at:
                start = time.time()
                trial = next_trial(ctx, plan)
                _suggest(trial, spec)
                asked = time.time()
                study._storage.record_heartbeat(trial._trial_id)
                time.sleep(STUB_S)
                study.tell(trial, random.random())
                with lock:
                    asks.append((start, asked - start))
                    done.append(time.time())
        except Exception as err:  # noqa: BLE001 - counted: what stops a worker is the finding
            with lock:
                errors.append(f"{type(err).__name__}: {str(err).splitlines()[0][:160]}")
        finally:
            _close(storage, _worker_url(url, index))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(window_s + 60)
    steady = stop_at - window_s
    in_window = [t for t in done if steady <= t <= stop_at]
    latencies = sorted(s for start, s in asks if start >= steady)
    return {
        "backend": backend,
        "workers": n,
        "window_s": window_s,
        "trials_per_hour": round(len(in_window) / window_s * 3600),
        "ideal_per_hour": round(n * 3600 / STUB_S),
        "efficiency": round(len(in_window) / window_s * STUB_S / n, 3),
        "ask_s_median": _round(statistics.median(latencies)) if latencies else None,
        "ask_s_p95": _round(latencies[int(0.95 * (len(latencies) - 1))]) if latencies else None,
        "workers_failed": len(errors),
        "errors": sorted(set(errors))[:3],
    }


def _close(storage, url: str) -> None:
    """Give the worker's connections back now: the next size must find the server as empty."""
    from src.sweep.storage import _lock_engine

    if hasattr(storage, "engine"):
        storage.engine.dispose()
    elif storage is not None:
        storage.close()
    if url.startswith("postgresql"):
        _lock_engine(url).dispose()


def _sampler(spec):
    from src.sweep.samplers import build_sampler

    return build_sampler(spec)


def _suggest(trial, spec) -> None:
    from src.sweep.space import suggest

    suggest(trial, spec.space)


def _round(value: float) -> float:
    return round(value, 4)


def tpe_ask(n_finished: int, quick: bool) -> dict:
    """Seconds per ask (study.ask + the space's suggestions) with n_finished finished trials."""
    import optuna

    from src.sweep.spec import load_spec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = load_spec("default", [])
    start = time.time()
    filler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n_finished):  # the same params and distributions a sweep would record
        trial = filler.ask()
        _suggest(trial, spec)
        filler.tell(trial, random.random())
    fill_s = time.time() - start
    study = optuna.create_study(sampler=_sampler(spec), direction="maximize")
    study.add_trials(filler.trials)
    times = []
    for _ in range(3 if quick else 5):
        start = time.perf_counter()
        trial = study.ask()
        _suggest(trial, spec)
        times.append(time.perf_counter() - start)
        study.tell(trial, random.random())
    return {
        "finished_trials": n_finished,
        "asks": len(times),
        "ask_s_median": _round(statistics.median(times)),
        "ask_s_max": _round(max(times)),
        "fill_s": round(fill_s, 1),
    }
