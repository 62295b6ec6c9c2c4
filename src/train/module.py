"""The LightningModule every task builds on: optimizer + schedule over the trainable parameters,
adapter-only checkpoints. Tasks (src/train/tasks/) add their steps and metrics."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from omegaconf import DictConfig

from src.train.optimizer import build_optimizer, uses_grad_scaler, warmup_steps


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
