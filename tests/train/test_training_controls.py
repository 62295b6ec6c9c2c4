"""Early stopping, the 8-bit optimizer and the CLI entry."""

from __future__ import annotations

import subprocess
import sys

from mlflow.tracking import MlflowClient

from src.train import train


def test_early_stopping_ends_a_stalled_run(make_cfg):
    # A learning rate too small to move val/acc: patience 1 stops after the second check.
    common = [
        "adapter=lora",
        "optim.lr=1e-12",
        "logger=none",
        "checkpoint.enabled=false",
        "trainer.max_steps=40",
        "trainer.max_epochs=40",
    ]
    stopped = train(make_cfg(*common, "early_stopping.patience=1"))
    unstopped = train(make_cfg(*common, "early_stopping.enabled=false"))
    assert unstopped["train/steps"] == 40
    assert stopped["train/steps"] <= 3 * 2  # 2 steps an epoch, validation each epoch


def test_8bit_adamw_keeps_less_optimizer_state(make_cfg):
    common = ["adapter=full", "logger=none", "checkpoint.enabled=false"]
    fp32 = train(make_cfg(*common, "optim=adamw"))
    int8 = train(make_cfg(*common, "optim=adamw8bit"))
    assert int8["mem/optimizer_mb"] < 0.4 * fp32["mem/optimizer_mb"]


def test_cli_runs_the_product_command(tmp_path):
    """`python -m src.train +experiment=qlora_r8` as users type it (tiny model, tiny budget)."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.train",
            "+experiment=qlora_r8",
            "model=tiny_bert",
            "trainer.max_steps=2",
            "data.max_train_samples=32",
            "data.max_eval_samples=16",
            f"paths.root={tmp_path}",
            f"logger.tracking_uri={store}",
            "trainer.enable_progress_bar=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "val acc" in proc.stdout and "peak MB" in proc.stdout
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [(r.data.tags["method"], r.data.tags["quant"]) for r in runs] == [("lora", "nf4")]
