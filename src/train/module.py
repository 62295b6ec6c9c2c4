"""The LightningModule every task builds on: optimizer + schedule over the trainable parameters,
adapter-only checkpoints. Tasks (src/train/tasks/) add their steps and metrics."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import get_scheduler


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
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = instantiate(self.optim_cfg.optimizer)(params)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_scheduler(
            self.optim_cfg.scheduler,
            optimizer,
            num_warmup_steps=int(self.optim_cfg.warmup_ratio * total),
            num_training_steps=total,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint):
        if not self.save_full_weights:
            trainable = {n for n, p in self.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {
                k: v for k, v in checkpoint["state_dict"].items() if k in trainable
            }
