"""A data-parallel run started as users start one (`python -m src.train trainer.devices=2
trainer.strategy=ddp`: Lightning launches the second rank), gloo on CPU: one MLflow run, and
validation over the whole split (every rank's share summed), as a single-device run sees it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from src.train import train
from src.train.run import MPI_LAUNCHER_VARS, _cluster_plugins

# lr ~ 0: the weights barely move, so both runs validate the same model and must agree.
SAME_MODEL = [
    "model=tiny_llama",
    "task=generation",
    "data.max_train_samples=32",
    "data.max_eval_samples=32",
    "data.test_size=32",
    "data.batch_size=4",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "optim.lr=1e-12",
    "optim.warmup_ratio=0",
    "checkpoint.enabled=false",
    "trainer.enable_progress_bar=false",
    "summary=false",
]


@pytest.mark.xdist_group("ddp")
def test_a_two_rank_run_logs_once_and_validates_the_whole_split(make_cfg, tmp_path, store):
    single = train(make_cfg(*SAME_MODEL, model="tiny_llama"))
    command = [
        sys.executable,
        "-m",
        "src.train",
        *SAME_MODEL,
        "trainer.devices=2",
        "trainer.strategy=ddp",
        f"paths.root={tmp_path}/ddp",
        f"logger.tracking_uri={store}",
        "logger.experiment=ddp",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr[-3000:]

    client = MlflowClient(store)
    [experiment] = [e for e in client.search_experiments() if e.name == "ddp"]
    [run] = client.search_runs([experiment.experiment_id])  # rank 1 opened no run of its own
    metrics = run.data.metrics
    assert metrics["dist/world_size"] == 2 and metrics["rank/1/train/steps"] == 2
    # Each rank validated 16 of the 32 rows; the logged figures cover all 32. (The random model
    # scores every row nearly alike: rank 0's half alone is off by ~1e-5, hence the tolerance.)
    for key in ("val/loss", "val/perplexity", "val/acc"):
        assert metrics[key] == pytest.approx(single[key], rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "LightningEnvironment"),  # named at once: Lightning's MPI probe is skipped
        ({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, "LightningEnvironment"),  # a rank started for us
        ({"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "trial"}, "SLURMEnvironment"),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, None),  # under mpirun: Lightning decides
    ],
)
def test_the_cluster_environment_each_launch_gets(env, expected, monkeypatch):
    for var in [k for k in os.environ if k.startswith(("SLURM_", "TORCHELASTIC_", "LSB_"))]:
        monkeypatch.delenv(var)
    for var in ["LOCAL_RANK", "WORLD_SIZE", *MPI_LAUNCHER_VARS]:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)

    plugins = _cluster_plugins()

    assert [type(p).__name__ for p in plugins] == ([expected] if expected else [])
