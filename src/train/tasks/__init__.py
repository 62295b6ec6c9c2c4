"""Task kinds share models, adapters, quantization and precision; each brings its own data
preparation, tokenization, batch collation and LightningModule. Chosen by cfg.task.name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from datasets import DatasetDict
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.train import data
from src.train.tasks import sft
from src.train.tasks.classification_data import classification_collator, tokenize_classification


@dataclass(frozen=True)
class Task:
    load_splits: Callable[[DictConfig, int], tuple[DatasetDict, list[str]]]
    tokenize: Callable  # (splits, tokenizer, max_length) -> tokenized splits (cached on disk)
    collator: Callable[[DictConfig, object], object]
    module: Callable[[DictConfig, object, object, list[str]], object]


def _classification_collator(cfg, tokenizer):
    pad_to = cfg.data.max_length if cfg.data.pad_to_max_length else None
    return classification_collator(tokenizer, pad_to)


# The LightningModules are imported when a run builds one: checking and preparing data (a
# sweep's driver) then imports no Lightning (~3.7 s).
def _classification_module(cfg, model, tokenizer, labels):
    from src.train.tasks.classification import ClassificationModule

    return ClassificationModule(
        model, cfg.optim, len(labels), save_full_weights=cfg.adapter.name == "full"
    )


def _generation_splits(cfg: DictConfig, seed: int) -> tuple[DatasetDict, list[str]]:
    """Labelled data becomes instructions answered by the label word; pair data (prompt ->
    response, e.g. chatterbot) is split at random and scored by perplexity only."""
    if cfg.data.get("format") == "pairs":
        splits = sft.split_pairs(
            instantiate(cfg.data.source), cfg.data.val_size, cfg.data.test_size, seed
        )
        return data.cap_splits(splits, cfg.data, seed), []
    splits, labels = data.load_splits(cfg.data, seed)
    return sft.instructions_from_labels(splits, cfg.task.instruction, labels), labels


def _generation_module(cfg, model, tokenizer, labels):
    from src.train.tasks.generation import GenerationModule

    return GenerationModule(
        model,
        cfg.optim,
        tokenizer,
        labels,
        cfg.task.max_new_tokens,
        save_full_weights=cfg.adapter.name == "full",
    )


TASKS = {
    "classification": Task(
        lambda cfg, seed: data.load_splits(cfg.data, seed),
        tokenize_classification,
        _classification_collator,
        _classification_module,
    ),
    "generation": Task(
        _generation_splits,
        sft.tokenize_sft,
        lambda cfg, tok: sft.SFTCollator(
            tok.pad_token_id, cfg.data.max_length if cfg.data.pad_to_max_length else None
        ),
        _generation_module,
    ),
}
