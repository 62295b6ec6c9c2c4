"""Data sources, seeded stratified splits, and the tokenization cache."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from src.train import compose_config, data, train
from src.train.models import load_tokenizer, resolve_source, resolve_tokenizer_path
from src.train.tasks.classification_data import tokenize_classification
from src.train.tokenized import tokenize_cached


def test_rotten_tomatoes_splits_are_seeded_stratified_and_disjoint(tmp_path):
    cfg = compose_config([f"paths.root={tmp_path}"])  # the shipped split sizes, no test budget
    splits, labels = data.load_splits(cfg.data, seed=1)
    again, _ = data.load_splits(cfg.data, seed=1)
    assert labels == ["rotten", "fresh"]
    assert (len(splits["validation"]), len(splits["test"])) == (500, 1000)
    assert splits["test"]["text"] == again["test"]["text"]
    assert not set(splits["train"]["text"]) & set(splits["test"]["text"])
    share = {k: Counter(v["label"])[1] / len(v) for k, v in splits.items()}
    assert abs(share["train"] - share["test"]) < 0.02  # stratified: same fresh share (~0.58)


def frame(n=40):
    return pd.DataFrame(
        {
            "text": [f"sample text number {i}" for i in range(n)],
            "label": ["neg" if i % 2 else "pos" for i in range(n)],
        }
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_user_files_train(make_cfg, tmp_path, fmt):
    path = tmp_path / f"train.{fmt}"
    df = frame()
    {
        "csv": lambda: df.to_csv(path, index=False),
        "jsonl": lambda: path.write_text("\n".join(json.dumps(r) for r in df.to_dict("records"))),
        "parquet": lambda: df.to_parquet(path),
    }[fmt]()
    metrics = train(
        make_cfg(
            f"data={fmt}",
            f"data.train_file={path}",
            "data.val_size=8",
            "data.test_size=8",
            "logger=none",
            "checkpoint.enabled=false",
        )
    )
    assert metrics["train/steps"] == 2 * 1  # 24 train rows / batch 32 = 1 step per epoch, 2 epochs


def test_tokenization_is_cached_and_reused(make_cfg, tmp_path):
    cfg = make_cfg()
    splits, _ = data.load_splits(cfg.data, cfg.seed)
    tokenizer = load_tokenizer(resolve_tokenizer_path(cfg.model, resolve_source(cfg.model)))
    first = tokenize_cached(splits, tokenizer, 32, str(tmp_path), tokenize_classification)
    [folder] = list((tmp_path / "tokenized").iterdir())
    stamp = folder.stat().st_mtime_ns
    second = tokenize_cached(splits, tokenizer, 32, str(tmp_path), tokenize_classification)
    assert folder.stat().st_mtime_ns == stamp and len(list((tmp_path / "tokenized").iterdir())) == 1
    assert first["train"]["input_ids"] == second["train"]["input_ids"]
    assert max(len(x) for x in first["train"]["input_ids"]) <= 32
    tokenize_cached(
        splits, tokenizer, 16, str(tmp_path), tokenize_classification
    )  # another max_length: new entry
    assert len(list((tmp_path / "tokenized").iterdir())) == 2
