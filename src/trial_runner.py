"""One child process per trial, forked from a server that has already imported the stack.

Why a child: a crash, OOM or leaked memory stays inside one trial, and peak memory is honest per
trial. Why a fork server: importing torch+transformers+peft+lightning+mlflow costs ~10 s here;
forking a process that already did it makes the per-trial fixed cost a fraction of a second.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from dataclasses import dataclass, field

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


@dataclass
class TrialOutcome:
    """What the parent learns about a finished trial process."""

    state: str  # COMPLETE | PRUNED | FAIL
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


def run_trial(job: TrialJob, heartbeat=None, every_s: float = 10.0) -> TrialOutcome:
    """Run one trial in its own process and map how it ended to an outcome; call heartbeat()
    every few seconds while waiting (Optuna marks trials without heartbeats stale)."""
    ctx = trial_context()
    receiver, sender = ctx.Pipe(duplex=False)
    job.launched_at = time.time()
    proc = ctx.Process(target=child_main, args=(job, sender), name=f"trial-{job.number}", daemon=False)
    proc.start()
    sender.close()  # our copy: the pipe then reports EOF when the child exits, even on a crash
    run_id, result = None, None
    try:
        while result is None:
            if heartbeat is not None:
                heartbeat()
            try:
                if not receiver.poll(every_s):
                    continue
                kind, payload = receiver.recv()
            except (EOFError, OSError):
                break
            if kind == "run":
                run_id = payload
            else:
                result = (kind, payload)
    except BaseException:  # Ctrl-C / SIGTERM of the sweep: do not leave the trial training alone
        proc.terminate()
        proc.join(10)
        raise
    proc.join()
    wall = time.time() - job.launched_at
    if result is None:
        return TrialOutcome("FAIL", run_id=run_id, wall_s=wall,
                            fail_reason=f"trial process died without a result (exit code {proc.exitcode}; "
                                        "negative = killed by that signal, e.g. -9 out of memory)")
    kind, payload = result
    outcome = TrialOutcome(payload.pop("state"), run_id=payload.pop("run_id") or run_id, wall_s=wall, **payload)
    return outcome


# --- inside the trial process ---------------------------------------------------------------
def child_main(job: TrialJob, conn) -> None:
    """Compose the trial's config, train with the pruning callback, send the outcome back."""
    os.chdir(job.cwd)  # the fork server's cwd/env are from when it started, not from now
    if job.quiet:
        _silence(job.log_path)
    from src.trial_callback import TrialCallback

    callback = TrialCallback(job, conn)
    try:
        from src.config import compose_config
        from src.train import train

        cfg = compose_config(job.overrides)
        metrics = train(cfg, callbacks=[callback], parent_run_id=job.parent_run_id, extra_tags=job.tags)
        state = "PRUNED" if callback.pruned_at_step is not None else "COMPLETE"
        conn.send(("done", {"state": state, "metrics": metrics, "run_id": callback.run_id,
                            "pruned_at_step": callback.pruned_at_step, "startup_s": callback.startup_s,
                            "setup_s": callback.setup_s}))
    except BaseException as err:  # noqa: BLE001 - every failure must reach the parent
        conn.send(("fail", {"state": "FAIL", "run_id": callback.run_id or _last_run_id(),
                            "fail_reason": _reason(err), "startup_s": callback.startup_s,
                            "traceback": "".join(traceback.format_exc().splitlines(True)[-25:])}))
    finally:
        conn.close()


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
