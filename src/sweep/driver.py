"""One driver's loop (a sweep runs one, or one per worker): until the study holds n_trials,
ask (under the slot lock for a local SQLite study) -> run the trial in its own process -> tell,
one progress line per trial, and stop on a bug beyond max_failures (src/sweep/outcomes.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import optuna

from src.sweep import interrupts
from src.sweep.budget import Budget
from src.sweep.outcomes import BUGS
from src.sweep.progress import Progress
from src.sweep.storage import counted, slot_lock
from src.sweep.trial import SweepContext, one_trial


class SweepAborted(RuntimeError):
    """An unexpected trial error (a bug) beyond max_failures: the sweep stops after recording it."""


@dataclass
class Plan:
    """How much to run: total trials wanted, wall deadline, per-trial training cap, and the
    budget a configuration's estimate must fit to be launched."""

    n_trials: int
    deadline: float | None
    trial_cap: float | None
    heartbeat_s: int | None
    budget: Budget = field(default_factory=Budget)


class IdleWork:
    """Work a driver does while its trial process starts and trains rather than before: one unit
    at a time while it waits for the trial (step), the rest before it asks for the next (finish).
    """

    def __init__(self, units: Iterator | None = None):
        self._units = units

    def step(self) -> None:
        if self._units is not None and next(self._units, self) is self:
            self._units = None

    def finish(self) -> None:
        while self._units is not None:
            self.step()


def drive(ctx: SweepContext, plan: Plan, bar: bool = True, idle: IdleWork | None = None) -> None:
    """This process's ask -> run -> tell loop (one per worker; workers show no bar)."""
    progress, failures = Progress(ctx.spec, ctx.study, plan.n_trials, bar=bar), 0
    idle = idle or IdleWork()
    try:
        while True:
            interrupts.check()
            trial = next_trial(ctx, plan)
            if trial is None:
                return
            max_time = trial_budget(plan.deadline, plan.trial_cap)
            frozen = one_trial(ctx, trial, max_time, plan.budget, idle=idle.step)
            idle.finish()  # what the trial's time did not cover, before the next configuration
            progress.line(ctx.study, frozen)
            if frozen.user_attrs.get("reason") in BUGS:
                failures += 1
                if failures > ctx.spec.max_failures:
                    raise SweepAborted(abort_message(ctx, frozen, failures))
    finally:
        progress.close()


def next_trial(ctx: SweepContext, plan: Plan):
    """Ask for the next trial, or None when the sweep is done. Counting and asking happen under
    one lock, so local workers on one SQLite study never start more trials than wanted."""
    study, name = ctx.study, ctx.study.study_name
    with slot_lock(ctx.storage, ctx.study.study_name):  # studies do not wait for each other
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed and re-queued
        if counted(study) >= plan.n_trials:
            return None
        if plan.deadline is not None and time.time() > plan.deadline:
            print(f"[sweep {name}] timeout reached; stopping", flush=True)
            return None
        if getattr(study.sampler, "is_exhausted", lambda _: False)(study):
            print(f"[sweep {name}] grid exhausted; stopping", flush=True)
            return None
        return study.ask()


def abort_message(ctx: SweepContext, trial, failures: int) -> str:
    tail = (trial.user_attrs.get("traceback") or "").rstrip()
    return (
        f"trial #{trial.number} failed with an unexpected error ({failures} so far, max_failures="
        f"{ctx.spec.max_failures}): {trial.user_attrs.get('fail_reason')}\n"
        + (
            f"--- trial traceback (tail) ---\n{tail}\n------------------------------\n"
            if tail
            else ""
        )
        + "The sweep stopped. Fix the cause and resume with the same command, "
        "or tolerate such failures with max_failures=N."
    )


def max_time_seconds(max_time) -> float | None:
    """Lightning's max_time as seconds: 'DD:HH:MM:SS' or a {days, hours, minutes, seconds} map."""
    if max_time is None:
        return None
    if isinstance(max_time, str):
        days, hours, minutes, seconds = (int(x) for x in max_time.split(":"))
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return sum(
        float(max_time.get(k, 0)) * f
        for k, f in (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))
    )


def trial_budget(deadline: float | None, trial_cap: float | None) -> float | None:
    """The sweep timeout is a wall budget: a trial may train only until it runs out, and never
    longer than the file's own per-trial trainer.max_time."""
    left = None if deadline is None else max(1.0, deadline - time.time())
    caps = [c for c in (left, trial_cap) if c is not None]
    return min(caps) if caps else None
