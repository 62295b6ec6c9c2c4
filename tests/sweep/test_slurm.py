"""launcher=slurm on the one-machine cluster of `make cluster-up` (real SLURM, PostgreSQL and
MLflow server): workers as a job array whose trials carry their job ids, a detached sweep that
`status` follows and reports, and a worker job cancelled mid-trial whose trial another worker
runs. Input errors are checked without a cluster."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from cluster_support import (  # tests/sweep is on sys.path: pytest's default import mode
    SHORT,
    children_of,
    cluster,
    one_cluster_test_at_a_time,
    run_sweep,
    runs_of,
    sweep,
    trials_of,
)

from src.sweep import main
from src.sweep.gpus import worker_gpus

__all__ = ["cluster", "one_cluster_test_at_a_time", "sweep"]  # fixtures, used by name
SLURM = ["launcher=slurm", "launcher.time_min=10", "launcher.cpus_per_worker=1"]
cluster_only = pytest.mark.xdist_group("cluster")


@pytest.fixture(autouse=True)
def slurm_conf(request, monkeypatch):
    """sbatch, sacct and scancel (here and in the worker jobs) talk to make cluster-up's SLURM."""
    if "cluster" in request.fixturenames:
        conf = request.getfixturevalue("cluster").get("SLURM_CONF")
        if conf:
            monkeypatch.setenv("SLURM_CONF", conf)


@cluster_only
def test_two_slurm_workers_share_one_study_and_parent_run(cluster, sweep):
    args, name = sweep()
    run_sweep([*args, *SHORT, *SLURM, "workers=2", "n_trials=4"])
    trials = trials_of(cluster, name)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    runs = runs_of(cluster, name)
    [parent] = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FINISHED" and children_of(runs, parent) == [0, 1, 2, 3]
    workers = {r.data.tags["worker"] for r in runs if r.data.tags.get("trial")}
    array = trials_of(cluster, name)[0].user_attrs["worker"].split(":")[1].split("_")[0]
    assert workers == {f"slurm:{array}_0", f"slurm:{array}_1"}  # trials from both jobs


@cluster_only
def test_a_detached_sweep_is_followed_and_reported_by_status(cluster, sweep, tmp_path, capsys):
    args, name = sweep()
    run_sweep([*args, *SHORT, *SLURM, "workers=1", "follow=false"])
    printed = capsys.readouterr().out
    assert f"python -m src.sweep status study_name={name}" in printed
    main(["status", f"study_name={name}", f"storage={cluster['FTSWEEP_STORAGE']}"])
    assert [t.state.name for t in trials_of(cluster, name)] == ["COMPLETE", "COMPLETE"]
    [parent] = [r for r in runs_of(cluster, name) if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FINISHED"
    assert (tmp_path / "reports" / name / "report.html").is_file()


@cluster_only
def test_a_cancelled_worker_jobs_trial_is_requeued_and_run_by_the_other(cluster, sweep, tmp_path):
    args, name = sweep()
    # ~15 s trials: the cancel lands inside worker 0's first trial.
    run_sweep([*args, *trials_of_seconds(15), *SLURM, "workers=2", "n_trials=2", "follow=false"])
    victim = wait_for_running(cluster, name, slurm_logs(tmp_path, name))
    job = victim.user_attrs["worker"].removeprefix("slurm:")
    subprocess.run(["scancel", job], check=True)
    main(["status", f"study_name={name}", f"storage={cluster['FTSWEEP_STORAGE']}"])
    trials = trials_of(cluster, name)
    retry = [t for t in trials if retried_from(t) == victim.number]
    assert trials[victim.number].state.name == "FAIL" and len(retry) == 1
    assert retry[0].state.name == "COMPLETE" and retry[0].params == victim.params
    assert retry[0].user_attrs["worker"] != victim.user_attrs["worker"]
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2


def trials_of_seconds(seconds: int) -> list[str]:
    """Overrides for trials that train until Lightning's max_time stops them."""
    return [
        "trainer.max_steps=100000",
        "early_stopping.enabled=false",
        f"++trainer.max_time=00:00:00:{seconds:02d}",
    ]


def slurm_logs(root: Path, name: str) -> Path:
    """Where submitit writes the worker jobs' logs of a sweep with paths.root=root."""
    return root / "sweeps" / name / "slurm"


def retried_from(trial) -> int | None:
    return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def wait_for_running(cluster, name: str, logs: Path, timeout: float = 300):
    """The first trial that is training (its worker has reported a run). The limit is generous
    (the wait ends as soon as one trains: ~30 s here, quiet or beside two busy cores); when it
    is reached, the message says where the jobs were, so a slow start can be told from a
    job SLURM never ran."""
    start = time.time()
    while time.time() < start + timeout:
        for trial in trials_of(cluster, name):
            if trial.state.name == "RUNNING" and "run_id" in trial.user_attrs:
                print(
                    f"trial #{trial.number} training {time.time() - start:.0f} s after submission"
                )
                return trial
        time.sleep(0.5)
    where = where_jobs_are(cluster, name, logs)
    raise AssertionError(f"no trial of {name} started training within {timeout} s\n{where}")


def where_jobs_are(cluster, name: str, logs: Path) -> str:
    """The study's trial states, SLURM's queue and node, and the tail of each worker log."""
    trials = [(t.number, t.state.name, sorted(t.user_attrs)) for t in trials_of(cluster, name)]
    lines = [f"trials: {trials}"]
    for argv in (["squeue", "-a", "-t", "all"], ["sinfo", "-N", "-l"]):
        done = subprocess.run(argv, capture_output=True, text=True)
        lines.append(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    for log in sorted(logs.glob("*_log.*")):
        tail = log.read_text(errors="replace").splitlines()[-15:]
        lines.append(f"== {log.name}\n" + "\n".join(tail))
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["launcher=pbs"], "launcher='pbs': must be local or slurm"),
        (["launcher.partition=gpu"], "launcher.partition: only with launcher=slurm"),
        (["launcher=slurm", "storage=sqlite:///x.db"], "the storage must be a database"),
        (["launcher=slurm", "launcher.gpus_per_worker=-1"], "must be an integer >= 0"),
    ],
)
def test_launcher_input_is_checked_before_any_work(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sweep=default", f"paths.root={tmp_path}", *args])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()


def test_trials_needing_more_gpus_than_a_worker_has_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")  # 1 GPU each for 2 workers
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "sweep=default",
                f"paths.root={tmp_path}",
                "workers=2",
                "trainer=gpu",
                "trainer.devices=2",
            ]
        )
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "trainer.devices=2 GPU(s) per trial (every trial), but each worker has 1" in err
    assert "3 visible GPU(s) / workers=2" in err and not (tmp_path / "sweeps").exists()


def test_local_workers_get_their_own_gpus():
    gpus = ["0", "1", "2", "3", "4"]
    assert [worker_gpus(i, 2, gpus) for i in range(2)] == ["0,1", "2,3"]
    assert [worker_gpus(i, 4, gpus) for i in range(4)] == ["0", "1", "2", "3"]
    assert worker_gpus(0, 8, gpus) is None  # fewer GPUs than workers: no split


@cluster_only
def test_a_preempted_worker_requeues_its_trial_and_its_job(cluster, sweep, tmp_path):
    args, name = sweep()
    run_sweep([*args, *trials_of_seconds(20), *SLURM, "workers=1", "n_trials=2", "follow=false"])
    victim = wait_for_running(cluster, name, slurm_logs(tmp_path, name))
    job = victim.user_attrs["worker"].removeprefix("slurm:")
    # What SLURM sends before pre-empting or at the time limit (submitit: --signal=USR1@90).
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    main(["status", f"study_name={name}", f"storage={cluster['FTSWEEP_STORAGE']}"])
    trials = trials_of(cluster, name)
    first = trials[victim.number]
    assert first.state.name == "FAIL" and first.user_attrs["reason"] == "interrupted"
    [retry] = [t for t in trials if retried_from(t) == victim.number]
    assert retry.state.name == "COMPLETE" and retry.params == victim.params
    assert retry.user_attrs["worker"] == victim.user_attrs["worker"]  # the same job, requeued
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2


@cluster_only
def test_job_states_without_accounting_come_from_squeue(cluster, tmp_path, monkeypatch):
    """On a cluster without accounting sacct fails ("accounting storage is disabled"); job
    states then come from squeue, and a job squeue no longer lists has ended."""
    from src.sweep import slurm

    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "sacct").write_text(
        "#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n"
    )
    (shim / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--array=0-1",
            "--cpus-per-task=1",
            f"--output={tmp_path}/%A_%a.out",
            "--wrap",
            "sleep 3",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    array = submitted.stdout.strip().split(";")[0]
    states = slurm.job_states(array)
    assert states and not slurm.all_ended(states), states  # pending or running, from squeue
    deadline = time.time() + 60
    while not slurm.all_ended(slurm.job_states(array)) and time.time() < deadline:
        time.sleep(1)
    assert slurm.all_ended(slurm.job_states(array))
    assert slurm.job_states("999999") == {"999999": slurm.GONE}  # never listed: ended
