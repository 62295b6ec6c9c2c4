"""One child process per trial, forked from a server that has already imported the stack.

Why a child: a crash, OOM or leaked memory stays inside one trial, and peak memory is honest per
trial. Why a fork server: importing torch+transformers+peft+lightning+mlflow costs ~10 s here;
forking a process that already did it makes the per-trial fixed cost a fraction of a second.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from dataclasses import dataclass, field

from src import interrupts
from src.outcomes import STATE, oom_kill_count, reason_of_exception, reason_of_exit

# Imported by the fork server once (see trial_context); the trial process inherits them.
PRELOAD = ["src.trial_preload"]


@dataclass
class TrialJob:
    """Everything a trial process needs; plain data, so it pickles to the child."""

    study_name: str
    storage: str
    trial_id: int
    number: int
    overrides: list[str]
    pruner: dict
    prune: bool
    monitor: str
    parent_run_id: str | None
    tags: dict
    cwd: str
    quiet: bool = False
    log_path: str | None = None
    launched_at: float = 0.0
    driver_pid: int = 0  # the trial process stops itself when this process is gone


@dataclass
class TrialOutcome:
    """What the parent learns about a finished trial process."""

    state: str  # COMPLETE | PRUNED | FAIL
    reason: str = "complete"  # why it ended: see src/outcomes.py
    metrics: dict = field(default_factory=dict)
    run_id: str | None = None
    pruned_at_step: int | None = None
    fail_reason: str | None = None
    traceback: str | None = None
    startup_s: float | None = None  # child start -> end of the first optimizer step
    setup_s: float | None = None  # child start -> start of the first batch (no training compute)
    wall_s: float = 0.0


_CONTEXT = None


def trial_context():
    """The forkserver context with our preload; the server starts on the first trial."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def run_trial(job: TrialJob, heartbeat=None, on_run=None, on_start=None, every_s: float = 10.0) -> TrialOutcome:
    """Run one trial in its own process and map how it ended to an outcome; call heartbeat()
    every few seconds while waiting (Optuna marks trials without heartbeats stale) and
    on_run(run_id) as soon as the trial's MLflow run exists."""
    ctx = trial_context()
    receiver, sender = ctx.Pipe(duplex=False)
    job.launched_at, job.driver_pid = time.time(), os.getpid()
    oom_kills_before = oom_kill_count()
    proc = ctx.Process(target=child_main, args=(job, sender), name=f"trial-{job.number}", daemon=False)
    proc.start()
    if on_start is not None:
        on_start(proc.pid)
    sender.close()  # our copy: the pipe then reports EOF when the child exits, even on a crash
    run_id, result, last_beat = None, None, 0.0
    try:
        while result is None:
            interrupts.check()  # a requested stop takes effect here, never inside a storage write
            if heartbeat is not None and time.time() - last_beat >= every_s:
                heartbeat()
                last_beat = time.time()
            try:
                if not receiver.poll(0.5):
                    continue
                kind, payload = receiver.recv()
            except (EOFError, OSError):
                break
            if kind == "run":
                run_id = payload
                if on_run is not None:
                    on_run(run_id)
            else:
                result = (kind, payload)
    except BaseException:  # Ctrl-C / SIGTERM of the sweep: do not leave the trial training alone
        stop_process(proc)
        raise
    proc.join()
    wall = time.time() - job.launched_at
    if result is None:
        reason, message = reason_of_exit(proc.exitcode, _oom_kills_since(oom_kills_before))
        return TrialOutcome(STATE[reason], reason=reason, run_id=run_id, wall_s=wall, fail_reason=message)
    kind, payload = result
    return TrialOutcome(payload.pop("state"), run_id=payload.pop("run_id") or run_id, wall_s=wall, **payload)


def stop_process(proc, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the trial does not exit within grace_s."""
    proc.terminate()
    proc.join(grace_s)
    if proc.is_alive():
        proc.kill()
        proc.join()


def _oom_kills_since(before: int | None) -> int:
    after = oom_kill_count()
    return after - before if before is not None and after is not None else 0


# --- inside the trial process ---------------------------------------------------------------
def child_main(job: TrialJob, conn) -> None:
    """Compose the trial's config, train with the pruning callback, send the outcome back."""
    os.chdir(job.cwd)  # the fork server's cwd/env are from when it started, not from now
    if job.quiet:
        _silence(job.log_path)
    from src.trial_callback import TrialCallback

    callback = TrialCallback(job, conn)
    _stop_with_driver(job.driver_pid, callback)
    try:
        from src.config import compose_config
        from src.train import train

        cfg = compose_config(job.overrides)
        metrics = train(cfg, callbacks=[callback], parent_run_id=job.parent_run_id, extra_tags=job.tags)
        reason = "pruned" if callback.pruned_at_step is not None else "complete"
        conn.send(("done", {"state": reason.upper(), "reason": reason, "metrics": metrics, "run_id": callback.run_id,
                            "pruned_at_step": callback.pruned_at_step, "startup_s": callback.startup_s,
                            "setup_s": callback.setup_s}))
    except BaseException as err:  # noqa: BLE001 - every failure must reach the parent
        reason = reason_of_exception(err)
        conn.send(("fail", {"state": STATE[reason], "reason": reason, "run_id": callback.run_id or _last_run_id(),
                            "fail_reason": _reason(err), "startup_s": callback.startup_s,
                            "traceback": "".join(traceback.format_exc().splitlines(True)[-25:])}))
    finally:
        conn.close()


def _stop_with_driver(driver_pid: int, callback) -> None:
    """If the sweep driver dies (kill -9, pre-emption) nobody would read this trial's result:
    close the MLflow run as KILLED and exit instead of training on as an orphan. The driver's
    Optuna trial goes stale and is re-queued by the next worker (heartbeats)."""

    def watch():
        from mlflow.tracking import MlflowClient

        from src.sweep_tracking import close_stale_run, process_alive

        while process_alive(driver_pid):
            time.sleep(2.0)
        try:  # best effort: the worker that fails the stale trial closes the run too
            close_stale_run(MlflowClient(), callback.run_id or _last_run_id())
        finally:
            os._exit(1)

    if driver_pid:
        threading.Thread(target=watch, name="driver-watchdog", daemon=True).start()


def _reason(err: BaseException) -> str:
    problems = getattr(err, "problems", None)
    if problems:
        return f"{type(err).__name__}: " + "; ".join(problems)
    return f"{type(err).__name__}: {str(err)[:500]}"


def _last_run_id() -> str | None:
    import mlflow

    run = mlflow.last_active_run()
    return run.info.run_id if run else None


def _silence(log_path: str | None) -> None:
    """CI mode: the trial's stdout/stderr (Lightning, transformers, warnings) go to a log file."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "transformers", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if log_path:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
