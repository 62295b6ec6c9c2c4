"""Faults of the sweep's own processes, with real processes and real SQLite stores: SIGTERM then
resume, kill -9 of a driver then a second worker cleaning up, four workers on one study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
from cluster_support import (  # tests/sweep is on sys.path
    LONG,
    OBJECTIVES,
    SWEEP,
    TINY,
    wait_until_training,
)
from mlflow.tracking import MlflowClient

from src.sweep import main

ROOT = Path(__file__).resolve().parent.parent


def start_driver(
    path: str, name: str, storage: str, overrides: list[str], *extra: str
) -> subprocess.Popen:
    """The sweep CLI in its own session (process group), as a terminal would start it."""
    cmd = [
        sys.executable,
        "-m",
        "src.sweep",
        f"sweep={path}",
        f"study_name={name}",
        f"storage={storage}",
        "report=false",
        "heartbeat_s=1",
        *overrides,
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_running_trial(
    name: str, storage: str, timeout: float = 180
) -> optuna.trial.FrozenTrial:
    """The first trial once its process is training (its MLflow run exists)."""
    load = lambda: optuna.load_study(study_name=name, storage=storage).trials  # noqa: E731
    return wait_until_training(load, name, timeout)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def runs_of(store: str) -> list:
    client = MlflowClient(store)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


# SIGTERM to the driver alone (a scheduler, `kill`): the driver stops the trial process.
# SIGINT to the whole process group (Ctrl-C in a terminal): the trial process hears it too.
STOPS = {
    "sigterm-driver": lambda p: p.send_signal(signal.SIGTERM),
    "ctrl-c-group": lambda p: os.killpg(p.pid, signal.SIGINT),
}


@pytest.mark.parametrize("stop", sorted(STOPS))
def test_an_interrupt_stops_cleanly_and_resume_loses_nothing(stop, sweep_env, store):
    path, storage, overrides = sweep_env(SWEEP.format(base=TINY, objectives=OBJECTIVES["one"]))
    driver = start_driver(path, "term", storage, overrides, *LONG)
    running = wait_for_running_trial("term", storage)
    STOPS[stop](driver)
    output, _ = driver.communicate(timeout=90)
    assert driver.returncode == 130, output
    assert "Trial #0 was stopped, recorded as FAIL (interrupted) and re-queued" in output
    assert (
        "Resume with:" in output
        and "study_name=term" in output
        and "early_stopping.enabled=false" in output
    )  # the same overrides

    study = optuna.load_study(study_name="term", storage=storage)
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    assert study.trials[0].user_attrs["reason"] == "interrupted"
    assert study.trials[1].params == study.trials[0].params  # re-queued as is
    assert gone(running.user_attrs["pid"])
    client = MlflowClient(store)
    trial_run = client.get_run(running.user_attrs["run_id"])
    assert trial_run.info.status == "KILLED" and trial_run.data.tags["reason"] == "interrupted"
    assert client.get_run(study.user_attrs["mlflow_parent_run_id"]).info.status == "KILLED"

    main(
        [
            f"sweep={path}",
            "study_name=term",
            f"storage={storage}",
            "report=false",
            *overrides,
            "trainer.max_steps=2",
        ]
    )
    study = optuna.load_study(study_name="term", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2]  # numbering continues
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[1].params == study.trials[0].params  # the interrupted trial ran again
    assert not [r for r in runs_of(store) if r.info.status == "RUNNING"]


def test_killed_driver_is_cleaned_up_by_the_next_worker(sweep_env, store):
    path, storage, overrides = sweep_env(SWEEP.format(base=TINY, objectives=OBJECTIVES["one"]))
    driver = start_driver(path, "dead", storage, overrides, *LONG)
    running = wait_for_running_trial("dead", storage)
    driver.kill()  # kill -9: no handler runs, the Optuna trial stays RUNNING
    driver.wait()
    deadline = time.time() + 30  # the orphaned trial process notices and stops (every 2 s)
    while not gone(running.user_attrs["pid"]) and time.time() < deadline:
        time.sleep(0.5)
    assert gone(running.user_attrs["pid"])
    study = optuna.load_study(study_name="dead", storage=storage)
    assert study.trials[0].state.name == "RUNNING"

    time.sleep(4)  # past the grace period (3 heartbeats of 1 s)
    main(
        [
            f"sweep={path}",
            "study_name=dead",
            f"storage={storage}",
            "report=false",
            "heartbeat_s=1",
            "n_trials=1",
            *overrides,
            "trainer.max_steps=2",
        ]
    )
    study = optuna.load_study(study_name="dead", storage=storage)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    retry = study.trials[1]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retry.params == study.trials[0].params
    client = MlflowClient(store)
    stale = client.get_run(running.user_attrs["run_id"])
    assert stale.info.status == "KILLED" and stale.data.tags["reason"] == "stale"
    parents = [r for r in runs_of(store) if r.data.tags.get("kind") == "sweep"]
    assert sorted(r.info.status for r in parents) == [
        "FINISHED",
        "KILLED",
    ]  # the dead driver's: KILLED
    assert not [r for r in runs_of(store) if r.info.status == "RUNNING"]


def test_four_workers_on_one_sqlite_study_lose_and_duplicate_nothing(sweep_env, store, monkeypatch):
    # Four GPUs for four workers: each gets its own (no GPU is needed to check the split).
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    path, storage, overrides = sweep_env(SWEEP.format(base=TINY, objectives=OBJECTIVES["one"]))
    main(
        [
            f"sweep={path}",
            "study_name=four",
            f"storage={storage}",
            "report=false",
            "workers=4",
            "n_trials=8",
            *overrides,
            "trainer.max_steps=2",
        ]
    )
    study = optuna.load_study(study_name="four", storage=storage)
    assert sorted(t.number for t in study.trials) == list(range(8))
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    parent = study.user_attrs["mlflow_parent_run_id"]
    children = [r for r in runs_of(store) if r.data.tags.get("mlflow.parentRunId") == parent]
    assert sorted(int(r.data.tags["trial"]) for r in children) == list(
        range(8)
    )  # one run per trial
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {t.user_attrs["run_id"] for t in study.trials} == {r.info.run_id for r in children}
    assert len({t.user_attrs["pid"] for t in study.trials}) == 8
    assert MlflowClient(store).get_run(parent).info.status == "FINISHED"
    assert os.path.exists(storage[len("sqlite:///") :].replace(".db", ".lock"))
    gpus_of = {r.data.tags["worker"]: r.data.tags["cuda_visible_devices"] for r in children}
    assert set(gpus_of.values()) <= {"0", "1", "2", "3"}
    assert len(set(gpus_of.values())) == len(gpus_of)  # no two workers share a GPU
