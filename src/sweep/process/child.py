"""Inside a trial process: train the config the driver composed, with the pruning callback; send
the outcome back to the driver; stop at once if the driver dies."""

from __future__ import annotations

import os
import traceback

from src.sweep.outcomes import STATE, describe_error, reason_of_exception
from src.sweep.process.job import TrialJob
from src.train.quiet import quiet_libraries


def child_main(job: TrialJob, conn) -> None:
    """Train the trial's config with the pruning callback, send the outcome back."""
    profile = _profile_start(job)
    os.chdir(job.cwd)  # the fork server's cwd/env are from when it started, not from now
    quiet_libraries()  # banners and deprecation notices, in the log file or on the console
    if job.log_path:
        _output_to(job.log_path)
    # Imported here, not at the top: the driver imports this module (it names child_main as the
    # process target) and should not pay for lightning.
    from src.sweep.process.callback import TrialCallback

    callback = TrialCallback(job, conn, on_setup_done=profile)
    _stop_with_driver(job.driver_pid, callback)
    try:
        from src.sweep.process.rank import rank_starter
        from src.train.distributed import other_ranks, world_size
        from src.train.run import train

        cfg = job.config
        # trainer.devices > 1: this process is rank 0 of a data-parallel trial.
        with other_ranks(world_size(cfg), rank_starter(job, conn)):
            metrics = train(
                cfg,
                callbacks=[callback],
                parent_run_id=job.parent_run_id,
                extra_tags=job.tags,
                estimated=job.estimate,
            )
        reason = "pruned" if callback.pruned_at_step is not None else "complete"
        conn.send(
            (
                "done",
                {
                    "state": reason.upper(),
                    "reason": reason,
                    "metrics": metrics,
                    "run_id": callback.run_id,
                    "pruned_at_step": callback.pruned_at_step,
                    "pruned_by": callback.pruned_by,
                    "startup_s": callback.startup_s,
                    "setup_s": callback.setup_s,
                },
            )
        )
    except BaseException as err:  # noqa: BLE001 - every failure must reach the parent
        reason = reason_of_exception(err)
        conn.send(
            (
                "fail",
                {
                    "state": STATE[reason],
                    "reason": reason,
                    "run_id": callback.run_id or _last_run_id(),
                    "fail_reason": describe_error(err),
                    "startup_s": callback.startup_s,
                    "traceback": "".join(traceback.format_exc().splitlines(True)[-25:]),
                },
            )
        )
    finally:
        conn.close()


def _profile_start(job: TrialJob):
    """With job.profile_dir, profile this process until its first batch (the trial's fixed
    cost) and return what writes the profile then: `python -m pstats` or snakeviz reads it."""
    if not job.profile_dir:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()

    def write() -> None:
        profiler.disable()
        os.makedirs(job.profile_dir, exist_ok=True)
        profiler.dump_stats(os.path.join(job.profile_dir, f"trial-{job.number}.prof"))

    return write


def _stop_with_driver(driver_pid: int, callback) -> None:
    """If the sweep driver dies (kill -9, pre-emption) nobody would read this trial's result:
    close the MLflow run as KILLED and exit instead of training on as an orphan. The driver's
    Optuna trial goes stale and is re-queued by the next worker (heartbeats)."""
    from src.watchdog import exit_when

    # Imported in the watchdog's thread, off the trial's start.
    def driver_gone() -> bool:
        from src.sweep.tracking import process_alive

        return not process_alive(driver_pid)

    def close_run():  # best effort: the worker that fails the stale trial closes the run too
        from mlflow.tracking import MlflowClient

        from src.sweep.tracking import close_stale_run

        close_stale_run(MlflowClient(), callback.run_id or _last_run_id())

    if driver_pid:
        exit_when(driver_gone, 2.0, "driver-watchdog", close_run)


def _last_run_id() -> str | None:
    import mlflow

    run = mlflow.last_active_run()
    return run.info.run_id if run else None


def _output_to(log_path: str) -> None:
    """The trial's stdout/stderr (Lightning, transformers, tracebacks) go to its log file."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
