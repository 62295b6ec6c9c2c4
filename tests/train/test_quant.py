"""Quantized bases (bitsandbytes int8 / nf4 / fp4) really load quantized and train on CPU."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import bitsandbytes as bnb
import lightning.pytorch as pl
import pytest

from src.train import train
from src.train.models import load_model
from src.train.run import prepare_inputs


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


def _mapped_files() -> set[str]:
    return {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_a_quantized_base_on_cpu_keeps_no_view_of_the_checkpoint_file(make_cfg):
    """Kept as views, the unquantized weights would hold the file's mapping, and with it every
    page read to quantize the linear layers, resident for the whole run."""
    plain_cfg, nf4_cfg = make_cfg(model="tiny_llama"), make_cfg("quant=nf4", model="tiny_llama")
    inputs = prepare_inputs(plain_cfg)
    checkpoint = str(Path(inputs.model_path).resolve() / "model.safetensors")
    build = lambda cfg: load_model(cfg, inputs.model_path, len(inputs.labels), None)  # noqa: E731

    plain = build(plain_cfg)
    assert checkpoint in _mapped_files()  # unquantized weights are views of the file: a control
    embeddings = plain.get_input_embeddings().weight.detach().clone()
    del plain
    gc.collect()

    quantized = build(nf4_cfg)
    gc.collect()
    assert checkpoint not in _mapped_files()
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in quantized.modules())
    assert quantized.get_input_embeddings().weight.equal(embeddings)  # copied, not changed
