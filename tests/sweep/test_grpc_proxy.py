"""storage=grpc://: sweeps through `python -m src.sweep serve-storage` (Optuna's gRPC storage
proxy plus our coordination service). On the cluster of `make cluster-up`: two workers through
the proxy never exceed n_trials and log to the MLflow server; a killed driver's trial is failed
by heartbeat through the proxy, its run closed and its parameters re-queued and run; a
PostgreSQL restart behind the proxy is ridden out. Without a cluster (a proxy over a SQLite
file, in this process): heartbeats and the slot lease, a plain Optuna proxy refused, and bad
input refused before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import optuna
import pytest
from cluster_support import (  # tests/sweep is on sys.path: pytest's default import mode
    ENV_FILE,
    LONG,
    ROOT,
    SHORT,
    children_of,
    cluster,
    free_port,
    one_cluster_test_at_a_time,
    run_sweep,
    runs_of,
    skip_or_fail,
    sweep,
    trials_of,
    wait_for_training,
    wait_gone,
)
from mlflow.tracking import MlflowClient

from src.sweep import STORAGE_ENV, main
from src.sweep.grpc_server import build_server
from src.sweep.storage import heartbeat, open_storage, slot_lock

__all__ = ["cluster", "one_cluster_test_at_a_time", "sweep"]  # fixtures, used by name
cluster_only = pytest.mark.xdist_group("cluster")


@pytest.fixture(scope="module")
def proxy(cluster):
    """serve-storage in front of the cluster's PostgreSQL, as its own process; its URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "src.sweep", "serve-storage", f"port={port}"],
        cwd=ROOT,
        env={**os.environ, STORAGE_ENV: cluster[STORAGE_ENV]},
        stdout=subprocess.PIPE,
        text=True,
    )
    first = server.stdout.readline()  # printed once it listens
    assert first.startswith("[serve-storage]") and "***" in first, first
    yield f"grpc://127.0.0.1:{port}"
    server.terminate()
    assert server.wait(30) == 0


@cluster_only
def test_two_workers_through_the_proxy_run_exactly_n_trials(cluster, sweep, proxy, tmp_path):
    args, name = sweep()
    run_sweep([*args, f"storage={proxy}", *SHORT, "workers=2", "n_trials=4"])
    trials = trials_of(cluster, name)  # read from PostgreSQL itself: the proxy wrote there
    assert [(t.number, t.state.name) for t in trials] == [(n, "COMPLETE") for n in range(4)]
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    runs = runs_of(cluster, name)
    [parent] = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FINISHED" and children_of(runs, parent) == [0, 1, 2, 3]
    out = main(["report", f"study_name={name}", f"storage={proxy}", f"out={tmp_path / 'report'}"])
    assert (out / "trials.csv").read_text().count("\n") == 5  # header + 4 trials


@cluster_only
def test_a_killed_drivers_trial_is_requeued_through_the_proxy(cluster, sweep, proxy):
    args, name = sweep()
    driver = subprocess.Popen(
        [sys.executable, "-m", "src.sweep", *args, f"storage={proxy}", *LONG],
        cwd=ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": cluster["MLFLOW_TRACKING_URI"]},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        running = wait_for_training(cluster, name)
    finally:
        driver.kill()  # no handler runs: only the missing heartbeats tell
        driver.wait()
    wait_gone(running.user_attrs["pid"], 30)
    assert trials_of(cluster, name)[0].state.name == "RUNNING"

    time.sleep(4)  # past the grace period (3 heartbeats of 1 s)
    run_sweep([*args, f"storage={proxy}", *SHORT, "n_trials=1"])
    trials = trials_of(cluster, name)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[1]) == 0
    assert trials[1].params == trials[0].params
    stale = MlflowClient(cluster["MLFLOW_TRACKING_URI"]).get_run(running.user_attrs["run_id"])
    assert stale.info.status == "KILLED" and stale.data.tags["reason"] == "stale"


@cluster_only
def test_a_postgres_restart_behind_the_proxy_is_ridden_out(cluster, sweep, proxy):
    if not ENV_FILE.is_file():
        skip_or_fail("PostgreSQL is not make cluster-up's: the test cannot restart it")
    from test_cluster_storage import restart_postgres_when_training

    args, name = sweep()
    restarted = []
    restarter = threading.Thread(
        target=lambda: restarted.append(restart_postgres_when_training(cluster, name, True)),
        daemon=True,
    )
    restarter.start()
    # One objective: the trial process reports each validation through the proxy too.
    run_sweep([*args, f"storage={proxy}", *LONG, "++trainer.max_time=00:00:00:04"])
    restarter.join(120)
    assert restarted and restarted[0] < 10, restarted
    trials = trials_of(cluster, name)
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE"), (1, "COMPLETE")]


# Without a cluster: a proxy over a SQLite file, served in this process.


@pytest.fixture
def local_proxy(tmp_path):
    port = free_port()
    server = build_server(f"sqlite:///{tmp_path / 'optuna.db'}", "127.0.0.1", port, threads=4)
    server.start()
    yield f"grpc://127.0.0.1:{port}"
    server.stop(grace=None)


def test_heartbeats_through_the_proxy_fail_and_requeue_a_silent_trial(local_proxy):
    storage = open_storage(local_proxy, heartbeat_s=1)
    study = optuna.create_study(study_name="beats", storage=storage)
    alive, silent = study.ask(), study.ask()
    beat_alive, every_s = heartbeat(study, alive)
    beat_silent, _ = heartbeat(study, silent)
    assert every_s == 1.0
    beat_silent()  # beats once, then its driver "dies"
    for _ in range(5):  # the other keeps beating past the grace period (3 s)
        beat_alive()
        time.sleep(1)
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states == {0: "RUNNING", 1: "FAIL", 2: "WAITING"}  # 2: silent's params re-queued
    assert study.user_attrs["stale_trial_1"] == "failed by heartbeat, re-queued"


def test_the_slot_lease_makes_a_second_holder_wait(local_proxy):
    order = []

    def second():
        with slot_lock(local_proxy, "study-a"):
            order.append("second")

    with slot_lock(local_proxy, "study-a"):
        waiter = threading.Thread(target=second)
        waiter.start()
        with slot_lock(local_proxy, "study-b"):  # another study's lock is free
            order.append("other study")
        time.sleep(1)
        order.append("first")
    waiter.join(30)
    assert order == ["other study", "first", "second"]


def test_a_plain_optuna_proxy_is_refused(tmp_path, capsys):
    from optuna.storages._grpc.server import make_server

    port = free_port()
    server = make_server(optuna.storages.InMemoryStorage(), "127.0.0.1", port)
    server.start()
    try:
        with pytest.raises(SystemExit) as stop:
            main(["sweep=default", f"storage=grpc://127.0.0.1:{port}", f"paths.root={tmp_path}"])
    finally:
        server.stop(grace=None)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "a plain Optuna proxy: it has no heartbeats" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["port=70000"], "port='70000': must be an integer from 1 to 65535"),
        (["threads=0"], "threads='0': must be an integer from 1 to 1024"),
        (["listen=x"], "'listen=x': serve-storage takes host, port, storage, threads"),
        (["storage=sqlite:///x.db"], "a file on this machine"),
        (["storage=grpc://127.0.0.1:13000"], "already a proxy"),
        (["storage=postgresql+psycopg://u:secret@127.0.0.1:{port}/db"], "cannot connect"),
    ],
)
def test_serve_storage_input_is_checked_before_it_starts(args, message, capsys):
    args = [a.format(port=free_port()) for a in args]
    start = time.time()
    with pytest.raises(SystemExit) as stop:
        main(["serve-storage", *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and "secret" not in err
    assert "Traceback" not in err and time.time() - start < 30


def test_a_proxy_that_does_not_answer_is_one_error_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sweep=default", f"storage=grpc://127.0.0.1:{free_port()}", f"paths.root={tmp_path}"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "no gRPC storage proxy answers within 5 s" in err
    assert not (tmp_path / "sweeps").exists()
