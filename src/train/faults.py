"""Fault injection for tests and drills: `+fault=KIND_at_step_N` makes a run fail the way real
runs fail, through the real mechanism, so the handling paths are exercised without mocks.

    oom_at_step_3               a real allocation failure of the run's device allocator
    oom_at_step_3_if_batch_gt_8   ... only while the micro-batch is larger than 8 (oom.retry drills)
    nan_at_step_2               a trainable weight set to NaN: the next loss really is NaN
    sigkill_at_step_2           the process sends itself SIGKILL (as the OOM killer or `kill -9`)
    error_at_step_2             an exception nobody expects (a bug)

N counts optimizer steps from 1, like the progress bar.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

import lightning.pytorch as pl
import torch

from src.train.fault_spec import Fault


class FaultInjector(pl.Callback):
    """Fires the fault at the start of optimizer step N (1-based)."""

    def __init__(self, fault: Fault):
        self.fault = fault

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step + 1 != self.fault.step:
            return
        if self.fault.batch_gt is not None and _batch_size(batch) <= self.fault.batch_gt:
            return
        getattr(self, f"_{self.fault.kind}")(pl_module)

    def _oom(self, pl_module) -> None:
        # More bytes than any machine has: the allocator itself raises (CUDA: OutOfMemoryError,
        # CPU: RuntimeError "can't allocate memory"), exactly as a too-large batch would.
        torch.empty(1 << 60, dtype=torch.uint8, device=pl_module.device)

    def _nan(self, pl_module) -> None:
        with torch.no_grad():
            next(p for p in pl_module.parameters() if p.requires_grad).fill_(float("nan"))

    def _sigkill(self, pl_module) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def _error(self, pl_module) -> None:
        raise RuntimeError(
            f"injected bug at step {self.fault.step} (+fault=error_at_step_{self.fault.step})"
        )


def _batch_size(batch) -> int:
    first = next(iter(batch.values())) if isinstance(batch, Mapping) else batch[0]
    return int(first.shape[0])
