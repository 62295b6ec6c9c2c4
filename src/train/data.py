"""Labelled data: source -> text/label columns -> label ids -> seeded, stratified splits, capped.

Every source (src/train/sources.py) returns a DatasetDict with at least a "train" split holding
the configured text and label columns; everything after that is shared by every source.
"""

from __future__ import annotations

import json
import math
import os
import sys

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Value
from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError, instantiate_checked

SPLITS = ("train", "validation", "test")
MAX_ROWS_NAMED = 10  # in an error, more row numbers than this help nobody: the rest are counted
datasets.disable_progress_bars()  # per-run map/filter bars on cached, second-long steps are noise


# Labelled sources already read in this process, keyed by what defines them. The sweep's fork
# server warms the default one, so every trial process starts with it in memory (~1 s saved).
_LABELLED: dict[str, tuple[DatasetDict, list[str]]] = {}


# The data settings that change what _read_labelled returns for one source.
KEYED_SETTINGS = ("text_column", "label_column", "labels", "drop_unlabelled")


def labelled_source(data_cfg: DictConfig) -> tuple[DatasetDict, list[str]]:
    """Source -> DatasetDict with columns text, label (ClassLabel), before splitting."""
    source = _plain(data_cfg.source)
    # A file edited between two runs in one process must be read again: its mtime is in the key.
    mtimes = {
        v: os.path.getmtime(v) for v in source.values() if isinstance(v, str) and os.path.isfile(v)
    }
    settings = {k: _plain(data_cfg.get(k)) for k in KEYED_SETTINGS}
    key = json.dumps({"source": source, "mtimes": mtimes, **settings}, sort_keys=True, default=str)
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
    raw = drop_incomplete(raw, data_cfg)
    if data_cfg.labels:
        labels = [label_name(v) for v in data_cfg.labels]
    else:
        labels = sorted({label_name(v) for v in raw["train"]["label"]})
    check_labels(raw, labels)
    return DatasetDict({k: _encode_labels(v, labels) for k, v in raw.items()}), labels


def drop_incomplete(raw: DatasetDict, data_cfg: DictConfig) -> DatasetDict:
    """Rows without text carry nothing to learn: dropped, and counted on stderr. Rows without a
    label would become a class of their own ('None'): refused, naming them, unless
    data.drop_unlabelled=true. Row numbers are counted before anything is dropped."""
    # Its value is checked with the other config rules (validate.RULES); absent from a data
    # config of one's own, or anything but true, keeps the safe default: refuse.
    drop_unlabelled = data_cfg.get("drop_unlabelled", False) is True
    problems, out, notes = [], {}, []
    for split, ds in raw.items():
        no_text = [is_missing(v) for v in _column(ds, "text")]
        no_label = [is_missing(v) for v in _column(ds, "label")]
        # A row with neither is an empty line: it goes with the empty texts.
        rows = list(enumerate(zip(no_text, no_label, strict=True)))
        unlabelled = [i for i, (t, lab) in rows if lab and not t]
        if unlabelled and not drop_unlabelled:
            problems.append(_unlabelled_problem(data_cfg, split, unlabelled))
            continue
        keep = [i for i, (t, lab) in rows if not (t or lab)]
        if not keep:
            problems.append(
                f"{_origin(data_cfg, split) or f'data: split {split!r}'}: no rows "
                f"left after dropping rows with empty text or labels"
            )
            continue
        out[split] = ds if len(keep) == len(ds) else ds.select(keep)
        notes += _drop_notes(data_cfg, split, sum(no_text), len(unlabelled))
    if problems:
        raise ConfigError(problems)
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    return DatasetDict(out)


def is_missing(value) -> bool:
    """None, NaN (pandas' empty cell in a numeric column) or text that is blank."""
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and not value.strip())


def _column(ds: Dataset, name: str) -> list:
    # One arrow read for plain columns; other feature types (e.g. Json) decode as datasets does.
    if isinstance(ds.features[name], Value):
        return ds.with_format("arrow")[:][name].to_pylist()
    return list(ds[name])


def _origin(data_cfg: DictConfig, split: str) -> str:
    """'data.<split>_file=PATH' for a split read from a file (the key a user set), else ''."""
    source = _plain(data_cfg.source)
    path = source.get(f"{split}_file") if isinstance(source, dict) else None
    return "" if path is None else f"data.{split}_file={path}"


def _drop_notes(data_cfg: DictConfig, split: str, no_text: int, unlabelled: int) -> list[str]:
    origin = _origin(data_cfg, split)
    where = f"{split} ({origin})" if origin else split
    return [
        f"data: dropped {n} row(s) with {what} from {where}"
        for n, what in ((no_text, "empty text"), (unlabelled, "an empty label"))
        if n
    ]


def _unlabelled_problem(data_cfg: DictConfig, split: str, rows: list[int]) -> str:
    where = _origin(data_cfg, split) or f"data: split '{split}'"
    shown = ", ".join(str(i + 1) for i in rows[:MAX_ROWS_NAMED])
    more = f" and {len(rows) - MAX_ROWS_NAMED} more" if len(rows) > MAX_ROWS_NAMED else ""
    return (
        f"{where}: {len(rows)} row(s) with an empty label "
        f"(data.label_column='{data_cfg.label_column}'): row{'s' if len(rows) > 1 else ''} "
        f"{shown}{more} (data rows counted from 1, header line not counted); fill the labels "
        f"in, or set data.drop_unlabelled=true to drop these rows"
    )


def load_splits(data_cfg: DictConfig, seed: int) -> tuple[DatasetDict, list[str]]:
    """Source -> DatasetDict(train/validation/test) with columns text, label (ClassLabel)."""
    raw, labels = labelled_source(data_cfg)
    splits = cap_splits(carve_missing_splits(raw, data_cfg, seed), data_cfg, seed)
    empty = [
        f"data: split '{k}' is empty after splitting/capping"
        for k, v in splits.items()
        if len(v) == 0
    ]
    if empty:
        raise ConfigError(empty)
    return splits, labels


def check_columns(raw: DatasetDict, data_cfg: DictConfig) -> None:
    problems = []
    for split, ds in raw.items():
        for key in ("text_column", "label_column"):
            if data_cfg[key] not in ds.column_names:
                problems.append(
                    f"data.{key}='{data_cfg[key]}' is not a column of split '{split}'; "
                    f"columns are {ds.column_names}"
                )
    if problems:
        raise ConfigError(problems)


def check_labels(raw: DatasetDict, labels: list[str]) -> None:
    known = set(labels)
    problems = []
    for split, ds in raw.items():
        unknown = sorted({label_name(v) for v in ds["label"]} - known)
        if unknown:
            problems.append(
                f"data: split '{split}' has labels {unknown[:5]} outside data.labels={labels}"
            )
    if problems:
        raise ConfigError(problems)


def label_name(value) -> str:
    """A label as its class name. pandas reads an integer column with an empty cell as floats,
    so 1.0 is named '1', as the same label is in a file without empty cells."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _encode_labels(ds: Dataset, labels: list[str]) -> Dataset:
    ids = {name: i for i, name in enumerate(labels)}
    ds = ds.map(lambda batch: {"label": [ids[label_name(v)] for v in batch["label"]]}, batched=True)
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
        ids = train.with_format("arrow")[:]["label"].to_numpy()
        keep, held = stratified_indices(ids, size, seed)
        # As arrays: datasets fingerprints a selection by pickling its indices, a list item by
        # item (~20 ms for 8,000 rows, on every trial's start), an array as one buffer.
        train, out[split] = train.select(np.asarray(keep)), train.select(np.asarray(held))
    out["train"] = train
    return DatasetDict(out)


def stratified_indices(labels: np.ndarray, size: float, seed: int) -> tuple[list[int], list[int]]:
    """Split row indices so the held-out part (size rows, or a fraction if < 1) keeps the class
    shares. numpy instead of datasets' stratified split, which iterates rows (seconds per run)."""
    n_held = round(size * len(labels)) if size < 1 else int(size)
    if not 0 < n_held < len(labels):
        problem = f"data: cannot hold out {size} of {len(labels)} rows (val_size/test_size)"
        raise ConfigError([problem])
    rng = np.random.default_rng(seed)
    held: list[int] = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / len(labels) * n_held).astype(int)
    quota[np.argsort(-(counts / len(labels) * n_held - quota))[: n_held - quota.sum()]] += 1
    for cls, k in zip(classes, quota, strict=True):
        held.extend(rng.permutation(np.flatnonzero(labels == cls))[:k].tolist())
    held_set = set(held)
    keep = [i for i in rng.permutation(len(labels)).tolist() if i not in held_set]
    return keep, sorted(held)


def cap_splits(splits: DatasetDict, data_cfg: DictConfig, seed: int) -> DatasetDict:
    """data.max_train_samples / max_eval_samples (seeded subsets); test stays whole."""
    return DatasetDict(
        {
            "train": _cap(splits["train"], data_cfg.max_train_samples, seed),
            "validation": _cap(splits["validation"], data_cfg.max_eval_samples, seed),
            "test": splits["test"],
        }
    )


def _cap(ds: Dataset, limit: int | None, seed: int) -> Dataset:
    if limit is None or len(ds) <= limit:
        return ds
    return ds.shuffle(seed=seed).select(range(limit))
