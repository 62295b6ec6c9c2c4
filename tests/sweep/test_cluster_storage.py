"""Sweeps on the one-machine cluster of `make cluster-up`: its PostgreSQL as the Optuna storage
and its MLflow server (proxied artifacts) as the tracking store, real components only. A sweep and
its resume with two workers, a killed driver's trial re-queued, PostgreSQL restarted mid-sweep,
and the preflight's error for an unreachable server.

The cluster tests read .cluster/env (else FTSWEEP_STORAGE and MLFLOW_TRACKING_URI from the
environment). Without a cluster they skip, except under CI=true, where they fail: CI must run
them. They share one xdist group: a PostgreSQL restart would cut the others' connections."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import optuna
import pytest
from cluster_support import (  # tests/sweep is on sys.path: pytest's default import mode
    ENV_FILE,
    LONG,
    OBJECTIVES,
    ROOT,
    SHORT,
    SWEEP,
    TINY,
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

from src.sweep import STORAGE_ENV, default_storage, main
from src.sweep.cli import help_text
from src.sweep.storage import slot_lock

pytestmark = pytest.mark.xdist_group("cluster")
__all__ = ["cluster", "one_cluster_test_at_a_time", "sweep"]  # fixtures, used by name


def test_a_sweep_logs_to_the_server_and_resumes_with_two_workers(cluster, sweep):
    args, name = sweep()
    run_sweep([*args, *SHORT])
    assert [t.state.name for t in trials_of(cluster, name)] == ["COMPLETE", "COMPLETE"]
    runs = runs_of(cluster, name)
    [parent] = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FINISHED" and children_of(runs, parent) == [0, 1]
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:") for r in runs)
    trial_run = next(r for r in runs if r.data.tags.get("trial") == "0")
    assert {"val/acc", "test/acc", "mem/peak_mb"} <= set(trial_run.data.metrics)
    assert MlflowClient(cluster["MLFLOW_TRACKING_URI"]).list_artifacts(trial_run.info.run_id)

    # Resume with two workers up to 4 trials: the advisory lock lets none start a fifth.
    run_sweep([*args, *SHORT, "n_trials=4", "workers=2"])
    trials = trials_of(cluster, name)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert {t.state.name for t in trials} == {"COMPLETE"}
    runs = runs_of(cluster, name)
    parents = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    newest = max(parents, key=lambda r: r.info.start_time)
    assert children_of(runs, newest) == [2, 3]


def test_a_killed_drivers_trial_is_requeued_and_run_by_the_next(cluster, sweep):
    args, name = sweep()
    driver = subprocess.Popen(
        [sys.executable, "-m", "src.sweep", *args, *LONG],
        cwd=ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": cluster["MLFLOW_TRACKING_URI"]},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        running = wait_for_training(cluster, name)
    finally:
        driver.kill()  # kill -9: no handler runs, the trial stays RUNNING in PostgreSQL
        driver.wait()
    wait_gone(running.user_attrs["pid"], 30)  # the orphaned trial process notices and stops
    assert trials_of(cluster, name)[0].state.name == "RUNNING"

    time.sleep(4)  # past the grace period (3 heartbeats of 1 s)
    run_sweep([*args, *SHORT, "n_trials=1"])
    trials = trials_of(cluster, name)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[1]) == 0
    assert trials[1].params == trials[0].params
    client = MlflowClient(cluster["MLFLOW_TRACKING_URI"])
    stale = client.get_run(running.user_attrs["run_id"])
    assert stale.info.status == "KILLED" and stale.data.tags["reason"] == "stale"
    runs = runs_of(cluster, name)
    parents = sorted(r.info.status for r in runs if r.data.tags.get("kind") == "sweep")
    assert parents == ["FINISHED", "KILLED"]  # the dead driver's parent run: KILLED
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_counting_and_asking_on_postgres_go_under_one_lock(cluster):
    """Workers on any host hold slot_lock to count trials and ask for one: a second holder waits
    for the first (two sessions, as two drivers would have)."""
    name, order = uuid.uuid4().hex, []

    def second():
        with slot_lock(cluster[STORAGE_ENV], name):
            order.append("second")

    with slot_lock(cluster[STORAGE_ENV], name):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(1)
        order.append("first")
    waiter.join(30)
    assert order == ["first", "second"]


# One objective: the trial process itself reports each validation to the storage (it reconnects
# like the driver, src/sweep/process/callback.py); two objectives: only the driver touches it.
@pytest.mark.parametrize("objectives", ["two", "one"])
def test_postgres_restarted_mid_sweep_loses_and_duplicates_nothing(cluster, sweep, objectives):
    if not ENV_FILE.is_file():
        skip_or_fail("PostgreSQL is not make cluster-up's: the test cannot restart it")
    args, name = sweep(objectives)
    # Each trial trains 4 s, reporting every 2 steps: the restart falls inside the first one.
    budget = [*LONG, "++trainer.max_time=00:00:00:04"]
    restarted = []
    restarter = threading.Thread(
        target=lambda: restarted.append(
            restart_postgres_when_training(cluster, name, reports=objectives == "one")
        ),
        daemon=True,
    )
    restarter.start()
    run_sweep([*args, *budget])
    restarter.join(120)
    assert restarted and restarted[0] < 10, restarted  # it happened; seconds it took
    trials = trials_of(cluster, name)
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE"), (1, "COMPLETE")]
    runs = runs_of(cluster, name)
    [parent] = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FINISHED" and children_of(runs, parent) == [0, 1]


def restart_postgres_when_training(cluster, name: str, reports: bool) -> float:
    """`pg_ctl restart -m fast` (every connection is cut) once the first trial is training
    (and, when it reports, has reported once); the seconds the restart took."""
    trial, deadline = wait_for_training(cluster, name), time.time() + 30
    while reports and not trial.intermediate_values and time.time() < deadline:
        time.sleep(0.2)
        trial = trials_of(cluster, name)[0]
    time.sleep(0.5)
    start = time.time()
    subprocess.run(
        ["bash", str(ROOT / "cluster" / "restart-postgres.sh")],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=90,
    )
    return time.time() - start


# Without a cluster: the default storage and the preflight's answer for an unreachable server.


def test_the_default_storage_comes_from_ftsweep_storage(monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert default_storage() == "sqlite:///mlruns/optuna.db"
    monkeypatch.setenv(STORAGE_ENV, "postgresql+psycopg://sweeper:secret@db.example:5432/optuna")
    assert default_storage() == "postgresql+psycopg://sweeper:secret@db.example:5432/optuna"
    line = next(line for line in help_text().splitlines() if "storage=STR" in line)
    assert line.endswith("[postgresql+psycopg://sweeper:***@db.example:5432/optuna]")


def test_an_unreachable_postgres_is_one_error_before_any_work(tmp_path, monkeypatch, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(SWEEP.format(base=TINY, objectives=OBJECTIVES["one"]))
    port = free_port()
    monkeypatch.setenv(STORAGE_ENV, f"postgresql+psycopg://sweeper:secret@127.0.0.1:{port}/optuna")
    start = time.time()
    with pytest.raises(SystemExit) as stop:
        main([f"sweep={path}", f"paths.root={tmp_path}", *SHORT])  # storage: from the env
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 problem(s)") and "Traceback" not in err
    [problem] = [line for line in err.splitlines() if line.startswith("  - ")]
    assert problem.startswith(
        f"  - storage=postgresql+psycopg://sweeper:***@127.0.0.1:{port}/optuna: cannot connect"
    )
    assert "Connection refused" in problem and "secret" not in err
    assert time.time() - start < 30 and not (tmp_path / "sweeps").exists()  # nothing ran
