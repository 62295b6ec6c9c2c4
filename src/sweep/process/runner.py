"""The parent side of a trial: one child process per trial, forked from a server that has
already imported the stack; the child's side is src/sweep/process/child.py.

Why a child: a crash, OOM or leaked memory stays inside one trial, and peak memory is honest per
trial. Why a fork server: importing torch+transformers+peft+lightning+mlflow costs ~10 s here;
forking a process that already did it makes the per-trial fixed cost a fraction of a second.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from multiprocessing import forkserver

from src.sweep import interrupts
from src.sweep.outcomes import STATE, oom_kill_count, reason_of_exit
from src.sweep.process.child import child_main
from src.sweep.process.job import TrialJob, TrialOutcome

# Imported by the fork server once (see trial_context); the trial process inherits them.
PRELOAD = ["src.sweep.process.preload"]


_CONTEXT = None


def trial_context():
    """The forkserver context with our preload; the server starts on the first trial unless
    start_fork_server() started it earlier."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def start_fork_server() -> None:
    """Start the fork server now, in the background: its imports (~8 s on 2 cores) then run on
    another core while the driver checks the sweep and sets up (preflight, MLflow parent run,
    budget estimates) instead of delaying trial #0."""
    trial_context()
    forkserver.ensure_running()


@contextlib.contextmanager
def fork_server_warming(start: bool):
    """start_fork_server() (if start) during the command line's checks; if they fail (bad
    input), the server is killed at once. Left alone it would run its imports to the end before
    noticing its parent had gone: seconds of a core, with the command's stdout and stderr held
    open, so that whatever reads them through a pipe (`| tee`, a CI log, subprocess.run) waits
    for it after the error was printed."""
    if start:
        start_fork_server()
    try:
        yield
    except BaseException:
        stop_fork_server()
        raise


def stop_fork_server() -> None:
    # multiprocessing has no public way to stop it; _stop() closes its pipe and reaps it.
    server = forkserver._forkserver
    if getattr(server, "_forkserver_pid", None) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server._forkserver_pid, signal.SIGKILL)
        server._stop()


def run_trial(
    job: TrialJob, heartbeat=None, on_run=None, on_start=None, every_s: float = 10.0, idle=None
) -> TrialOutcome:
    """Run one trial in its own process and map how it ended to an outcome; call heartbeat()
    every few seconds while waiting (Optuna marks trials without heartbeats stale),
    on_run(run_id) as soon as the trial's MLflow run exists, and idle() whenever half a second
    passed without a message (a unit of work of ~1 s at most: messages wait for it)."""
    ctx = trial_context()
    receiver, sender = ctx.Pipe(duplex=False)
    job.launched_at, job.driver_pid = time.time(), os.getpid()
    oom_kills_before = oom_kill_count()
    proc = ctx.Process(
        target=child_main, args=(job, sender), name=f"trial-{job.number}", daemon=False
    )
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
                    if idle is not None:
                        idle()
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
        return TrialOutcome(
            STATE[reason],
            reason=reason,
            run_id=run_id,
            wall_s=wall,
            fail_reason=message,
            launched_at=job.launched_at,
        )
    kind, payload = result
    return TrialOutcome(
        payload.pop("state"),
        run_id=payload.pop("run_id") or run_id,
        wall_s=wall,
        launched_at=job.launched_at,
        **payload,
    )


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
