"""What the cluster tests share (test_cluster_storage.py, test_slurm.py): the cluster of
`make cluster-up` read from .cluster/env, a tiny sweep on it with its own study name, the
MLflow runs of a study, and a lock so no two cluster tests ever overlap (a PostgreSQL restart
cuts every connection). Without a cluster they skip, except under CI=true, where they fail."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import optuna
import psutil
import pytest
from mlflow.tracking import MlflowClient
from tiny_runs import TINY_TRIALS  # tests/sweep is on sys.path

from src.sweep import STORAGE_ENV, main
from src.sweep.preflight import storage_problems
from src.sweep.storage import open_storage

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / ".cluster" / "env"
EXPERIMENT = "ftsweep-cluster-tests"
TINY = [
    *TINY_TRIALS,
    "data.batch_size=16",
    "trainer.val_check_interval=2",
    "trainer.max_epochs=-1",
]
SHORT = ["trainer.max_steps=2"]
LONG = ["trainer.max_steps=100000", "early_stopping.enabled=false"]  # runs until it is stopped
OBJECTIVES = {
    "one": "[{metric: val/acc, direction: maximize}]",
    "two": "[{metric: val/acc, direction: maximize}, {metric: time/train_s, direction: minimize}]",
}
SWEEP = """
base: {base}
space:
  lr: {{type: float, low: 1e-4, high: 1e-2, log: true, path: optim.lr}}
  rank: {{type: categorical, choices: [2, 4, 8], path: adapter.peft.r}}
sampler: {{name: tpe, seed: 0}}
pruner: {{name: none}}
objectives: {objectives}
n_trials: 2
"""
# A PostgreSQL restart cuts every connection to it: cluster tests must never overlap, whichever
# xdist worker runs them (the group above keeps them on one worker; this lock makes sure).
TEST_LOCK = Path(tempfile.gettempdir()) / "ftsweep-cluster-tests.lock"


@pytest.fixture(autouse=True)
def one_cluster_test_at_a_time(request):
    """Only tests on the cluster take the lock: a test beside them in the module that needs no
    cluster ran on the other xdist worker and waited there for a long cluster test (75 s)."""
    if "cluster" not in request.fixturenames:
        yield
        return
    with open(TEST_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cluster_env() -> dict[str, str]:
    """.cluster/env's variables, else the storage and tracking URI from the environment."""
    if ENV_FILE.is_file():
        return dict(re.findall(r"^export (\w+)=(.*)$", ENV_FILE.read_text(), re.M))
    keys = (STORAGE_ENV, "MLFLOW_TRACKING_URI")
    return {k: os.environ[k] for k in keys if k in os.environ}


def unusable(env: dict[str, str]) -> str | None:
    """Why these tests cannot run here, or None."""
    storage, uri = env.get(STORAGE_ENV, ""), env.get("MLFLOW_TRACKING_URI", "")
    if not storage.startswith("postgresql") or not uri.startswith("http"):
        return (
            "no cluster: run `make cluster-up` (it writes .cluster/env), or set "
            f"{STORAGE_ENV}=postgresql+psycopg://... and MLFLOW_TRACKING_URI=http://..."
        )
    problems = storage_problems(storage)
    if problems:
        return f"the cluster's PostgreSQL does not answer: {problems[0]}"
    try:
        urllib.request.urlopen(f"{uri}/health", timeout=5).close()
    except OSError as err:
        return f"the MLflow server at {uri} does not answer: {err}"
    return None


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster() -> dict[str, str]:
    env = cluster_env()
    reason = unusable(env)
    if reason:
        skip_or_fail(reason)
    return env


@pytest.fixture
def sweep(cluster, tmp_path, request):
    """(arguments of a sweep on the cluster with its own study name, study name); the sweep
    file has one or two objectives."""
    name = re.sub(r"\W+", "-", request.node.name)[:40] + "-" + uuid.uuid4().hex[:8]

    def _make(objectives: str = "one") -> tuple[list[str], str]:
        path = tmp_path / "tiny.yaml"
        path.write_text(SWEEP.format(base=TINY, objectives=OBJECTIVES[objectives]))
        return [
            f"sweep={path}",
            f"study_name={name}",
            f"storage={cluster[STORAGE_ENV]}",
            "report=false",
            "heartbeat_s=1",
            f"paths.root={tmp_path}",
            f"logger.tracking_uri={cluster['MLFLOW_TRACKING_URI']}",
            f"logger.experiment={EXPERIMENT}",
        ], name

    return _make


def run_sweep(args: list[str]) -> optuna.Study:
    """main() in this process; a sweep that exits is a failure with its exit code."""
    try:
        return main(args)
    except SystemExit as stop:
        raise AssertionError(f"the sweep exited with {stop.code}") from None


def trials_of(cluster, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(cluster[STORAGE_ENV])  # reconnects, as the drivers do
    return optuna.load_study(study_name=name, storage=storage).trials


def runs_of(cluster, name: str) -> list:
    """The MLflow runs of one study (parent and trials) on the server."""
    client = MlflowClient(cluster["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], f"tags.study_name = '{name}'")


def children_of(runs: list, parent) -> list[int]:
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {r.info.status for r in kids} == {"FINISHED"}
    return sorted(int(r.data.tags["trial"]) for r in kids)


def wait_for_training(cluster, name: str, timeout: float = 180) -> optuna.trial.FrozenTrial:
    """The first trial of study `name` on the cluster once its process is training."""
    return wait_until_training(lambda: trials_of(cluster, name), name, timeout)


def wait_until_training(load_trials, name: str, timeout: float = 180) -> optuna.trial.FrozenTrial:
    """The first trial load_trials() returns once its process is training (its MLflow run
    exists); the study may not exist yet (KeyError) when the driver has only just started."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            trials = load_trials()
        except KeyError:
            trials = []
        if trials and trials[0].user_attrs.get("run_id"):
            return trials[0]
        time.sleep(0.5)
    raise AssertionError(f"no trial of {name} started training within {timeout} s")


def wait_gone(pid: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.5)
    raise AssertionError(f"trial process {pid} still running after {timeout} s")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
