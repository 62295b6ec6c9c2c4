"""Tokenized splits, cached on disk, and the LightningDataModule that serves them.

The cache key covers everything the tokens depend on: the rows, the tokenizer, max_length and
the source code of the module that tokenizes (editing an encode function must not reuse stale
tokens).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
from pathlib import Path

import lightning.pytorch as pl
from datasets import DatasetDict, load_from_disk
from torch.utils.data import DataLoader

from src.train.data import SPLITS


def tokenize_cached(
    splits: DatasetDict, tokenizer, max_length: int, cache_dir: str, tokenize
) -> DatasetDict:
    """tokenize(splits, tokenizer, max_length) once per (data content, tokenizer, max_length,
    tokenize code); later runs load the result from disk."""
    key = _cache_key(splits, tokenizer, f"{code_version(tokenize)}|{max_length}")
    folder = Path(cache_dir) / "tokenized" / key
    if (folder / "dataset_dict.json").exists():
        return load_from_disk(str(folder))
    tokenized = tokenize(splits, tokenizer, max_length)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-")
    tokenized.save_to_disk(tmp)
    try:
        os.rename(tmp, folder)  # atomic: concurrent runs never see half a cache
    except OSError:
        pass
    return load_from_disk(str(folder))


def code_version(fn) -> str:
    """A digest of the source of the module that defines fn (its helpers live there too): any
    edit to how rows become tokens changes it. Falls back to the qualified name where the source
    is not available (e.g. an interactive session)."""
    module = inspect.getmodule(fn)
    try:
        source = inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        source = ""
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
    return hashlib.sha256(f"{name}\n{source}".encode()).hexdigest()[:16]


def _cache_key(splits: DatasetDict, tokenizer, extra: str) -> str:
    digest = hashlib.sha256(
        f"{type(tokenizer).__name__}|{tokenizer.name_or_path}|{len(tokenizer)}|"
        f"{tokenizer.padding_side}|{tokenizer.chat_template}|{extra}".encode()
    )
    for name in SPLITS:
        digest.update(name.encode())
        # One arrow table per split (row selections applied): iterating a Dataset's rows costs
        # ~1 s per trial here, the arrow columns a few ms.
        table = splits[name].with_format("arrow")[:]
        for column in sorted(table.column_names):
            digest.update(f"|{column}|".encode())
            digest.update("\n".join(map(str, table.column(column).to_pylist())).encode())
    return digest.hexdigest()[:20]


class TokenizedData(pl.LightningDataModule):
    """Loaders over pre-tokenized splits; the collate function pads each batch."""

    def __init__(
        self,
        tokenized: DatasetDict,
        collate,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int = 0,
    ):
        super().__init__()
        self.tokenized, self.collate = tokenized, collate
        self.batch_size, self.eval_batch_size, self.num_workers = (
            batch_size,
            eval_batch_size,
            num_workers,
        )

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.tokenized[split],
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def train_dataloader(self):
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self):
        return self._loader("validation", self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size, shuffle=False)
