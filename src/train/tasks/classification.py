"""Sequence classification: a classification head on an encoder or decoder, accuracy on labels."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torchmetrics.classification import MulticlassAccuracy

from src.train.module import FineTuneModule


class ClassificationModule(FineTuneModule):
    def __init__(
        self,
        model: torch.nn.Module,
        optim_cfg: DictConfig,
        num_labels: int,
        save_full_weights: bool,
    ):
        super().__init__(model, optim_cfg, save_full_weights)
        self.val_acc = MulticlassAccuracy(num_classes=num_labels, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_labels, average="micro")

    def forward(self, batch):
        return self.model(**batch)

    def training_step(self, batch, batch_idx):
        loss = self(batch).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["labels"].shape[0])
        return loss

    def _eval_step(self, batch, stage: str, metric: MulticlassAccuracy):
        out = self(batch)
        metric(out.logits.argmax(-1), batch["labels"])
        n = batch["labels"].shape[0]
        self.log(f"{stage}/loss", out.loss, batch_size=n, sync_dist=True)  # mean over ranks
        self.log(f"{stage}/acc", metric, prog_bar=True, batch_size=n)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test", self.test_acc)
