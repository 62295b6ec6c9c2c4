"""Every shipped experiment composes and trains a few steps on both tiny models."""

from __future__ import annotations

import math

import pytest

from src.train import CONF_DIR, train
from src.train.metrics import CONTRACT_METRICS

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_the_issue_experiments_ship():
    wanted = {"qlora_r8", "lora_r16", "full", "freeze_top2", "dora_r8", "ia3", "prefix", "prompt"}
    assert wanted <= set(EXPERIMENTS)


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_llama"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains_a_few_steps(make_cfg, experiment, model):
    # model= on the command line wins over an experiment's model (smollm2_*): the file's other
    # settings are exercised on the tiny stand-in; tests/test_embedded_model.py runs SmolLM2 itself.
    cfg = make_cfg(
        f"+experiment={experiment}", "logger=none", "checkpoint.enabled=false", model=model
    )
    assert cfg.model.name == model
    metrics = train(cfg)
    assert metrics["train/steps"] == 4
    for key in CONTRACT_METRICS:
        assert math.isfinite(metrics[key]), key
    assert 0 <= metrics["val/acc"] <= 1 and 0 <= metrics["test/acc"] <= 1
    assert 0 < metrics["params/trainable"] <= metrics["params/total"]
    if cfg.adapter.name == "full":
        assert metrics["params/trainable"] == metrics["params/total"]
    else:
        assert metrics["params/trainable"] < 0.5 * metrics["params/total"]
