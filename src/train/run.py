"""One training run: validate -> build -> fit -> test -> measure -> log. `train(cfg)` is a plain
function: the CLI (src/train/__main__.py), the sweep's trial processes and tests all call it."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError
from src.train import distributed, measure, model_checks, models, tokenized, tracking, validate
from src.train.adapters import apply_adapter, count_parameters
from src.train.batch_rows import batch_sequences
from src.train.checkpoint_io import StreamingCheckpointIO
from src.train.divergence import DivergenceGuard
from src.train.estimate import estimate
from src.train.evals import build_evaluations
from src.train.fault_spec import parse_fault
from src.train.faults import FaultInjector
from src.train.final_validation import ValidateAtMaxSteps
from src.train.summary import format_summary
from src.train.tasks import TASKS


@dataclass
class Inputs:
    """Everything checked and loaded before the model is built."""

    model_path: str
    tokenizer: object
    tokenized: object
    labels: list[str]


def prepare_inputs(cfg: DictConfig) -> Inputs:
    """Validate config, model source and data; raise one ConfigError listing every problem."""
    problems = validate.config_problems(cfg)
    validate.raise_if(validate.unset_problems(cfg))  # then no model or data can be resolved
    model_path = tokenizer = labels = None
    try:
        model_path = models.resolve_source(cfg.model)
        problems += model_checks.model_problems(cfg, models.read_hf_config(model_path))
        tokenizer = models.load_tokenizer(models.resolve_tokenizer_path(cfg.model, model_path))
    except ConfigError as err:
        problems += err.problems
    task = TASKS[cfg.task.name]
    try:
        splits, labels = task.load_splits(cfg, cfg.seed)
    except ConfigError as err:
        problems += err.problems
    validate.raise_if(list(dict.fromkeys(problems)))  # a missing file: config and loader say it
    encoded = tokenized.tokenize_cached(
        splits, tokenizer, cfg.data.max_length, cfg.paths.cache_dir, tokenize=task.tokenize
    )
    return Inputs(model_path, tokenizer, encoded, labels)


def build_datamodule(cfg: DictConfig, inputs: Inputs) -> tokenized.TokenizedData:
    collate = TASKS[cfg.task.name].collator(cfg, inputs.tokenizer)
    return tokenized.TokenizedData(
        inputs.tokenized,
        collate,
        cfg.data.batch_size,
        cfg.data.eval_batch_size,
        cfg.data.num_workers,
    )


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    # A diverged run stops within one logging interval instead of training on NaN.
    callbacks: list[pl.Callback] = [
        DivergenceGuard(every_n_steps=cfg.trainer.log_every_n_steps),
        ValidateAtMaxSteps(),  # a run max_steps ends between two validations: validated at its end
    ]
    if OmegaConf.select(cfg, "fault") is not None:  # +fault=... drills (src/train/faults.py)
        callbacks.append(FaultInjector(parse_fault(cfg.fault)))
    if cfg.early_stopping.enabled:
        # strict=False: a run that ends before its first validation has nothing to compare yet;
        # the monitor's name itself is validated up front.
        callbacks.append(
            EarlyStopping(
                monitor=cfg.early_stopping.monitor,
                mode=cfg.early_stopping.mode,
                patience=cfg.early_stopping.patience,
                strict=False,
            )
        )
    if cfg.checkpoint.enabled:
        callbacks.append(
            ModelCheckpoint(
                dirpath=cfg.checkpoint.dir,
                save_last=True,
                save_top_k=0,
                every_n_train_steps=cfg.checkpoint.every_n_train_steps,
            )
        )
    return callbacks


def build_training(cfg: DictConfig, inputs: Inputs):
    """The adapted model, its Lightning module and data, and the evaluations around fit (their
    before-fit measurements taken)."""
    model = apply_adapter(
        models.load_model(
            cfg, inputs.model_path, len(inputs.labels), inputs.tokenizer.pad_token_id
        ),
        cfg,
    )
    task = TASKS[cfg.task.name]
    module = task.module(cfg, model, inputs.tokenizer, inputs.labels)
    datamodule = build_datamodule(cfg, inputs)
    evaluations = build_evaluations(
        cfg, inputs.tokenizer, lambda m: task.module(cfg, m, inputs.tokenizer, inputs.labels)
    )
    for evaluation in evaluations:
        evaluation.before_fit(module)
    return model, module, datamodule, evaluations


def train(
    cfg: DictConfig,
    callbacks: list[pl.Callback] | None = None,
    parent_run_id: str | None = None,
    extra_tags: dict | None = None,
    estimated: dict | None = None,
) -> dict[str, float]:
    """Fine-tune once as cfg says; return the measured metrics (also logged to MLflow).
    estimated: this configuration's Estimate.metrics() made already (a sweep's driver judges
    every trial against its budget), used when made for the same longest row."""
    inputs = prepare_inputs(cfg)
    expected = estimate_run(cfg, inputs, estimated)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    device = models.device_of(cfg)
    memory = measure.PeakMemory(device)
    # The MLflow run is opened before the baseline: its store's first use (SQLAlchemy engine,
    # imports, the run's params and config) held ~55 MB when it opened after it, counted as
    # training memory (tiny BERT: 179 MB measured against 121 without MLflow).
    with tracking.mlflow_run(cfg, device, parent_run_id, extra_tags) as run:
        memory.baseline()
        model, module, datamodule, evaluations = build_training(cfg, inputs)
        timer, tensor_peak = measure.StepTimer(), measure.TensorPeak()
        trainer = pl.Trainer(
            **{**cfg.trainer, "strategy": distributed.trainer_strategy(cfg)},
            precision=cfg.precision.name,
            logger=_logger(cfg, run),
            callbacks=[timer, tensor_peak, *build_callbacks(cfg), *(callbacks or [])],
            # Without this Lightning adds its own ModelCheckpoint, which saved weights and
            # optimizer state at every validation of every sweep trial (~2 s each, full MiniLM).
            enable_checkpointing=bool(cfg.checkpoint.enabled),
            default_root_dir=cfg.paths.output_dir,
            plugins=[*_cluster_plugins(), StreamingCheckpointIO()],
        )
        memory.start()
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        metrics = {
            "time/train_s": time.perf_counter() - start,
            "mem/peak_mb": memory.peak_mb(),
            "mem/tensor_peak_mb": tensor_peak.peak_mb,
            **expected,
            **measurements(model, trainer, timer),
            # How many rows val/acc and test/acc were measured on: their uncertainty.
            "data/val_rows": float(len(inputs.tokenized["validation"])),
            "data/test_rows": float(len(inputs.tokenized["test"])),
        }
        # Data-parallel: each rank's memory and time, and the run's totals (collective).
        metrics.update(distributed.gather_per_rank(trainer, metrics))
        metrics.update(_logged(trainer, ("train/loss", "val/loss", "val/acc", "val/perplexity")))
        metrics.update(_logged_test(trainer, module, datamodule))
        for evaluation in evaluations if trainer.is_global_zero else ():
            metrics.update(evaluation.after_fit(module, datamodule))
        if run is not None:
            tracking.log_final_metrics(metrics, step=trainer.global_step)
    if cfg.summary and trainer.is_global_zero:
        print(format_summary(cfg.run_name, metrics, run.info.run_id if run else None))
    return metrics


# Variables an MPI launcher (mpirun/mpiexec of Open MPI, MPICH, Intel MPI, MVAPICH) sets.
MPI_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")


def _cluster_plugins() -> list:
    """Ranks started from outside (a sweep trial's, src/train/distributed.py) take their rank
    from the environment, not from SLURM's task ids. Inside a SLURM job, Lightning would save an
    `hpc_ckpt` into the output folder on SIGUSR1 and the next run there would restore it: in a
    sweep that is another trial's weights. The sweep re-queues interrupted trials itself, so
    Lightning's auto-requeue stays off. Elsewhere, outside torchelastic, LSF or an MPI launch,
    the plain environment Lightning would end with is named at once: its last probe imports
    mpi4py where installed, which initializes MPI just to read a world size of 1 (0.8 s of every
    GPU trial's start on an H200 machine with mpi4py)."""
    from lightning.pytorch.plugins.environments import (
        LightningEnvironment,
        LSFEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    if distributed.launched_as_rank():
        return [LightningEnvironment()]
    if SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=False)]
    launched = any(var in os.environ for var in MPI_LAUNCHER_VARS)
    if launched or TorchElasticEnvironment.detect() or LSFEnvironment.detect():
        return []  # Lightning's own choice
    return [LightningEnvironment()]


def estimate_run(cfg: DictConfig, inputs: Inputs, made: dict | None = None) -> dict[str, float]:
    """The pre-flight estimate for this run's data (made: one made before for this config)."""
    sequence, step_sequence = batch_sequences(cfg, inputs)
    if (
        made
        and cfg.data.batch_size != "auto"
        and made.get("estimate/sequence") == sequence
        and made.get("estimate/step_sequence") == step_sequence
    ):
        return dict(made)  # same config, same sequences: estimating again gives the same sum
    try:
        est = estimate(
            cfg, sequence=sequence, model_path=inputs.model_path, step_sequence=step_sequence
        )
    except ConfigError:
        raise  # batch_size=auto found nothing that fits: the run cannot be set up
    except Exception as err:  # noqa: BLE001 - advisory: an estimator gap never stops a run
        if cfg.data.batch_size == "auto":
            raise ConfigError([f"data.batch_size=auto: the estimate failed: {err}"]) from err
        warnings.warn(
            f"no pre-flight estimate for this run: {type(err).__name__}: {err}", stacklevel=2
        )
        nan = float("nan")
        keys = ("peak_mb", "tensor_peak_mb", "heap_mb", "step_ms", "sequence", "step_sequence")
        return {f"estimate/{key}": nan for key in keys}
    if cfg.data.batch_size == "auto":  # the estimate chose the micro-batch: train with it
        effective = cfg.data.effective_batch_size
        cfg.data.batch_size = est.batch_size
        cfg.trainer.accumulate_grad_batches = effective // est.batch_size
        print(
            f"data.batch_size=auto: micro-batch {est.batch_size} x "
            f"{cfg.trainer.accumulate_grad_batches} accumulated = {effective} per optimizer step "
            f"(estimated peak {est.peak_mb:,.0f} MB)",
            flush=True,
        )
    return est.metrics()


def _logger(cfg: DictConfig, run) -> MLFlowLogger | bool:
    """Lightning logs the curves (train/loss, val/*) into the run we opened. Asynchronously:
    a tracking server that is down (restarting, a network cut) must not stop training. MLflow's
    queue retries each batch with its HTTP backoff (~4 min in all by default:
    MLFLOW_HTTP_REQUEST_MAX_RETRIES) and the run's end waits until everything queued arrived."""
    if run is None:
        return False
    return MLFlowLogger(
        tracking_uri=tracking.tracking_uri(cfg.logger.tracking_uri),
        run_id=run.info.run_id,
        synchronous=False,
    )


def measurements(model, trainer: pl.Trainer, timer: measure.StepTimer) -> dict[str, float]:
    trainable, total = count_parameters(model)
    return {
        "mem/weights_mb": measure.weights_mb(model),
        "mem/weights_nonembed_mb": measure.weights_mb(model, skip_embeddings=True),
        "mem/optimizer_mb": measure.optimizer_mb(trainer.optimizers[0])
        if trainer.optimizers
        else 0.0,
        "time/step_ms": timer.step_ms(),
        "time/first_step_s": timer.first_step_s(),
        "throughput/tokens_per_s": timer.tokens_per_s(),
        "params/trainable": float(trainable),
        "params/total": float(total),
        "params/trainable_pct": 100.0 * trainable / total,
        "train/steps": float(trainer.global_step),
    }


def _logged(trainer: pl.Trainer, keys) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k in keys}


def _logged_test(trainer: pl.Trainer, module, datamodule) -> dict[str, float]:
    if trainer.limit_test_batches == 0:  # a pruned sweep trial: not a candidate, not tested
        return {}
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in results[0].items()}
