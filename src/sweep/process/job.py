"""What the sweep driver hands a trial process, and what it learns back: data that pickles
across the process boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig


@dataclass
class TrialJob:
    """Everything a trial process needs; it pickles to the child."""

    study_name: str
    storage: str
    trial_id: int
    number: int
    config: DictConfig  # composed by the driver, per-trial settings set (it pickles)
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
    estimate: dict | None = None  # the driver's Estimate.metrics() for this config, if made
    # FTSWEEP_PROFILE_START in the driver's environment: the folder each trial writes a cProfile
    # of its start to (process start -> first batch), trial-<number>.prof
    profile_dir: str | None = None


@dataclass
class TrialOutcome:
    """What the parent learns about a finished trial process."""

    state: str  # COMPLETE | PRUNED | FAIL
    reason: str = "complete"  # why it ended: see src/outcomes.py
    metrics: dict = field(default_factory=dict)
    run_id: str | None = None
    pruned_at_step: int | None = None
    pruned_by: str | None = None  # the pruning rule that stopped it
    fail_reason: str | None = None
    traceback: str | None = None
    startup_s: float | None = None  # child start -> end of the first optimizer step
    setup_s: float | None = None  # child start -> start of the first batch (no training compute)
    wall_s: float = 0.0
    launched_at: float | None = None  # epoch seconds the trial process was started
