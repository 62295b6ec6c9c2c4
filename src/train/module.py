"""The LightningModule every task builds on: optimizer + schedule over the trainable parameters,
adapter-only checkpoints. Tasks (src/train/tasks/) add their steps and metrics."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
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


class FineTuneModule(pl.LightningModule):
    """Optimizer + warmup schedule over the trainable parameters; adapter-only checkpoints."""

    def __init__(self, model: torch.nn.Module, optim_cfg: DictConfig, save_full_weights: bool):
        super().__init__()
        self.model = model.train()  # from_pretrained returns eval mode; dropout must be on to train
        self.optim_cfg = optim_cfg
        self.save_full_weights = save_full_weights
        # Adapter-only checkpoints hold just the trainable tensors; the frozen base is reloaded.
        self.strict_loading = save_full_weights

    def configure_optimizers(self):
        optimizer = build_optimizer(self.optim_cfg, self.model, self.trainer.precision_plugin)
        total = int(self.trainer.estimated_stepping_batches)
        # Imported here: transformers' scheduler module imports peft, and with it bitsandbytes,
        # which must not load in the sweep's fork server on a GPU (src/train/adapters.py).
        from transformers import get_scheduler

        scheduler = get_scheduler(
            self.optim_cfg.scheduler,
            optimizer,
            num_warmup_steps=warmup_steps(self.optim_cfg, total),
            num_training_steps=total,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        """Lightning refuses to clip for an optimizer that unscales inside its step (a fused
        one) under any mixed precision; only fp16's GradScaler needs that (the gradients must be
        unscaled first). Under bf16-mixed there is no scaler: clip as full precision does."""
        plugin = self.trainer.precision_plugin
        if (
            gradient_clip_val
            and isinstance(plugin, MixedPrecision)
            and not uses_grad_scaler(plugin)
        ):
            Precision.clip_gradients(
                plugin, optimizer, gradient_clip_val, gradient_clip_algorithm or "norm"
            )
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint):
        if not self.save_full_weights:
            trainable = {n for n, p in self.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {
                k: v for k, v in checkpoint["state_dict"].items() if k in trainable
            }
