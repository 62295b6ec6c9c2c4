"""Scale of the sweep's coordination, measured on the one-machine cluster of `make cluster-up`
(PostgreSQL, MLflow server, SLURM) and simulated:

  coord       ask -> trial process running -> tell -> next ask, per trial, with 1, 2 and 4
              SLURM workers on PostgreSQL (1-step tiny trials, `python -m src.sweep` as shipped);
  throughput  stub trials (5 s of sleep and heartbeats, no training, no estimate) through the
              real sweep (run_sweep: drivers, slot lock, MLflow runs) with N = 1, 2, 4, 8 local
              workers on PostgreSQL: N-worker trials/hour / (N x 1-worker trials/hour);
  sim         64, 256, 1,024 simulated workers (threads: ask under the slot lock -> stub ->
              tell) against PostgreSQL and against the gRPC proxy (bench/scale_sim.py);
  tpe         TPE's cost per ask with 1,000 and 10,000 finished trials (bench/scale_sim.py).

Each measurement records the machine's 1-minute load average at its start and end (the machine
is shared). The stub replaces src.sweep.trial.run_trial inside this benchmark's processes only.

    .venv/bin/python bench/scale.py [--quick] [--only coord,throughput,sim,tpe]
Results: bench/results/scale.json (sections merged into what is there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "results" / "scale.json"
EXPERIMENT = "ftsweep-bench-scale"
STUB_S = 5.0
TINY = [
    "model=tiny_bert",
    "data.max_train_samples=64",
    "data.max_eval_samples=32",
    "data.test_size=64",
    "data.batch_size=16",
    "trainer.max_steps=1",
    "trainer.val_check_interval=1",  # one validation: the objective
    "trainer.max_epochs=-1",
]
SWEEP = """
base: {base}
space:
  lr: {{type: float, low: 1e-4, high: 1e-2, log: true, path: optim.lr}}
  rank: {{type: categorical, choices: [2, 4, 8], path: adapter.peft.r}}
sampler: {{name: tpe, seed: 0}}
pruner: {{name: none}}
objectives: [{{metric: val/acc, direction: maximize}}]
n_trials: 2
"""


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def measured(fn, *args, **kwargs) -> dict:
    """fn's result dict with the 1-minute load average at its start and end."""
    start = load1()
    result = fn(*args, **kwargs)
    return {**result, "load_1min_start": start, "load_1min_end": load1()}


def cluster_env() -> dict[str, str]:
    env_file = ROOT / ".cluster" / "env"
    if not env_file.is_file():
        sys.exit("no cluster: run `make cluster-up` first (bench/scale.py reads .cluster/env)")
    return dict(re.findall(r"^export (\w+)=(.*)$", env_file.read_text(), re.M))


# --- coord: real SLURM workers, 1-step tiny trials ------------------------------------------


def coordination(env: dict, workers: int, per_worker: int, folder: Path) -> dict:
    from src.sweep import main
    from src.sweep.storage import open_storage

    name = f"scale-coord-{workers}w-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(SWEEP.format(base=TINY))
    args = [
        f"sweep={folder / 'tiny.yaml'}",
        f"study_name={name}",
        f"storage={env['FTSWEEP_STORAGE']}",
        f"n_trials={workers * per_worker}",
        "report=false",
        f"paths.root={folder}",
        f"logger.tracking_uri={env['MLFLOW_TRACKING_URI']}",
        f"logger.experiment={EXPERIMENT}",
        "launcher=slurm",
        f"workers={workers}",
        "launcher.cpus_per_worker=1",
    ]
    if workers > (os.cpu_count() or 1):  # 4 workers on 2 cores: let the jobs share cores
        share_cores()
        args.append("launcher.sbatch=oversubscribe")
    start = time.time()
    main(args)
    import optuna

    study = optuna.load_study(study_name=name, storage=open_storage(env["FTSWEEP_STORAGE"]))
    return {"workers": workers, "wall_s": round(time.time() - start, 1), **cycles(study.trials)}


def share_cores() -> None:
    """make cluster-up's partition `local` lets jobs that ask share cores (until its restart)."""
    import subprocess

    subprocess.run(["scontrol", "update", "PartitionName=local", "OverSubscribe=YES"], check=True)


def cycles(trials) -> dict:
    """Per trial (each worker's first left out: its fork server starts then): where the time
    between one ask and the same worker's next ask goes."""
    parts = {k: [] for k in ("ask_to_launch", "process", "train", "launch_end_to_tell")}
    parts |= {"tell_to_next_ask": [], "cycle": [], "not_training": [], "driver": []}
    by_worker: dict[str, list] = {}
    for t in trials:
        if t.state.name == "COMPLETE":
            by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    for runs in by_worker.values():
        runs.sort(key=lambda t: t.datetime_start)
        for t, nxt in zip(runs[1:], runs[2:], strict=False):
            a = t.user_attrs
            start, done = t.datetime_start.timestamp(), t.datetime_complete.timestamp()
            train = float(a["metrics"].get("time/train_s", 0.0))
            row = {
                "ask_to_launch": a["launched_at"] - start,
                "process": a["wall_s"] - train,  # trial process: start, test pass, logging, exit
                "train": train,
                "launch_end_to_tell": done - (a["launched_at"] + a["wall_s"]),
                "tell_to_next_ask": nxt.datetime_start.timestamp() - done,
                "cycle": nxt.datetime_start.timestamp() - start,
            }
            row["not_training"] = row["cycle"] - train
            row["driver"] = row["ask_to_launch"] + row["launch_end_to_tell"]
            row["driver"] += row["tell_to_next_ask"]
            for key, value in row.items():
                parts[key].append(value)
    return {
        "trials_measured": len(parts["cycle"]),
        "median_s": {k: round(statistics.median(v), 3) for k, v in parts.items() if v},
    }


# --- throughput: stub trials through run_sweep ------------------------------------------------


def stub_run_trial(job, heartbeat=None, on_run=None, on_start=None, every_s=10.0):
    """The trial process's stand-in: STUB_S of waiting with heartbeats, a random val/acc."""
    from src.sweep.process.job import TrialOutcome

    launched = time.time()
    while (left := launched + STUB_S - time.time()) > 0:
        if heartbeat is not None:
            heartbeat()
        time.sleep(min(every_s, left))
    value = random.Random(job.number).random()
    return TrialOutcome(
        "COMPLETE",
        metrics={"val/acc": value},
        wall_s=time.time() - launched,
        launched_at=launched,
    )


def stub_worker_main(*args, **kwargs):
    """A local worker (spawned: it imports this file afresh) whose trials are stubs."""
    import src.sweep.trial
    from src.sweep.workers import worker_main

    src.sweep.trial.run_trial = stub_run_trial
    worker_main(*args, **kwargs)


def use_stubs() -> None:
    import src.sweep.run
    import src.sweep.trial
    import src.sweep.workers
    from src.sweep.budget import Budget

    src.sweep.trial.run_trial = stub_run_trial
    src.sweep.workers.worker_main = stub_worker_main
    src.sweep.run.resolve_budget = lambda *args, **kwargs: Budget()  # nothing to estimate


def throughput(env: dict, workers: int, per_worker: int, folder: Path) -> dict:
    """Stub trials through run_sweep with `workers` local worker processes (see rates)."""
    from src.sweep.run import run_sweep
    from src.sweep.spec import load_spec

    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    spec = load_spec("default", [f"paths.root={folder}", f"logger.experiment={EXPERIMENT}"])
    name = f"scale-stub-{workers}w-{uuid.uuid4().hex[:6]}"
    overrides = [f"paths.root={folder}", f"logger.experiment={EXPERIMENT}"]
    study = run_sweep(
        spec, name, env["FTSWEEP_STORAGE"], workers * per_worker, overrides=overrides,
        workers=workers,
    )  # fmt: skip
    return {"workers": workers, **rates(study.trials, workers)}


def rates(trials, workers: int) -> dict:
    """Two estimates of trials/hour: starts in the window where every worker was running trials
    (from the last worker's first start to the first worker's last start), and the sum of each
    worker's own rate (its trials - 1 over its first to last start); the window one counts the
    edges of the window to within a trial per worker."""
    done = [t for t in trials if t.state.name == "COMPLETE"]
    starts: dict[str, list[float]] = {}
    for t in done:
        starts.setdefault(t.user_attrs["worker"], []).append(t.datetime_start.timestamp())
    first = max(min(s) for s in starts.values())  # every worker has started
    last = min(max(s) for s in starts.values())  # ... and none has stopped
    inside = [s for ss in starts.values() for s in ss if first <= s < last]
    window = max(last - first, 1e-9)
    own = sum((len(ss) - 1) / (max(ss) - min(ss)) for ss in starts.values() if len(ss) > 1)
    return {
        "trials": len(done),
        "window_s": round(window, 1),
        "trials_in_window": len(inside),
        "trials_per_hour": round(len(inside) / window * 3600, 1),
        "trials_per_hour_worker_sum": round(own * 3600, 1),
        "ideal_per_hour": round(workers * 3600 / STUB_S, 1),
    }


def efficiency(rows: list[dict]) -> None:
    """N-worker trials/hour / (N x 1-worker trials/hour), for both estimates."""
    for row in rows:
        for key, out in (
            ("trials_per_hour", "efficiency"),
            ("trials_per_hour_worker_sum", "efficiency_worker_sum"),
        ):
            row[out] = round(row[key] / (row["workers"] * rows[0][key]), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials, shorter windows")
    parser.add_argument("--only", default="coord,throughput,sim,tpe")
    opts = parser.parse_args()
    only, quick = set(opts.only.split(",")), opts.quick
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    results["machine"] = {"cpus": os.cpu_count(), "quick": quick, "date": time.strftime("%F")}
    folder = Path(tempfile.mkdtemp(prefix="ftsweep-scale-"))
    env = cluster_env() if only & {"coord", "throughput", "sim"} else {}
    os.environ.setdefault("SLURM_CONF", env.get("SLURM_CONF", ""))
    if "coord" in only:
        results["coordination"] = [
            measured(coordination, env, n, 3 if quick else 6, folder / f"coord{n}")
            for n in (1, 2, 4)
        ]
        save(results)
    if "throughput" in only:
        use_stubs()
        rows = [
            measured(throughput, env, n, 5 if quick else 10, folder / f"stub{n}")
            for n in (1, 2, 4, 8)
        ]
        efficiency(rows)
        results["throughput"] = rows
        save(results)
    if "sim" in only or "tpe" in only:
        import scale_sim

        if "sim" in only:
            results["simulation"] = scale_sim.simulations(env, quick, measured)
            save(results)
        if "tpe" in only:
            results["tpe_ask"] = [measured(scale_sim.tpe_ask, n, quick) for n in (1000, 10000)]
            save(results)


def save(results: dict) -> None:
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"[scale] wrote {OUT}", flush=True)


if __name__ == "__main__":
    main()
