"""What `make ui` serves: a real MLflow UI server over the sweep's store shows the experiment as
model development (its runs table, not GenAI traces) and the trials nested under their sweep."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from src.sweep import load_spec, run_sweep

TINY = [
    "model=tiny_bert",
    "data.max_train_samples=32",
    "data.max_eval_samples=16",
    "data.test_size=16",
    "trainer.max_steps=2",
    "trainer.val_check_interval=1",
]
SWEEP = """
base: [adapter=lora]
space:
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, path: optim.lr}
sampler: {name: random, seed: 0}
n_trials: 2
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_ui_server_shows_trials_nested_under_their_sweep(sweep_env, store, tmp_path):
    path, storage, overrides = sweep_env(SWEEP)
    study = run_sweep(
        load_spec(path, [*TINY, *overrides]), "ui", storage, overrides=[*TINY, *overrides]
    )
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            store,
            "--workers",
            "1",
        ],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "the MLflow UI did not start within 90 s"
                time.sleep(1)
        experiment = call(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=ftsweep")
        tags = {t["key"]: t["value"] for t in experiment["experiment"].get("tags", [])}
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        # the runs table's columns, as MLflow's shared view state that `make ui`'s link opens
        view = json.loads(tags["mlflow.sharedViewState.ftsweep"])
        assert {
            "tags.`method`",
            "metrics.`val/acc`",
            "metrics.`mem/peak_mb`",
            "metrics.`time/train_s`",
        } <= set(view["selectedColumns"])
        parent = study.user_attrs["mlflow_parent_run_id"]
        found = call(
            base,
            "/api/2.0/mlflow/runs/search",
            {
                "experiment_ids": [experiment["experiment"]["experiment_id"]],
                "filter": f"tags.mlflow.parentRunId = '{parent}'",
            },
        )
        trials = sorted(int(_tags(r)["trial"]) for r in found["runs"])
        assert trials == [0, 1]
        assert all("val/acc" in {m["key"] for m in r["data"]["metrics"]} for r in found["runs"])
    finally:
        server.terminate()
        server.wait(30)


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"]["tags"]}
