"""Runs land in a real SQLite MLflow store with the contract's keys, params, tags and artifacts."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from src.train import train
from src.train.metrics import CONTRACT_METRICS


def test_run_logs_metrics_params_tags_and_config(make_cfg, store, monkeypatch):
    # MLflow's system metrics are sampled every 10 s by default and a run shorter than one
    # interval logs none; this run lasts about 2 s (CI failed once with a 1 s interval).
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    cfg = make_cfg(
        "+experiment=qlora_r8", "trainer.log_every_n_steps=1", "checkpoint.enabled=false"
    )
    metrics = train(cfg)
    client = MlflowClient(store)
    [experiment] = [e for e in client.search_experiments() if e.name == cfg.logger.experiment]
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert set(CONTRACT_METRICS) <= set(run.data.metrics)
    assert run.data.metrics["test/acc"] == metrics["test/acc"]
    assert run.data.params["adapter.peft.r"] == "8" and run.data.params["quant.name"] == "nf4"
    tags = run.data.tags
    assert (tags["method"], tags["quant"], tags["precision"], tags["device"]) == (
        "lora",
        "nf4",
        "32-true",
        "cpu",
    )
    assert tags["version.peft"] and tags["version.torch"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts
    # CPU and memory use while it ran (GPU use too where a GPU is present).
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        run.data.metrics
    )
    # The training curve is logged step by step, not just the final value.
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 3


def test_failed_run_is_marked_failed(make_cfg, store):
    cfg = make_cfg("trainer.max_steps=2")
    cfg.optim.optimizer._target_ = (
        "torch.optim.DoesNotExist"  # fails inside fit, after the run starts
    )
    try:
        train(cfg)
    except Exception:  # noqa: BLE001 - the failure itself is the point
        pass
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]
