"""What the driver and the fork server do so that a trial starts sooner changes nothing the trial
sees: its config is the one its overrides compose to, and the stores still check their schema;
and a trial can profile its start, to see where that time goes."""

from __future__ import annotations

import pstats
import sqlite3
import subprocess
import sys

import optuna
import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from omegaconf import OmegaConf

from src.sweep import load_spec, run_sweep
from src.sweep.configs import as_overrides, job_config, trial_config, trial_settings
from src.sweep.process.schema_heads import cache_schema_heads


@pytest.mark.parametrize("max_time", [None, 3725])
def test_the_config_the_driver_sends_is_the_one_its_overrides_compose_to(max_time):
    overrides = ["model=tiny_bert", "adapter=lora", "adapter.peft.r=4", "optim.lr=0.002"]
    settings = {"seed": 7, **trial_settings("t-001", "sqlite:///x/mlflow.db", True, max_time)}

    sent = job_config(overrides, settings)
    composed = trial_config([*overrides, *as_overrides(settings)])

    assert OmegaConf.to_container(sent) == OmegaConf.to_container(composed)
    assert sent.run_name == "t-001" and sent.seed == 7 and sent.summary is False
    assert trial_config(overrides).run_name != "t-001"  # the cached composition is not edited


def test_stores_opened_with_the_cached_schema_heads_still_check_the_schema(tmp_path):
    cache_schema_heads()
    cache_schema_heads()  # a second call does not wrap again

    for _ in range(2):  # the first opening reads the head, the second gets the cached one
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
        assert storage.get_current_version() == storage.get_head_version()
        storage.engine.dispose()

    db, artifacts = tmp_path / "mlflow.db", (tmp_path / "artifacts").as_uri()
    for _ in range(2):
        SqlAlchemyStore(f"sqlite:///{db}", artifacts).engine.dispose()
    with sqlite3.connect(db) as conn:  # as if made by an older MLflow
        conn.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
    with pytest.raises(MlflowException, match="out-of-date database schema"):
        SqlAlchemyStore(f"sqlite:///{db}", artifacts)


# A CUDA build of torch as the fork server sees it; then the server's preload and the trial code
# it imports. Each result line: whether the module was imported / CUDA initialized.
_PRELOAD_UNDER_CUDA_BUILD = """
import sys, torch
torch.version.cuda = "13.0"
import src.sweep.process.preload
print("peft", "peft" in sys.modules)
print("bitsandbytes", "bitsandbytes" in sys.modules)
print("inductor", "torch._inductor.compile_fx" in sys.modules)  # what made their import slow
print("cuda_initialized", torch.cuda.is_initialized())
"""


def test_the_fork_server_leaves_cuda_alone_under_a_cuda_build():
    """On an H200 every GPU trial failed ("Cannot re-initialize CUDA in forked subprocess"):
    importing bitsandbytes, which peft and transformers' scheduler module import, reads the GPU's
    properties and so initializes CUDA in the server every trial is forked from."""
    done = subprocess.run(
        [sys.executable, "-c", _PRELOAD_UNDER_CUDA_BUILD], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = dict(line.split() for line in done.stdout.splitlines() if line.count(" ") == 1)
    assert seen == {
        "peft": "False",
        "bitsandbytes": "False",
        "inductor": "True",
        "cuda_initialized": "False",
    }


def test_a_trial_profiles_its_start_up_to_its_first_batch(sweep_env, tmp_path, monkeypatch):
    base = ["model=tiny_bert", "data.max_train_samples=32", "data.max_eval_samples=16"]
    sweep = "base: {}\nspace: {{lr: {{type: float, low: 1e-4, high: 1e-2, path: optim.lr}}}}\n"
    path, storage, overrides = sweep_env(sweep.format(base) + "n_trials: 1\n")
    monkeypatch.setenv("FTSWEEP_PROFILE_START", str(tmp_path / "profiles"))

    study = run_sweep(load_spec(path, overrides), "p", storage, quiet=True, overrides=overrides)

    assert study.trials[0].state.name == "COMPLETE"
    functions = {name for _, _, name in pstats.Stats(str(tmp_path / "profiles/trial-0.prof")).stats}
    assert {"train", "fit"} <= functions  # the child's start, into Lightning's fit
    assert "training_step" not in functions  # and it stopped at the first batch
