"""Trainable-parameter counts match what each method should train, computed independently."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import pytest
from transformers import AutoConfig

from src.train import train
from src.train.models import resolve_source


class Capture(pl.Callback):
    def on_fit_start(self, trainer, pl_module):
        self.model = pl_module.model


def run(make_cfg, *overrides, model="tiny_bert"):
    probe = Capture()
    cfg = make_cfg(*overrides, "logger=none", "checkpoint.enabled=false", model=model)
    metrics = train(cfg, callbacks=[probe])
    hf = AutoConfig.from_pretrained(resolve_source(cfg.model))
    return metrics, probe.model, hf


def head_params(h: int, labels: int = 2) -> int:
    """BERT classification head: pooler dense (h*h + h) + classifier (h*labels + labels)."""
    return h * h + h + h * labels + labels


@pytest.mark.parametrize("k", [0, 1, 2])
def test_freeze_trains_top_k_layers_and_head(make_cfg, k):
    metrics, model, hf = run(make_cfg, "adapter=freeze", f"adapter.trainable_top_layers={k}")
    per_layer = sum(p.numel() for p in model.bert.encoder.layer[0].parameters())
    assert metrics["params/trainable"] == k * per_layer + head_params(hf.hidden_size)
    trainable_layers = {
        n.split(".")[3]
        for n, p in model.named_parameters()
        if p.requires_grad and n.startswith("bert.encoder.layer.")
    }
    assert trainable_layers == {
        str(i) for i in range(hf.num_hidden_layers - k, hf.num_hidden_layers)
    }


@pytest.mark.parametrize("r", [2, 8])
def test_lora_trains_rank_r_matrices_on_query_value(make_cfg, r):
    metrics, _, hf = run(make_cfg, "adapter=lora", f"adapter.peft.r={r}")
    h = hf.hidden_size
    lora = hf.num_hidden_layers * 2 * r * (h + h)  # A: r x h, B: h x r, on query and value
    assert metrics["params/trainable"] == lora + head_params(h)


@pytest.mark.parametrize("tokens", [5, 20])
def test_prompt_trains_virtual_tokens_and_head(make_cfg, tokens):
    metrics, _, hf = run(make_cfg, "adapter=prompt", f"adapter.peft.num_virtual_tokens={tokens}")
    assert metrics["params/trainable"] == tokens * hf.hidden_size + head_params(hf.hidden_size)


def test_lora_on_llama_targets_q_and_v(make_cfg):
    metrics, _, hf = run(make_cfg, "adapter=lora", "adapter.peft.r=4", model="tiny_llama")
    h, kv = hf.hidden_size, hf.num_key_value_heads * (hf.hidden_size // hf.num_attention_heads)
    q, v = 4 * (h + h), 4 * (h + kv)
    score = h * 2  # Llama's classification head has no bias
    assert metrics["params/trainable"] == hf.num_hidden_layers * (q + v) + score


@pytest.mark.parametrize("adapter, quant", [("full", "none"), ("lora", "none"), ("lora", "nf4")])
def test_activation_checkpointing_is_on_in_the_run_through_the_current_api(
    make_cfg, adapter, quant
):
    # transformers 5 deprecated gradient_checkpointing_enable (removed in 6) for
    # activation_checkpointing_enable; a quantized base turns it on through PEFT's preparation.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, model, _ = run(
            make_cfg, f"adapter={adapter}", f"quant={quant}", "activation_checkpointing=true"
        )
    checkpointed = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    assert checkpointed, "no module runs with activation checkpointing"
    deprecated = [
        str(w.message) for w in caught if "gradient_checkpointing_enable" in str(w.message)
    ]
    if quant == "none":  # ours; PEFT's preparation of a quantized base calls the old name itself
        assert deprecated == [], deprecated


def test_lora_on_a_mixture_of_experts_model_takes_peft_s_default_layers(make_cfg, config_only):
    """PEFT 0.21 remaps the targets of transformers 5's fused-expert models (Mixtral) before it
    fills in its defaults, so an unset target_modules found no layer; apply_adapter fills them
    in first: the same q_proj and v_proj PEFT names for Mixtral, on every layer."""
    import torch
    from transformers import AutoModelForCausalLM

    from src.train.adapters import apply_adapter
    from src.train.estimate import estimate

    path = config_only("mixtral")
    overrides = ["task=generation", "adapter=lora", f"model.name_or_path={path}"]
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    model = apply_adapter(base, make_cfg(*overrides, model="hf"))
    lora = [name.split(".") for name, _ in model.named_parameters() if "lora_A" in name]
    assert {n[-4] for n in lora} == {"q_proj", "v_proj"} and {n[4] for n in lora} == {"0", "1"}
    # The estimate runs its step too (in bf16: the shape rules of torch's grouped matmul, which
    # runs the experts, take nothing else): r x (in + out) for q (32 -> 32) and v (32 -> 2 kv
    # heads x 8) per layer.
    est = estimate(make_cfg(*overrides, "precision=bf16-true", model="hf"), timed=False)
    assert est.params_trainable == 2 * 8 * ((32 + 32) + (32 + 16))
