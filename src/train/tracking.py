"""MLflow: where the store is, one run per training, params/tags/artifacts/metrics."""

from __future__ import annotations

import functools
import json
import os
import platform
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "lightning",
    "bitsandbytes",
    "optuna",
    "mlflow",
    "hydra-core",
    "datasets",
)


def tracking_uri(configured: str | None = None) -> str:
    """Config value, else $MLFLOW_TRACKING_URI, else the project's SQLite store."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


# MLflow 3's UI opens an experiment on what its kind says: GenAI traces by default, the runs
# table for model development.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# A view of the runs table with the columns that compare fine-tuning runs, stored on the
# experiment as MLflow's own shared view state and opened by ui_link() (?viewStateShareKey=).
VIEW_KEY = "ftsweep"
VIEW = {
    "selectedColumns": [
        "tags.`method`",
        "metrics.`val/acc`",
        "metrics.`mem/peak_mb`",
        "metrics.`time/train_s`",
        "tags.`trial_state`",
        "tags.`quant`",
        "tags.`precision`",
    ],
}


def ensure_experiment(uri: str, name: str, artifact_root: str | None) -> str:
    """Create the store and experiment once (parallel first use of SQLite races in migration)."""
    client = MlflowClient(uri)
    existing = client.get_experiment_by_name(name)
    if existing is None:
        # A tracking server stores artifacts itself (--artifacts-destination): a local folder
        # would leave them on whichever machine created the experiment.
        remote = uri.startswith(("http://", "https://"))
        location = Path(artifact_root).resolve().as_uri() if artifact_root and not remote else None
        try:
            client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))
        except mlflow.exceptions.MlflowException:  # created meanwhile by another process
            pass
        existing = client.get_experiment_by_name(name)
    view = (f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(VIEW))
    for key, value in (EXPERIMENT_KIND, view):
        if existing.tags.get(key) != value:  # made before these were set, or an older view
            client.set_experiment_tag(existing.experiment_id, key, value)
    return existing.experiment_id


def ui_link(base: str = "http://127.0.0.1:5000", experiment: str = "ftsweep") -> str:
    """Where `make ui` should be opened: the experiment's runs in the UI's model-training mode
    (MLflow 3.17 opens in GenAI mode unless the link says otherwise)."""
    mode = f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"
    try:
        found = MlflowClient(tracking_uri()).get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - no store yet: the experiments list
        found = None
    if found is None:
        return f"{base}/#/experiments{mode}"
    return f"{base}/#/experiments/{found.experiment_id}/runs{mode}"


@functools.cache  # reading the installed packages' metadata costs ~30 ms; a sweep's fork
# server fills this once for every trial (src/sweep/process/preload.py)
def package_versions() -> dict[str, str]:
    out = {}
    for pkg in TRACKED_PACKAGES:
        try:
            out[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            out[f"version.{pkg}"] = "absent"
    out["version.python"] = platform.python_version()
    return out


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """Resolved config flattened to dotted keys (MLflow caps a value at 6000 chars)."""
    flat: dict[str, str] = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = str(node)[:6000]

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def run_tags(cfg: DictConfig, device: str) -> dict[str, str]:
    return {
        "method": cfg.adapter.name,
        "quant": cfg.quant.name,
        "precision": cfg.precision.name,
        "model": cfg.model.name,
        "data": cfg.data.name,
        "task": cfg.task.name,
        "device": device,
        **package_versions(),  # a copy: the cached dict stays as read
    }


@contextmanager
def mlflow_run(
    cfg: DictConfig, device: str, parent_run_id: str | None = None, extra_tags: dict | None = None
):
    """Yield an active MLflow run (or None when logging is off, and in every data-parallel rank
    but rank 0: one run per run, rank 0 logs what all ranks measured); FAILED on exception."""
    from src.train.distributed import rank

    if cfg.logger.experiment is None or rank() != 0:
        yield None
        return
    uri = tracking_uri(cfg.logger.tracking_uri)
    experiment_id = ensure_experiment(uri, cfg.logger.experiment, cfg.logger.artifact_root)
    mlflow.set_tracking_uri(uri)
    tags = {**run_tags(cfg, device), **(extra_tags or {})}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=cfg.run_name,
        tags=tags,
        log_system_metrics=bool(cfg.logger.get("system_metrics", False)),
    ) as run:
        mlflow.log_params(flat_params(cfg))
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        yield run


def log_final_metrics(metrics: dict[str, float], step: int) -> None:
    """Final measurements; non-finite values are skipped (MLflow rejects NaN in some stores)."""
    import math

    mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)}, step=step)
