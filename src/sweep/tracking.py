"""MLflow for a sweep: one parent run per invocation, trial states on the child runs that
train() creates, best trial and Pareto set on the parent at the end."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from src.sweep.outcomes import MLFLOW_STATUS
from src.sweep.urls import display_url
from src.train import tracking


def close_stale_run(client: MlflowClient, run_id: str | None) -> None:
    """A trial run whose driver died: KILLED with reason stale, never left RUNNING."""
    if run_id and client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, "reason", "stale")
        client.set_terminated(run_id, "KILLED")


def process_alive(pid: int) -> bool:
    """Whether a process of this host exists (a zombie counts as gone only once reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def metric_name(key: str) -> str:
    """'val/acc' -> 'val_acc' for names like best/val_acc."""
    return key.replace("/", "_")


class SweepRuns:
    """The parent run of one sweep invocation and the bookkeeping of its trial runs."""

    def __init__(self, uri: str, experiment: str, artifact_root: str | None):
        self.uri = uri
        # Created here, once, before any trial process touches the store (SQLite races otherwise).
        self.experiment_id = tracking.ensure_experiment(uri, experiment, artifact_root)
        self.client = MlflowClient(uri)
        self.run_id: str | None = None

    @classmethod
    def attach(cls, uri: str, parent_run_id: str) -> SweepRuns:
        """The bookkeeping of a sweep whose parent run another process started (workers)."""
        runs = cls.__new__(cls)
        runs.uri, runs.client, runs.run_id = uri, MlflowClient(uri), parent_run_id
        runs.experiment_id = runs.client.get_run(parent_run_id).info.experiment_id
        return runs

    def start(self, spec, study_name: str, storage: str, n_trials: int) -> str:
        # host + pid: a later invocation on this host can tell that this driver died.
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"sweep-{study_name}",
            tags={
                "kind": "sweep",
                "sweep": spec.name,
                "study_name": study_name,
                "driver_host": socket.gethostname(),
                "driver_pid": str(os.getpid()),
            },
        )
        self.run_id = run.info.run_id
        params = {
            "sweep": spec.name,
            "sweep_file": str(spec.path),
            "study_name": study_name,
            "storage": display_url(storage),  # a password stays out of MLflow
            "n_trials": n_trials,
            "timeout": spec.timeout,
            "sampler": json.dumps(spec.sampler),
            "pruner": json.dumps(spec.pruner),
            "objectives": json.dumps(spec.objectives),
            "base": json.dumps(spec.base),
        }
        self.client.log_batch(
            self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()]
        )
        self.client.log_artifact(self.run_id, str(spec.path), "sweep")
        return self.run_id

    def record_trial(
        self, number: int, outcome, run_name: str, tags: dict, log_path: str | None
    ) -> str:
        """Tag the trial's run with its state; create one if the trial died before train() did."""
        run_id = outcome.run_id
        if run_id is None:
            run_id = self.client.create_run(
                self.experiment_id,
                run_name=run_name,
                tags={**tags, "mlflow.parentRunId": self.run_id},
            ).info.run_id
        state_tags = {"trial_state": outcome.state, "reason": outcome.reason}
        if outcome.pruned_at_step is not None:
            state_tags["pruned_at_step"] = str(outcome.pruned_at_step)
            state_tags["pruned_by"] = str(outcome.pruned_by)
        if outcome.fail_reason:
            state_tags["fail_reason"] = outcome.fail_reason[:5000]
        for key, value in state_tags.items():
            self.client.set_tag(run_id, key, value)
        for key, value in (
            ("time/trial_startup_s", outcome.startup_s),
            ("time/trial_setup_s", outcome.setup_s),
        ):
            if value is not None:
                self.client.log_metric(run_id, key, value)
        if log_path and Path(log_path).is_file():
            self.client.log_artifact(run_id, log_path)
        self.client.set_terminated(run_id, MLFLOW_STATUS[outcome.reason])
        return run_id

    def log_estimate(self, run_id: str, estimate: dict) -> None:
        """estimate/peak_mb, estimate/step_ms of a trial that was never launched."""
        for key in ("peak_mb", "step_ms"):
            if isinstance(estimate.get(key), (int, float)):
                self.client.log_metric(run_id, f"estimate/{key}", float(estimate[key]))

    def close_dead_parents(self, study_name: str) -> list[str]:
        """Parent runs of this study left RUNNING by a driver on this host that no longer exists
        (kill -9, pre-emption): KILLED. Drivers on other hosts cannot be checked from here."""
        runs = self.client.search_runs(
            [self.experiment_id],
            "attributes.status = 'RUNNING' and tags.kind = 'sweep' and "
            f"tags.study_name = '{study_name}' and tags.driver_host = '{socket.gethostname()}'",
        )
        closed = []
        for run in runs:
            if not process_alive(int(run.data.tags.get("driver_pid", "0"))):
                self.client.set_tag(run.info.run_id, "reason", "driver died")
                self.client.set_terminated(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
        return closed

    def log_progress(self, number: int, values: dict) -> None:
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, v, now, number)
            for k, v in values.items()
            if v is not None and math.isfinite(v)
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, study, status: str = "FINISHED") -> None:
        """Best trial (single objective) or Pareto set (several) as metrics/tags on the parent."""
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        counts = {
            s: sum(t.state.name == s for t in study.trials)
            for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
        }
        for state, n in counts.items():
            self.client.log_metric(self.run_id, f"trials/{state.lower()}", n)
        if complete and len(study.directions) == 1:
            best = study.best_trial
            self._log_trial_summary("best", best)
            self.client.set_tag(self.run_id, "best_trial", str(best.number))
            self.client.set_tag(self.run_id, "best_params", json.dumps(best.params)[:5000])
            self.client.set_tag(self.run_id, "best_run_id", str(best.user_attrs.get("run_id")))
        elif complete:
            front = study.best_trials
            self.client.set_tag(
                self.run_id, "pareto_trials", ",".join(str(t.number) for t in front)
            )
            self.client.log_metric(self.run_id, "pareto/size", len(front))
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.from_string(status)))

    def _log_trial_summary(self, prefix: str, trial) -> None:
        metrics = trial.user_attrs.get("metrics", {})
        for key in ("val/acc", "test/acc", "mem/peak_mb", "time/train_s", "params/trainable"):
            if key in metrics:
                self.client.log_metric(self.run_id, f"{prefix}/{metric_name(key)}", metrics[key])
