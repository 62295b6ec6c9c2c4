"""Sequence classification data: tokenized texts with their label ids, dynamically padded
batches. The data side of src/train/tasks/classification.py (no Lightning: a sweep's driver reads
data to check it and never trains)."""

from __future__ import annotations

from datasets import DatasetDict
from transformers import DataCollatorWithPadding


def tokenize_classification(splits: DatasetDict, tokenizer, max_length: int) -> DatasetDict:
    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    return splits.map(encode, batched=True, remove_columns=["text"]).rename_column(
        "label", "labels"
    )


def classification_collator(tokenizer, pad_to: int | None = None) -> DataCollatorWithPadding:
    """Dynamic padding; pad_to fixes every batch's shape (static shapes, fair timing)."""
    padding = "max_length" if pad_to else "longest"
    return DataCollatorWithPadding(tokenizer, padding=padding, max_length=pad_to)
