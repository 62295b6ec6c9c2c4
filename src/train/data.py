"""Labelled data: source -> text/label columns -> label ids -> seeded, stratified splits, capped.

Every source (src/train/sources.py) returns a DatasetDict with at least a "train" split holding
the configured text and label columns; everything after that is shared by every source.
"""

from __future__ import annotations

import json
import os

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict
from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError, instantiate_checked

SPLITS = ("train", "validation", "test")
datasets.disable_progress_bars()  # per-run map/filter bars on cached, second-long steps are noise


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
