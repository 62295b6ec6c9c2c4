"""LightningModule for instruction tuning a causal LM: response-only loss, token-weighted
perplexity, and accuracy measured by greedy generation of the label word."""

from __future__ import annotations

import math
import re

import torch
from omegaconf import DictConfig

from src.train.module import FineTuneModule
from src.train.tasks.sft import IGNORE


def first_word(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return words[0] if words else ""


def predicted_label(generated: str, labels: list[str]) -> int:
    """Index of the label word the generation starts with, or -1."""
    word = first_word(generated)
    return next((i for i, label in enumerate(labels) if first_word(label) == word), -1)


class GenerationModule(FineTuneModule):
    def __init__(
        self,
        model: torch.nn.Module,
        optim_cfg: DictConfig,
        tokenizer,
        labels: list[str],
        max_new_tokens: int,
        save_full_weights: bool,
    ):
        super().__init__(model, optim_cfg, save_full_weights)
        self.tokenizer, self.labels, self.max_new_tokens = tokenizer, labels, max_new_tokens
        self._sums: dict[str, float] = {}

    def forward(self, batch):
        return self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
        )

    def training_step(self, batch, batch_idx):
        loss = self(batch).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    @torch.no_grad()
    def generate_text(self, batch) -> list[str]:
        prompt = batch["prompt_input_ids"]
        out = self.model.generate(
            input_ids=prompt,
            attention_mask=batch["prompt_attention_mask"],
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return self.tokenizer.batch_decode(out[:, prompt.shape[1] :], skip_special_tokens=True)

    def _eval_step(self, batch):
        tokens = int((batch["labels"][:, 1:] != IGNORE).sum())  # positions the shifted loss scores
        self._add("loss_sum", float(self(batch).loss) * tokens)
        self._add("tokens", tokens)
        if self.labels and bool((batch["class_ids"] >= 0).all()):
            guesses = [predicted_label(t, self.labels) for t in self.generate_text(batch)]
            self._add(
                "correct",
                sum(int(g == y) for g, y in zip(guesses, batch["class_ids"].tolist(), strict=True)),
            )
            self._add("rows", len(guesses))

    def _add(self, key: str, value: float) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + value

    def _log_epoch(self, stage: str) -> None:
        sums, self._sums = self._summed_over_ranks(self._sums), {}
        loss = sums["loss_sum"] / max(sums["tokens"], 1)
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/perplexity", math.exp(min(loss, 50.0)))
        if sums.get("rows"):
            self.log(f"{stage}/acc", sums["correct"] / sums["rows"], prog_bar=True)

    def _summed_over_ranks(self, sums: dict[str, float]) -> dict[str, float]:
        """Data-parallel ranks each saw part of the split: add their sums (every rank has every
        key, so the collective matches); unchanged with one rank."""
        if self.trainer.world_size <= 1:
            return sums
        keys = ("loss_sum", "tokens", "correct", "rows")
        local = torch.tensor([sums.get(k, 0.0) for k in keys], dtype=torch.float64)
        total = self.trainer.strategy.reduce(local.to(self.device), reduce_op="sum").cpu()
        return {k: float(v) for k, v in zip(keys, total, strict=True) if k in sums or v > 0}

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_test_epoch_end(self):
        self._log_epoch("test")
