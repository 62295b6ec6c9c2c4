"""The `+fault=KIND_at_step_N` value: its form, its check and its parse, apart from the
injector (src/train/faults.py) so that checking a config imports no Lightning (a sweep's driver
checks every trial's config and never trains)."""

from __future__ import annotations

import re
from dataclasses import dataclass

PATTERN = re.compile(
    r"^(?P<kind>oom|nan|sigkill|error)_at_step_(?P<step>[1-9]\d*)(?:_if_batch_gt_(?P<batch>\d+))?$"
)
FORMS = "KIND_at_step_N with KIND one of oom, nan, sigkill, error (oom may end in _if_batch_gt_B)"


@dataclass(frozen=True)
class Fault:
    kind: str
    step: int
    batch_gt: int | None = None


def fault_problems(text) -> list[str]:
    """Problems with a `fault` config value (None = no fault)."""
    if text is None:
        return []
    match = PATTERN.match(str(text))
    if not match:
        return [f"fault={text!r} is invalid: must be {FORMS}, e.g. oom_at_step_3"]
    if match["batch"] is not None and match["kind"] != "oom":
        return [f"fault={text!r} is invalid: only oom takes _if_batch_gt_B"]
    return []


def parse_fault(text: str) -> Fault:
    match = PATTERN.match(str(text))
    return Fault(match["kind"], int(match["step"]), int(match["batch"]) if match["batch"] else None)
