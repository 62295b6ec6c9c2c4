"""Adapter-only checkpoints, resume with ckpt_path=last, and seeded determinism."""

from __future__ import annotations

from pathlib import Path

import torch

from src.train import train


def test_resume_from_last_continues_the_step_count(make_cfg):
    common = [
        "adapter=lora",
        "logger=none",
        "trainer.max_epochs=10",
        "checkpoint.every_n_train_steps=1",
    ]
    first = train(make_cfg(*common, "trainer.max_steps=3"))
    assert first["train/steps"] == 3
    cfg = make_cfg(*common, "trainer.max_steps=6", "ckpt_path=last")
    resumed = train(cfg)
    assert resumed["train/steps"] == 6
    ckpt = torch.load(Path(cfg.checkpoint.dir) / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 6


def test_adapter_checkpoint_holds_only_trainable_weights(make_cfg):
    cfg = make_cfg("adapter=lora", "logger=none")
    train(cfg)
    state = torch.load(Path(cfg.checkpoint.dir) / "last.ckpt", weights_only=False)["state_dict"]
    assert state and all("lora_" in k or "modules_to_save" in k for k in state)


def test_full_checkpoint_holds_every_weight(make_cfg):
    cfg = make_cfg("adapter=full", "logger=none")
    metrics = train(cfg)
    state = torch.load(Path(cfg.checkpoint.dir) / "last.ckpt", weights_only=False)["state_dict"]
    assert (
        sum(v.numel() for k, v in state.items() if k.startswith("model."))
        == metrics["params/total"]
    )


def test_same_seed_gives_the_same_metrics(make_cfg):
    keys = ("val/acc", "val/loss", "train/loss", "test/acc")
    a = train(make_cfg("adapter=lora", "logger=none", "checkpoint.enabled=false", "seed=7"))
    b = train(make_cfg("adapter=lora", "logger=none", "checkpoint.enabled=false", "seed=7"))
    c = train(make_cfg("adapter=lora", "logger=none", "checkpoint.enabled=false", "seed=8"))
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert [a[k] for k in keys] != [c[k] for k in keys]


def test_checkpoint_disabled_writes_no_checkpoint_anywhere(make_cfg, tmp_path, monkeypatch):
    """checkpoint.enabled=false (every sweep trial) must also switch off Lightning's default
    ModelCheckpoint: it saved weights + optimizer state at every validation (a full MiniLM
    trial: 260 MB written 4 times, ~8 s) under the working directory's mlruns/."""
    monkeypatch.chdir(tmp_path)
    train(make_cfg("adapter=full", "checkpoint.enabled=false", "trainer.val_check_interval=0.5"))
    assert not list(tmp_path.rglob("*.ckpt"))
