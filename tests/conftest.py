"""Shared fixtures: tiny budgets, a private cache and a real SQLite MLflow store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from src.train import compose_config

# data.test_size: the test split is not capped by max_eval_samples, and at its default (1,000
# rows) scoring it was most of a tiny Llama generation run (generating for every row).
TINY_BUDGET = [
    "data.max_train_samples=64",
    "data.max_eval_samples=32",
    "data.test_size=64",
    "trainer.max_steps=4",
    "trainer.enable_progress_bar=false",
    "summary=false",
]


def pytest_configure(config):
    # One cache per test session (per xdist worker): tokenized data and tiny models are built
    # once, and nothing outside the session's tmp dir is written.
    os.environ.setdefault("FTSWEEP_CACHE", str(Path(config.rootpath) / ".pytest_cache" / "ftsweep"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # A shell that sourced .cluster/env must not send every test's sweep to PostgreSQL or the
    # MLflow server: tests that want the cluster read .cluster/env themselves.
    for name in ("FTSWEEP_STORAGE", "MLFLOW_TRACKING_URI"):
        os.environ.pop(name, None)


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh SQLite MLflow store URI inside the test's tmp dir."""
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def make_cfg(tmp_path, store):
    """compose_config with tiny budgets, outputs under tmp_path and the tmp MLflow store."""

    def _make(*overrides: str, model: str = "tiny_bert"):
        return compose_config(
            [
                f"model={model}",
                *TINY_BUDGET,
                f"paths.root={tmp_path}",
                f"logger.tracking_uri={store}",
                *overrides,
            ]
        )

    return _make


@pytest.fixture
def sweep_env(tmp_path, store):
    """Write a sweep file; return (path, storage URL, overrides that keep outputs in tmp)."""

    def _make(text: str, name: str = "tiny"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return (
            str(path),
            f"sqlite:///{tmp_path}/optuna.db",
            [f"paths.root={tmp_path}", f"logger.tracking_uri={store}"],
        )

    return _make
