"""Many runs: a sweep searches fine-tuning methods and settings with Optuna, trains each trial in
its own process with src.train's `train()`, prunes, records in MLflow and reports the tradeoffs.
`python -m src.sweep` (or `ftsweep-sweep`) is the CLI; see docs/sweeps.md.

Public names are imported on first use, so `--help` answers at once.
"""

from __future__ import annotations

import importlib
import os

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"  # the embedded default: one machine, one file
STORAGE_ENV = "FTSWEEP_STORAGE"  # a shared storage for every sweep of this shell (a cluster's)

_PUBLIC = {
    "main": "src.sweep.cli",
    "parse_args": "src.sweep.cli",
    "run_sweep": "src.sweep.run",
    "load_spec": "src.sweep.spec",
    "write_report": "src.sweep.report",
    "SweepAborted": "src.sweep.driver",
}
__all__ = ["DEFAULT_STORAGE", "STORAGE_ENV", "default_storage", *sorted(_PUBLIC)]


def default_storage() -> str:
    """The storage a sweep uses when none is given: $FTSWEEP_STORAGE if set, else the SQLite
    file. Read when called (at parse time), so the environment of this invocation counts."""
    return os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'src.sweep' has no attribute {name!r}")
