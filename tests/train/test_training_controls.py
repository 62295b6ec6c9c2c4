"""Early stopping, the optimizers (fused AdamW, 8-bit; which parameters decay) with gradient
clipping, and the CLI entry."""

from __future__ import annotations

import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch
from mlflow.tracking import MlflowClient

from src.train import models, train
from src.train.adapters import apply_adapter
from src.train.optimizer import build_optimizer


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


class OptimizerSeen(pl.Callback):
    """Whether the run's optimizer is fused, and the gradient norm each step applied."""

    def __init__(self):
        self.fused, self.grad_norms = None, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.fused = trainer.optimizers[0].defaults.get("fused")
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.grad_norms.append(
            float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        )


def test_a_run_that_max_steps_ends_between_validations_is_validated_at_its_end(make_cfg, store):
    # 8 batches an epoch, validation at its end (val_check_interval=1.0): 3 steps end the run
    # before the first scheduled check. Without the final validation there was no val/acc.
    cfg = make_cfg("data.batch_size=8", "trainer.max_steps=3", "trainer.max_epochs=1")
    metrics = train(cfg)
    assert "val/acc" in metrics and "val/loss" in metrics
    client = MlflowClient(store)
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    # One validation (Lightning's record), then the run's final metrics repeat it.
    logged = [m.value for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert logged == [metrics["val/acc"]] * 2


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_adamw_runs_fused_and_gradients_are_still_clipped(make_cfg, precision):
    # Lightning refuses clipping for a fused optimizer under any mixed precision; bf16 has no
    # scaler, so the module clips itself there.
    seen = OptimizerSeen()
    common = ["adapter=full", "logger=none", "checkpoint.enabled=false", "trainer.max_steps=2"]
    clip = 1e-3  # far below a tiny model's gradient norm: every step is clipped
    train(make_cfg(*common, f"precision={precision}", f"trainer.gradient_clip_val={clip}"), [seen])
    assert seen.fused is True
    assert len(seen.grad_norms) == 2 and max(seen.grad_norms) <= clip * 1.001


def decay_by_kind(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict:
    """The weight decays the optimizer applies to norm weights, biases and other weights."""
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    by_kind = {"norm": set(), "bias": set(), "weight": set()}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            norm = type(module).__name__.endswith("Norm")
            by_kind["norm" if norm else "bias" if name == "bias" else "weight"].add(decay[id(p)])
    return by_kind


class DecaySeen(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.by_kind = decay_by_kind(trainer.optimizers[0], pl_module)


DECAY = ["adapter=full", "optim.optimizer.weight_decay=0.1"]


def test_a_run_keeps_biases_and_layernorm_weights_out_of_weight_decay(make_cfg):
    # As HF's Trainer: LayerNorm gains and every bias at 0, matrices and embeddings at the
    # configured decay.
    seen = DecaySeen()
    common = ["logger=none", "checkpoint.enabled=false", "trainer.max_steps=1"]
    train(make_cfg(*DECAY, *common), [seen])
    assert seen.by_kind == {"norm": {0.0}, "bias": {0.0}, "weight": {0.1}}


def test_rmsnorm_weights_are_found_by_name_and_decay_norm_and_bias_decays_all(make_cfg):
    cfg = make_cfg(*DECAY, "task=generation", model="tiny_llama")
    model = apply_adapter(models.load_model(cfg, models.resolve_source(cfg.model), 2, 0), cfg)
    kinds = decay_by_kind(build_optimizer(cfg.optim, model), model)
    assert kinds == {"norm": {0.0}, "bias": set(), "weight": {0.1}}  # Llama has no biases
    cfg.optim.decay_norm_and_bias = True
    kinds = decay_by_kind(build_optimizer(cfg.optim, model), model)
    assert kinds == {"norm": {0.1}, "bias": set(), "weight": {0.1}}


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
    # The console keeps to what a user acts on (src/train/quiet.py): Lightning's and MLflow's
    # INFO lines (printed twice, once per handler, when Lightning reset its level) are not there.
    noise = ["GPU available", "Tip:", "fit` stopped", "system_metrics", "MLflow database", "srun"]
    assert [n for n in noise if n in proc.stderr + proc.stdout] == []
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [(r.data.tags["method"], r.data.tags["quant"]) for r in runs] == [("lora", "nf4")]
