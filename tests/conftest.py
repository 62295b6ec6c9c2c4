"""Shared fixtures: tiny budgets, a private cache and a real SQLite MLflow store per test."""

from __future__ import annotations

import json
import os
import shutil
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


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, made once per session (per xdist worker). MLflow creates a
    new store by running its ~60 schema migrations: ~2 s each time, a third of a tiny in-process
    run (cProfile, 2026-12-07); a copy of the migrated file is the same empty store in ~0.1 s."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{path}", path.parent.as_uri()).engine.dispose()
    return path


@pytest.fixture
def store(tmp_path, empty_store) -> str:
    """A fresh, empty SQLite MLflow store URI inside the test's tmp dir."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
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


# Tiny hand-written configs of architectures the shipped models do not cover, for config-only
# checks (validation, the estimate) and, saved by models.random_init, real runs.
ARCHITECTURES = {
    "mixtral": {"model_type": "mixtral", "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "num_local_experts": 4, "num_experts_per_tok": 2, "vocab_size": 128},
    # DeBERTa-v3's attention: relative positions only (none added to the input).
    "deberta-v3": {"model_type": "deberta-v2", "hidden_size": 32, "intermediate_size": 64,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 1000,
                   "relative_attention": True, "position_biased_input": False,
                   "pos_att_type": ["p2c", "c2p"], "position_buckets": 256,
                   "norm_rel_ebd": "layer_norm", "share_att_key": True},
    "distilbert": {"model_type": "distilbert", "dim": 32, "n_layers": 2, "n_heads": 4,
                   "hidden_dim": 64, "vocab_size": 128},
}  # fmt: skip


@pytest.fixture
def config_only(tmp_path):
    """A model folder holding only the config.json of one of ARCHITECTURES (no weights)."""

    def _write(name: str) -> str:
        folder = tmp_path / f"config-only-{name}"
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps(ARCHITECTURES[name]))
        return str(folder)

    return _write


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
