"""The embedded real model (all-MiniLM-L6-v2) loads offline and fine-tunes a few steps."""

from __future__ import annotations

import pytest

from src.train import train


@pytest.mark.slow
def test_minilm_lora_trains_offline(make_cfg, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = make_cfg("+experiment=lora_r16", "data.max_train_samples=96", "data.max_eval_samples=64",
                   "data.test_size=128", "trainer.max_steps=3", "checkpoint.enabled=false", model="minilm")
    metrics = train(cfg)
    assert 22_500_000 < metrics["params/total"] < 23_500_000  # MiniLM-L6 (22.7M) + head + LoRA
    assert metrics["train/steps"] == 3
    assert metrics["mem/weights_mb"] > 80  # real fp32 weights, not a tiny stand-in
    assert 0 <= metrics["test/acc"] <= 1
