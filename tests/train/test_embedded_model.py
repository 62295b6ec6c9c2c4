"""The embedded real model (all-MiniLM-L6-v2) loads offline and fine-tunes a few steps."""

from __future__ import annotations

import pytest

from src.train import train


@pytest.mark.slow
def test_minilm_lora_trains_offline(make_cfg, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = make_cfg(
        "+experiment=lora_r16",
        "data.max_train_samples=96",
        "data.max_eval_samples=64",
        "data.test_size=128",
        "trainer.max_steps=3",
        "checkpoint.enabled=false",
        model="minilm",
    )
    metrics = train(cfg)
    assert 22_500_000 < metrics["params/total"] < 23_500_000  # MiniLM-L6 (22.7M) + head + LoRA
    assert metrics["train/steps"] == 3
    assert metrics["mem/weights_mb"] > 80  # real fp32 weights, not a tiny stand-in
    assert 0 <= metrics["test/acc"] <= 1


SMOLLM2_TINY_BUDGET = [
    "data.max_train_samples=16",
    "data.max_eval_samples=8",
    "data.test_size=8",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "data.max_length=32",
    "trainer.max_steps=2",
    "checkpoint.enabled=false",
    "logger=none",
]


@pytest.mark.slow
def test_smollm2_lora_and_qlora_train_offline(make_cfg):
    """SmolLM2 trains with LoRA; its 4-bit base stores the non-embedding weights in <= 0.16x."""
    lora = train(make_cfg("+experiment=smollm2_lora_r16", *SMOLLM2_TINY_BUDGET, model="smollm2"))
    qlora = train(make_cfg("+experiment=smollm2_qlora_r8", *SMOLLM2_TINY_BUDGET, model="smollm2"))
    assert lora["train/steps"] == qlora["train/steps"] == 2
    assert 134_000_000 < lora["params/total"] < 136_000_000
    assert qlora["mem/weights_nonembed_mb"] <= 0.16 * lora["mem/weights_nonembed_mb"]
