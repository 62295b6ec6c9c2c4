"""Quantized bases (bitsandbytes int8 / nf4 / fp4) really load quantized and train on CPU."""

from __future__ import annotations

import math

import bitsandbytes as bnb
import lightning.pytorch as pl
import pytest

from src.train import train


class LinearKinds(pl.Callback):
    """Records which Linear classes the model trains with, and whether the base is frozen."""

    def on_fit_start(self, trainer, pl_module):
        self.kinds = {
            type(m).__name__ for m in pl_module.model.modules() if "Linear" in type(m).__name__
        }
        self.quantized_trainable = [
            n
            for n, p in pl_module.model.named_parameters()
            if p.requires_grad and not p.is_floating_point()
        ]


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_llama"])
@pytest.mark.parametrize(
    "quant,layer",
    [("int8", bnb.nn.Linear8bitLt), ("nf4", bnb.nn.Linear4bit), ("fp4", bnb.nn.Linear4bit)],
)
def test_quantized_lora_trains(make_cfg, model, quant, layer):
    probe = LinearKinds()
    cfg = make_cfg(
        f"quant={quant}", "adapter=lora", "logger=none", "checkpoint.enabled=false", model=model
    )
    metrics = train(cfg, callbacks=[probe])
    assert layer.__name__ in probe.kinds
    assert probe.quantized_trainable == []
    assert metrics["train/steps"] == 4 and math.isfinite(metrics["train/loss"])


def test_qlora_weights_are_smaller_than_fp32(make_cfg):
    fp32 = train(
        make_cfg("adapter=lora", "logger=none", "checkpoint.enabled=false", model="tiny_llama")
    )
    nf4 = train(
        make_cfg(
            "+experiment=qlora_r8", "logger=none", "checkpoint.enabled=false", model="tiny_llama"
        )
    )
    assert nf4["mem/weights_mb"] < fp32["mem/weights_mb"]
    # Logical parameter count is the same whether stored in 4 bits or 32.
    assert abs(nf4["params/total"] - fp32["params/total"]) / fp32["params/total"] < 0.01
