"""Preflight: what a sweep needs, checked before any trial runs, every problem in one error.

load_spec checks the sweep file's shape and its config paths. This goes on to what would
otherwise fail trial after trial (or stop the sweep half-way), one module per kind of check:
the Optuna storage URL (storage), a stored study the new file would resume (study), every method
choice's composed config with the end points of every sampled value (values), and the model
source and the data (sources).
"""

from __future__ import annotations

from src.sweep.configs import method_choices
from src.sweep.preflight.findings import unique
from src.sweep.preflight.sources import source_problems
from src.sweep.preflight.storage import display_url, storage_problems
from src.sweep.preflight.study import study_problems
from src.sweep.preflight.values import value_problems
from src.sweep.spec import SweepSpec
from src.train.quiet import quiet_libraries
from src.train.validate import raise_if

__all__ = ["display_url", "preflight", "storage_problems"]


def preflight(
    spec: SweepSpec,
    overrides: list[str],
    study_name: str,
    storage_url: str,
    allow_space_change: bool = False,
) -> None:
    """Raise one ConfigError naming every problem (storage first); return None when all is well."""
    quiet_libraries()  # the checks below import transformers and PEFT, which speak on use
    problems = storage_problems(storage_url)
    if not problems:  # a study can only be read from a usable storage
        problems += study_problems(spec, study_name, storage_url, allow_space_change)
    choices = method_choices(spec.space, [*spec.base, *overrides])  # composed once, cached
    problems += value_problems(spec, choices)
    problems += source_problems(spec, choices)
    raise_if(unique(problems))
