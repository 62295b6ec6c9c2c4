"""The tokenized-data cache: reused when nothing changed, missed when the code that tokenizes
changed (an edited encode function must never be served stale tokens)."""

from __future__ import annotations

import importlib
import sys

from src.train import data
from src.train.models import load_tokenizer, resolve_source, resolve_tokenizer_path
from src.train.tokenized import tokenize_cached

ENCODER = """
def encode_text(text):
    return {edit}text


def tokenize(splits, tokenizer, max_length):
    def encode(batch):
        return tokenizer([encode_text(t) for t in batch["text"]], truncation=True,
                         max_length=max_length)

    return splits.map(encode, batched=True, remove_columns=["text"])
"""


def test_editing_the_encode_function_misses_the_cache(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a reload must read the new source
    monkeypatch.syspath_prepend(str(tmp_path))
    module_file = tmp_path / "my_encoder.py"
    module_file.write_text(ENCODER.format(edit=""))
    import my_encoder

    cfg = make_cfg()
    splits, _ = data.load_splits(cfg.data, cfg.seed)
    tokenizer = load_tokenizer(resolve_tokenizer_path(cfg.model, resolve_source(cfg.model)))
    cache = str(tmp_path / "cache")
    first = tokenize_cached(splits, tokenizer, 32, cache, my_encoder.tokenize)
    again = tokenize_cached(splits, tokenizer, 32, cache, my_encoder.tokenize)
    assert again["train"]["input_ids"] == first["train"]["input_ids"]
    assert len(list((tmp_path / "cache" / "tokenized").iterdir())) == 1  # reused

    # The same function name, edited helper: a new cache entry with the new tokens.
    module_file.write_text(ENCODER.format(edit="'review: ' + "))
    importlib.reload(my_encoder)
    edited = tokenize_cached(splits, tokenizer, 32, cache, my_encoder.tokenize)
    assert len(list((tmp_path / "cache" / "tokenized").iterdir())) == 2
    assert edited["train"]["input_ids"] != first["train"]["input_ids"]
