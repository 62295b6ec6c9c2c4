"""What `mem/peak_mb` covers on CPU: the training's memory, not the run's tracking set-up."""

from __future__ import annotations

from src.train import train

NO_EXTRAS = ["adapter=full", "checkpoint.enabled=false", "early_stopping.enabled=false"]


def test_mlflow_tracking_is_not_counted_as_training_memory(make_cfg):
    """An MLflow run (a fresh store: engine, schema, the run's params and config) opened after
    the memory baseline added ~55 MB to a tiny BERT's 120 MB training peak."""
    untracked = train(make_cfg(*NO_EXTRAS, "logger=none"))
    tracked = train(make_cfg(*NO_EXTRAS, "logger.system_metrics=false"))
    assert tracked["mem/peak_mb"] < untracked["mem/peak_mb"] + 15, (tracked, untracked)
