"""The cluster's MLflow server unreachable for 30 s in the middle of a trial (stopped and started
again by cluster/outage-mlflow.sh, as a restart or a network cut would): the trial trains on,
what it logged meanwhile arrives afterwards, and no run is left RUNNING. Real server, real
PostgreSQL (make cluster-up); skipped without a cluster, failed under CI=true."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from cluster_support import (  # tests/sweep is on sys.path: pytest's default import mode
    ENV_FILE,
    LONG,
    ROOT,
    cluster,
    one_cluster_test_at_a_time,
    run_sweep,
    runs_of,
    skip_or_fail,
    sweep,
    trials_of,
    wait_for_training,
)
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.xdist_group("cluster")
__all__ = ["cluster", "one_cluster_test_at_a_time", "sweep"]  # fixtures, used by name
OUTAGE_S = 30


def test_a_tracking_server_outage_does_not_stop_training_or_lose_metrics(cluster, sweep):
    if not ENV_FILE.is_file():
        skip_or_fail("the MLflow server is not make cluster-up's: the test cannot stop it")
    args, name = sweep()
    # One trial, 60 s of training logging every step; the outage starts once it trains.
    budget = [*LONG, "++trainer.max_time=00:00:01:00", "trainer.log_every_n_steps=1", "n_trials=1"]
    outage: list[tuple[float, float]] = []
    thread = threading.Thread(target=lambda: outage.append(cut_when_training(cluster, name)))
    thread.start()
    run_sweep([*args, *budget])
    thread.join(180)
    assert outage, "the outage never happened"
    down, up = outage[0]
    assert up - down >= OUTAGE_S

    [trial] = trials_of(cluster, name)
    assert trial.state.name == "COMPLETE"
    runs = runs_of(cluster, name)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    run_id = trial.user_attrs["run_id"]
    assert MlflowClient(cluster["MLFLOW_TRACKING_URI"]).get_run(run_id).info.status == "FINISHED"
    # Steps taken while the server was away: logged then (their timestamps), stored afterwards.
    history = MlflowClient(cluster["MLFLOW_TRACKING_URI"]).get_metric_history(run_id, "train/loss")
    during = [m for m in history if down + 2 < m.timestamp / 1000 < up - 2]
    assert len(during) >= 10, (len(during), len(history))
    steps = sorted(m.step for m in history)
    assert steps == list(range(steps[0], steps[0] + len(steps)))  # none lost


def cut_when_training(cluster, name: str) -> tuple[float, float]:
    """Once the trial trains, the server away for OUTAGE_S; (epoch seconds it went down, epoch
    seconds it answered again)."""
    wait_for_training(cluster, name)
    time.sleep(2)
    down = time.time()
    subprocess.run(
        ["bash", str(ROOT / "cluster" / "outage-mlflow.sh"), str(OUTAGE_S)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=OUTAGE_S + 150,
    )
    return down, time.time()
