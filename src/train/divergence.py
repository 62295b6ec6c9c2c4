"""Stop a run whose loss is no longer finite: without this a diverged trial burns its whole
budget producing NaN (Lightning's own check_finite only looks at validation metrics)."""

from __future__ import annotations

import math

import lightning.pytorch as pl


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run diverged."""


class DivergenceGuard(pl.Callback):
    """Checks the training loss every `every_n_steps` optimizer steps (the logging interval: a
    check reads the loss back from the device, so not every step on a GPU)."""

    def __init__(self, every_n_steps: int = 1):
        self.every_n_steps = max(1, int(every_n_steps))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # already counts this batch's optimizer step
        if step % self.every_n_steps != 0 and step != 1:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"train/loss is {value} at step {step}: the run diverged "
                "(a lower optim.lr, gradient clipping or bf16 instead of 16-mixed "
                "usually helps)"
            )
