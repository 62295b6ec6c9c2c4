"""The optimizer a run builds: AdamW (fused where it can be) over the trainable parameters, with
weight decay kept off biases and norm weights, and the warmup length. No Lightning import: the
estimator (src/train/estimate/) builds the same optimizer, and `python -m src.estimate` should not
pay for loading Lightning (~2 s here) when the precision needs none of its plugins."""

from __future__ import annotations

import math

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers.trainer_pt_utils import get_parameter_names

FUSABLE = (torch.optim.AdamW, torch.optim.Adam)
# Parameters kept out of weight decay, as HF's Trainer does (Trainer.get_decay_parameter_names):
# biases and norm weights (LayerNorm modules, and RMSNorms by name).
NO_DECAY_NAME_PATTERNS = [
    r"bias",
    r"layernorm",
    r"rmsnorm",
    r"(?:^|\.)norm(?:$|\.)",
    r"_norm(?:$|\.)",
]


def build_optimizer(optim_cfg: DictConfig, model: torch.nn.Module, plugin=None, **unfused):
    """The configured optimizer over `model`'s trainable parameters for a run under Lightning's
    precision `plugin`. Biases and norm weights get no weight decay unless
    `optim.decay_norm_and_bias` (as HF's Trainer and the BERT recipe; decaying them pulls
    LayerNorm gains towards 0, which is not a prior anyone wants). torch's
    AdamW/Adam run fused (the whole update in one kernel, as HF's Trainer does by default) unless
    the config says `fused` or `foreach`: on a CPU the loop torch runs otherwise made a full
    MiniLM step ~0.15 s (14%) slower (bench/peers.py). Not under fp16's GradScaler, which must
    unscale gradients before they are clipped. unfused: keyword arguments for the optimizer when
    it is not fused (the estimate's foreach)."""
    factory = instantiate(optim_cfg.optimizer)
    groups = parameter_groups(model, optim_cfg.get("decay_norm_and_bias", False))
    chosen = {"fused", "foreach"} & set(factory.keywords)
    if factory.func in FUSABLE and not chosen and not uses_grad_scaler(plugin):
        return factory(groups, fused=True)
    return factory(groups, **({} if chosen else unfused))


def parameter_groups(model: torch.nn.Module, decay_norm_and_bias: bool) -> list[dict]:
    """The trainable parameters as optimizer groups: those weight decay applies to (at the
    optimizer's own setting) and, unless decay_norm_and_bias, biases and norm weights at 0."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if decay_norm_and_bias:
        return [{"params": [p for _, p in named]}]
    decayed = set(get_parameter_names(model, [torch.nn.LayerNorm], NO_DECAY_NAME_PATTERNS))
    groups = [
        {"params": [p for n, p in named if n in decayed]},
        {"params": [p for n, p in named if n not in decayed], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def warmup_steps(optim_cfg: DictConfig, total_steps: int) -> int:
    """optim.warmup_ratio of the steps, rounded up as HF's Trainer does: a ratio > 0 always warms
    up at least one step."""
    return math.ceil(optim_cfg.warmup_ratio * total_steps)


def uses_grad_scaler(plugin) -> bool:
    """Whether the precision plugin scales the loss (Lightning's 16-mixed) and so needs the
    gradients unscaled by itself before they are clipped."""
    return getattr(plugin, "scaler", None) is not None
