"""Lightning callback inside a trial process: reports the monitored metric to Optuna at every
validation check and stops training when the pruner says so; also times the fixed cost.

Why not optuna_integration.PyTorchLightningPruningCallback: it reports with step=epoch, so with
several validation checks per epoch the later reports of an epoch are dropped by Optuna, and it
raises TrialPruned through Lightning, which aborts train() before it measures and logs the run.
Stopping via trainer.should_stop keeps the run's metrics complete.

In a data-parallel trial every rank has this callback: rank 0 reports and asks the pruner, and
its decision is broadcast, so every rank stops after the same step (a rank that trained on alone
would wait forever in its next gradient all-reduce). Only rank 0 talks to the driver (conn).
"""

from __future__ import annotations

import time

import lightning.pytorch as pl


class TrialCallback(pl.Callback):
    def __init__(self, job, conn, on_setup_done=None):
        self.job, self.conn = job, conn
        self.on_setup_done = on_setup_done  # called once, at the first batch
        self.trial = None
        self.run_id: str | None = None
        self.startup_s: float | None = None
        self.setup_s: float | None = None
        self.pruned_at_step: int | None = None
        self.pruned_by: str | None = None  # the rule that stopped it (behind_best, median, ...)
        self.elapsed: dict[str, float] = {}
        self.fit_started = time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:
        self.run_id = getattr(trainer.logger, "run_id", None)
        if self.run_id and self.conn is not None:  # the parent can close it if we die later
            self.conn.send(("run", self.run_id))
        if self.job.prune and trainer.is_global_zero:
            self.trial = _load_trial(self.job)
        self.fit_started = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.setup_s is None:  # everything before the first step's compute: the fixed cost
            self.setup_s = time.time() - self.job.launched_at
            if self.on_setup_done is not None:
                self.on_setup_done()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.startup_s is None:
            self.startup_s = time.time() - self.job.launched_at

    def on_validation_end(self, trainer, pl_module) -> None:
        # The same on every rank, so all or none of them reach the broadcast below.
        if trainer.sanity_checking or not self.job.prune or self.pruned_at_step is not None:
            return
        prune = self._report_and_ask(trainer) if trainer.is_global_zero else False
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            self.pruned_at_step = trainer.global_step
            trainer.should_stop = True
            # No test pass after fit either: a pruned configuration is not a candidate, and its
            # test accuracy would cost as much as a validation check over the test split.
            trainer.limit_test_batches = 0

    def _report_and_ask(self, trainer) -> bool:
        value = trainer.callback_metrics.get(self.job.monitor)
        if value is None or self.trial is None:
            return False
        self.trial.report(float(value), step=trainer.global_step)
        # Seconds of training up to this check: lets bench/sweep.py price a prune at this step.
        self.elapsed[str(trainer.global_step)] = time.perf_counter() - self.fit_started
        self.trial.set_user_attr("elapsed_at_step", self.elapsed)
        if not self.trial.should_prune():
            return False
        from src.sweep.samplers import pruned_by

        self.pruned_by = pruned_by(self.trial.study.pruner, self.job.pruner)
        return True


def _load_trial(job):
    """The parent's trial, rebuilt here so report/should_prune go through the shared storage."""
    import optuna

    from src.sweep.samplers import build_pruner
    from src.sweep.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=job.study_name,
        storage=open_storage(job.storage),  # reconnects if PostgreSQL restarts mid-trial
        pruner=build_pruner(job.pruner),
        sampler=optuna.samplers.RandomSampler(),
    )  # never samples here
    return optuna.trial.Trial(study, job.trial_id)
