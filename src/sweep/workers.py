"""workers=N: N driver processes on one study, each with its own ask -> trial process -> tell
loop, under the sweep's one MLflow parent run. They share nothing but the storage: counting and
asking go under a file lock for SQLite (src/sweep/driver.next_trial), Optuna's RDB storage hands
each WAITING (re-queued) trial to exactly one of them.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

from src.sweep import interrupts
from src.sweep.driver import SweepAborted, drive
from src.sweep.gpus import ENV, visible_gpus, worker_gpus
from src.sweep.storage import open_study
from src.sweep.tracking import SweepRuns
from src.sweep.trial import SweepContext, interrupted
from src.train.tracking import tracking_uri

ABORTED = 3  # a worker's exit code when a bug stopped it (SweepAborted)
INTERRUPTED = 130


def run_workers(n: int, ctx, plan) -> None:
    """Start n workers and wait; Ctrl-C / SIGTERM stops them all (each closes its own trial)."""
    spawn = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch threads
    args = worker_args(ctx, plan)
    gpus = visible_gpus()
    procs = [
        spawn.Process(
            target=worker_main,
            args=(i, *args),
            kwargs={"gpus": worker_gpus(i, n, gpus)},
            name=f"sweep-worker-{i}",
        )
        for i in range(n)
    ]
    for proc in procs:
        proc.start()
    try:
        _wait(procs)
    except BaseException:
        _stop(procs)
        raise
    aborted = [p.name for p in procs if p.exitcode == ABORTED]
    if aborted:
        raise SweepAborted(f"{', '.join(aborted)} stopped on an unexpected trial error (see above)")


def worker_args(ctx, plan) -> tuple:
    """What worker_main needs after its index: plain data that pickles to another process (a
    spawned local worker or a SLURM job)."""
    return (
        ctx.spec,
        ctx.study.study_name,
        ctx.storage,
        ctx.runs.run_id,
        ctx.uri,
        ctx.quiet,
        ctx.overrides,
        str(ctx.log_dir.resolve()),
        plan,
    )


def _wait(procs) -> None:
    """Until all exit; when one stops on a bug, the others stop too (like a single driver)."""
    while any(p.is_alive() for p in procs):
        time.sleep(0.5)
        interrupts.check()
        if any(p.exitcode == ABORTED for p in procs):
            _stop(procs)
            return


def _stop(procs) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM -> the worker's KeyboardInterrupt path
    for proc in procs:
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def worker_main(
    index,
    spec,
    study_name,
    storage,
    parent_run_id,
    uri,
    quiet,
    overrides,
    log_dir,
    plan,
    gpus=None,
    also_stop_on=(),
) -> None:
    if gpus is not None:  # before anything here initialises CUDA; trial processes inherit it
        os.environ[ENV] = gpus
    with interrupts.installed(
        also_stop_on
    ):  # SIGTERM from the parent / Ctrl-C: stop at the next safe point
        _work(index, spec, study_name, storage, parent_run_id, uri, quiet, overrides, log_dir, plan)


def _work(
    index, spec, study_name, storage, parent_run_id, uri, quiet, overrides, log_dir, plan
) -> None:
    study = open_study(spec, study_name, storage, plan.heartbeat_s)
    runs = SweepRuns.attach(tracking_uri(uri), parent_run_id)
    ctx = SweepContext(
        spec=spec,
        study=study,
        storage=storage,
        runs=runs,
        uri=uri,
        quiet=quiet,
        overrides=list(overrides),
        log_dir=Path(log_dir),
    )
    try:
        drive(ctx, plan, bar=False)
    except SweepAborted as err:
        print(f"[sweep {study_name}] worker {index}: {err}", file=sys.stderr, flush=True)
        sys.exit(ABORTED)
    except KeyboardInterrupt:
        interrupted(ctx)
        sys.exit(INTERRUPTED)
