"""Why a trial ended, as one short reason, and what each reason means for Optuna and MLflow.

    reason        Optuna     MLflow      counts toward max_failures   sampler learns
    (none)        COMPLETE   FINISHED    no                           the values
    pruned        PRUNED     KILLED      no                           the curve so far
    oom           PRUNED     FAILED      no                           infeasible (constraint)
    over_budget   PRUNED     KILLED      no                           infeasible (constraint);
                                                                      never launched
    nan           PRUNED     FAILED      no                           a bad point
    killed        FAIL       KILLED      no                           nothing
    interrupted   FAIL       KILLED      no (re-queued)               nothing
    stale         FAIL       KILLED      no (re-queued)               nothing
    error         FAIL       FAILED      yes                          nothing
    crashed       FAIL       FAILED      yes                          nothing

oom and nan are PRUNED, not FAIL, on purpose: Optuna's samplers ignore FAIL trials, so a FAIL
would let TPE propose the same too-large batch or too-high learning rate again.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

STATE = {
    "pruned": "PRUNED",
    "oom": "PRUNED",
    "over_budget": "PRUNED",
    "nan": "PRUNED",
    "killed": "FAIL",
    "interrupted": "FAIL",
    "stale": "FAIL",
    "error": "FAIL",
    "crashed": "FAIL",
}
MLFLOW_STATUS = {
    "complete": "FINISHED",
    "pruned": "KILLED",
    "oom": "FAILED",
    "over_budget": "KILLED",
    "nan": "FAILED",
    "killed": "KILLED",
    "interrupted": "KILLED",
    "stale": "KILLED",
    "error": "FAILED",
    "crashed": "FAILED",
}
BUGS = {"error", "crashed"}  # reasons that stop the sweep unless max_failures allows more
_OOM_TEXT = re.compile(
    r"out of memory|can't allocate memory|cannot allocate memory|CUBLAS_STATUS_ALLOC_FAILED",
    re.IGNORECASE,
)


def describe_error(err: BaseException) -> str:
    """A failed trial's fail_reason: the error's type and text (a ConfigError's every problem)."""
    problems = getattr(err, "problems", None)
    if problems:
        return f"{type(err).__name__}: " + "; ".join(problems)
    return f"{type(err).__name__}: {str(err)[:500]}"


def reason_of_exception(err: BaseException) -> str:
    """oom for every way a framework reports running out of memory, nan for divergence."""
    from src.train.divergence import NonFiniteLossError  # here: it imports lightning

    if isinstance(err, NonFiniteLossError):
        return "nan"
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return "oom"
    if isinstance(err, RuntimeError) and _OOM_TEXT.search(str(err)):
        return "oom"  # the CPU allocator and some CUDA libraries raise a plain RuntimeError
    if isinstance(err, KeyboardInterrupt) or isinstance(err.__context__, KeyboardInterrupt):
        return "interrupted"  # Lightning turns Ctrl-C during fit into SystemExit(1)
    return "error"


def reason_of_exit(exitcode: int | None, oom_kills_during: int) -> tuple[str, str]:
    """A trial process that died without reporting: by a signal (killed; oom when the kernel's
    OOM killer fired meanwhile) or by exiting on its own (crashed)."""
    if exitcode is not None and exitcode < 0:
        name = (
            signal.Signals(-exitcode).name
            if -exitcode in signal.valid_signals()
            else str(-exitcode)
        )
        if -exitcode == signal.SIGKILL and oom_kills_during > 0:
            return "oom", f"trial process killed by the kernel's OOM killer ({name})"
        return "killed", f"trial process killed by {name}"
    return "crashed", f"trial process exited with code {exitcode} without reporting a result"


def oom_kill_count() -> int | None:
    """The kernel's OOM-kill counter for our memory cgroup (v2 memory.events or v1
    memory.oom_control), None where it cannot be read."""
    for path in _cgroup_files():
        try:
            for line in Path(path).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def _cgroup_files() -> list[str]:
    files = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                files.append(f"/sys/fs/cgroup{path}/memory.events")
            elif "memory" in controllers.split(","):
                files += [
                    f"/sys/fs/cgroup/memory{path}/memory.oom_control",
                    "/sys/fs/cgroup/memory/memory.oom_control",
                ]
    except (OSError, ValueError):
        pass
    return [f for f in files if os.path.exists(f)]
