"""Peer (b) of bench/peers.py: a fresh interpreter per trial and no pruning, as Hydra multirun
with an Optuna sweeper runs a search (the hydra-optuna-sweeper cannot prune).

The sweep file's space, enqueued starts and TPE sampler (same seed) drive Optuna's ask/tell;
each trial is `python -m src.train <base> <trial overrides>`, a new process that imports the
stack, loads data and model, trains to the end (the file's per-trial cap and the wall budget
as Lightning max_time) and logs to MLflow, where this driver reads its val acc. Writes every
trial to --out (JSON).

    python bench/peer_processes.py --spec SEEDED.yaml --out trials.json --budget 660
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from src.sweep import load_spec  # noqa: E402
from src.sweep.configs import as_overrides, trial_settings  # noqa: E402
from src.sweep.samplers import build_sampler  # noqa: E402
from src.sweep.space import suggest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", type=float, default=None)
    args = parser.parse_args()
    started = time.time()  # the wall budget starts here, as the sweep's timeout does: after
    # the imports, before any data or model work
    spec = load_spec(args.spec)
    budget_end = started + (args.budget if args.budget is not None else spec.timeout)
    folder = Path(args.out).parent.resolve()
    uri = f"sqlite:///{folder}/peer-processes-mlflow.db"
    study = optuna.create_study(direction="maximize", sampler=build_sampler(spec))
    for params in spec.enqueue:
        study.enqueue_trial(params)
    records = []
    while len(records) < spec.n_trials and time.time() < budget_end:
        trial = study.ask()
        overrides = suggest(trial, spec.space).overrides
        record = run_trial(spec, trial.number, overrides, uri, budget_end - time.time())
        records.append(record)
        if record["state"] == "COMPLETE":
            study.tell(trial, record["value"])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    Path(args.out).write_text(json.dumps({"arm": "processes", "trials": records}, indent=1))


def run_trial(spec, number: int, overrides: list[str], uri: str, left_s: float) -> dict:
    """One trial as its own interpreter; its numbers come back through MLflow."""
    run_name = f"peer-processes-{number:04d}"
    cap = min(left_s, max_time_s(spec.base) or left_s)
    command = [
        sys.executable,
        "-m",
        "src.train",
        *spec.base,
        *overrides,
        *as_overrides(trial_settings(run_name, uri, quiet=True, max_time=max(1.0, cap))),
    ]
    start = time.time()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    end = time.time()
    record = {"number": number, "start": start, "end": end, "overrides": overrides}
    metrics = _run_metrics(uri, run_name)
    value = metrics.get("val/acc")
    record.update(
        state="COMPLETE" if done.returncode == 0 and value is not None else "FAIL",
        value=value,
        first_step=start + metrics["time/first_step_s"] if "time/first_step_s" in metrics else None,
        peak_mb=metrics.get("mem/peak_mb"),
        error=done.stderr[-2000:] if done.returncode else None,
    )
    return record


def _run_metrics(uri: str, run_name: str) -> dict:
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, filter_string=f"tags.mlflow.runName = '{run_name}'")
    return dict(runs[0].data.metrics) if runs else {}


def max_time_s(base: list[str]) -> float | None:
    """The per-trial cap the sweep file's base sets (+trainer.max_time=DD:HH:MM:SS)."""
    for override in base:
        if override.lstrip("+").startswith("trainer.max_time="):
            days, hours, minutes, seconds = (int(x) for x in override.split("=")[1].split(":"))
            return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return None


if __name__ == "__main__":
    main()
