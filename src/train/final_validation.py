"""Validate the weights a run ends with when trainer.max_steps ends it between two scheduled
validations.

Lightning validates on its schedule (val_check_interval, check_val_every_n_epoch) and when a
callback stops the run (early stopping, trainer.max_time), but not when max_steps is reached
between two checks: a short run (the smoke sweep `trainer.max_steps=5` on 3,000 rows checked
every quarter epoch) ended with no val/acc at all, and each sweep trial failed for a missing
objective. Reported metrics then also describe the weights the run returns.
"""

from __future__ import annotations

import lightning.pytorch as pl


class ValidateAtMaxSteps(pl.Callback):
    """At the batch whose optimizer step reaches max_steps, ask Lightning to stop: a requested
    stop makes it validate after that batch (its stop check comes before the schedule's, so a
    scheduled check on the same batch is the same single validation)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:  # global_step counts this batch's step
            trainer.should_stop = True
