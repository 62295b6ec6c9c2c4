"""estimate(cfg): the memory sum and the step time of one configuration."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch._subclasses.fake_tensor import FakeTensorMode

from src.train import models
from src.train.config import virtual_tokens
from src.train.estimate.build import model_config, simulated_model
from src.train.estimate.calibration import OVERHEAD, overhead_mb
from src.train.estimate.device import DeviceSpeed
from src.train.estimate.micro_batch import auto_batch
from src.train.estimate.quantized import SimQuantLinear
from src.train.estimate.step import OpRecord, eight_bit_state_bytes, profile_step

MB = 2**20


@dataclass
class Estimate:
    device: str
    device_label: str | None  # None: that device is not on this machine, time not estimated
    batch_size: int
    eval_batch_size: int
    sequence: int
    virtual_tokens: int
    params_total: int
    params_trainable: int
    weights_mb: float
    gradients_mb: float
    optimizer_mb: float
    activations_mb: float
    logits_mb: float
    tensor_peak_mb: float
    eval_tensor_peak_mb: float  # an evaluation forward at eval_batch_size, between steps
    # of the tensor peak, MB in heap-served blocks (allocator.py) bar the optimizer state:
    # what glibc's heap keeps a share of beyond the tensors (calibration.py)
    heap_mb: float
    overhead_mb: float
    gflops: float
    time_parts_ms: dict[str, float] | None
    # The sequence the step time (and gflops) was estimated at: a typical batch's longest row,
    # where the memory peak is at `sequence`, the longest row any batch can hold.
    step_sequence: int | None = None

    @property
    def temporaries_mb(self) -> float:
        """The tensor peak beyond persistent state and saved activations (negative when the peak
        comes before every gradient exists)."""
        parts = self.weights_mb + self.gradients_mb + self.optimizer_mb + self.activations_mb
        return self.tensor_peak_mb - parts

    @property
    def peak_mb(self) -> float:
        return self.tensor_peak_mb + self.overhead_mb

    @property
    def eval_peak_mb(self) -> float:
        return self.eval_tensor_peak_mb + self.overhead_mb

    @property
    def needed_mb(self) -> float:
        """What a run needs: training's peak or, when bigger, evaluation's."""
        return max(self.peak_mb, self.eval_peak_mb)

    @property
    def step_ms(self) -> float | None:
        return sum(self.time_parts_ms.values()) if self.time_parts_ms else None

    def metrics(self) -> dict[str, float]:
        """The estimate/* metrics a run logs, with the sequence they were made for."""
        return {
            "estimate/peak_mb": self.peak_mb,
            "estimate/tensor_peak_mb": self.tensor_peak_mb,
            "estimate/heap_mb": self.heap_mb,
            "estimate/eval_peak_mb": self.eval_peak_mb,
            "estimate/step_ms": self.step_ms if self.step_ms is not None else float("nan"),
            "estimate/sequence": float(self.sequence),
            "estimate/step_sequence": float(self.step_sequence or self.sequence),
        }


@dataclass
class Simulated:
    """A configuration's simulated step: its estimate without the step time, and the step's ops,
    from which with_step_time() adds it (a sweep's driver checks memory while a trial trains, and
    times the device only when it judges a trial, with no trial running)."""

    estimate: Estimate
    cost: OpRecord


def estimate(
    cfg: DictConfig,
    sequence: int | None = None,
    model_path: str | None = None,
    batch_size: int | None = None,
    timed: bool = True,
    step_sequence: int | None = None,
) -> Estimate:
    """Estimate cfg's training peak memory and step time. sequence: the longest row a batch can
    hold (default data.max_length: the worst case); model_path: the resolved model source;
    batch_size: the micro-batch (default data.batch_size; `auto` picks the largest that fits
    the memory budget, see micro_batch.py); timed=False skips the step time (and the device
    timings it needs) where only memory matters; step_sequence: the sequence a typical step
    sees (default: sequence), simulated again for the step time where it differs."""
    simulated = simulate(cfg, sequence, model_path, batch_size)
    return (
        with_step_time(simulated, cfg, step_sequence, model_path) if timed else simulated.estimate
    )


def simulate(
    cfg: DictConfig,
    sequence: int | None = None,
    model_path: str | None = None,
    batch_size: int | None = None,
) -> Simulated:
    """estimate() up to the step time: one training step on fake tensors."""
    device = models.device_of(cfg)
    if batch_size is None and cfg.data.batch_size == "auto":
        pick = auto_batch(cfg, lambda b: estimate(cfg, sequence, model_path, b, False), device)
        return simulate(cfg, sequence, model_path, pick[0])
    batch, seq = int(batch_size or cfg.data.batch_size), int(sequence or cfg.data.max_length)
    num_labels = len(OmegaConf.select(cfg, "data.labels") or [0, 1])
    source, kwargs = (model_path, {}) if model_path else models.config_source(cfg.model)
    hf_config = model_config(cfg, source, num_labels, **kwargs)
    fake_mode = FakeTensorMode()
    model = simulated_model(cfg, hf_config, fake_mode)
    eval_batch = int(OmegaConf.select(cfg, "data.eval_batch_size") or batch)
    train_rows, eval_rows = (_batch(cfg, b, seq, fake_mode) for b in (batch, eval_batch))
    profile = profile_step(cfg, model, train_rows, fake_mode, device, eval_rows)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer, tensor_peak = profile.optimizer_bytes, profile.peak_bytes
    eval_peak = profile.eval_peak_bytes
    if "8bit" in cfg.optim.optimizer._target_:  # simulated by AdamW: re-count its state
        optimizer = eight_bit_state_bytes(trainable)
        tensor_peak -= profile.optimizer_bytes - optimizer
        eval_peak -= profile.optimizer_bytes - optimizer
    calib = OVERHEAD[device]
    est = Estimate(
        device=device,
        device_label=None,
        batch_size=batch,
        eval_batch_size=eval_batch,
        sequence=seq,
        virtual_tokens=virtual_tokens(cfg),
        params_total=_logical_params(model),
        params_trainable=sum(p.numel() for p in trainable),
        weights_mb=profile.weights_bytes / MB,
        gradients_mb=profile.trainable_bytes / MB,
        optimizer_mb=optimizer / MB,
        activations_mb=profile.activation_bytes / MB,
        logits_mb=profile.logits_bytes / MB,
        tensor_peak_mb=tensor_peak / MB,
        eval_tensor_peak_mb=eval_peak / MB,
        heap_mb=profile.heap_bytes / MB,
        overhead_mb=overhead_mb(
            calib, profile.heap_bytes / MB, bool(cfg.get("activation_checkpointing", False))
        ),
        gflops=profile.cost.flops / 1e9,
        time_parts_ms=None,
    )
    return Simulated(est, profile.cost)


def with_step_time(
    simulated: Simulated,
    cfg: DictConfig,
    step_sequence: int | None = None,
    model_path: str | None = None,
) -> Estimate:
    """The simulated estimate with its step time on its device, timed here (each shape once per
    device, cached), from its step or, where step_sequence (a typical batch's longest row)
    differs from its sequence, from the same configuration and micro-batch simulated at that
    length; unchanged where that device is not on this machine."""
    est, step = simulated.estimate, simulated
    if step_sequence is not None and step_sequence != est.sequence:
        step = simulate(cfg, step_sequence, model_path, est.batch_size)
    est = dataclasses.replace(
        est, step_sequence=step.estimate.sequence, gflops=step.estimate.gflops
    )
    if not (est.device == "cpu" or torch.cuda.is_available()):
        return est
    speed = DeviceSpeed(est.device, cfg.paths.cache_dir)
    parts = _time_parts(step.cost, speed, OVERHEAD[est.device])
    return dataclasses.replace(est, device_label=speed.label, time_parts_ms=parts)


def _logical_params(model: torch.nn.Module) -> int:
    stored = sum(p.numel() for p in model.parameters())
    packed = [m for m in model.modules() if isinstance(m, SimQuantLinear)]
    return stored + sum(m.logical_params() - m.weight.numel() for m in packed)


def _batch(cfg: DictConfig, batch: int, seq: int, fake_mode) -> dict:
    """A fake batch as the task's collator makes it (ids, mask, labels)."""
    with fake_mode:
        ids = torch.zeros((batch, seq), dtype=torch.long)
        per_row = cfg.task.peft_task_type == "SEQ_CLS"
        labels = torch.zeros((batch,) if per_row else (batch, seq), dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _time_parts(cost: OpRecord, speed: DeviceSpeed, calib: dict) -> dict[str, float]:
    """Milliseconds per step: matmul-like ops at their measured speed; the other ops from their
    bytes at the measured bytes/s of typical elementwise ops (random draws and blocks too big
    for the heap at their own rates) and the eager cost per op, scaled by what calibration
    found these small benchmarks miss; plus the framework's own work per step."""
    scale = calib.get("other_scale", 1.0)
    parts = {
        "matmuls": 1000 * sum(speed.matmul_s(*shape) for shape in cost.matmul_shapes),
        "memory-bound ops": 1000 * scale * cost.bytes / speed.bytes_per_s(),
        "random draws": _ms(scale, cost.random_bytes, speed.random_bytes_per_s),
        "large blocks": _ms(scale, cost.large_bytes, speed.large_bytes_per_s),
        "per-op overhead": 1000 * scale * cost.ops * speed.op_overhead_s(),
        "framework": calib["step_fixed_ms"],
    }
    speed.save()
    return parts


def _ms(scale: float, moved: int, bytes_per_s) -> float:
    """Milliseconds to move these bytes; the rate is timed (once per machine, seconds for
    large blocks) only where a step moves any."""
    return 1000 * scale * moved / bytes_per_s() if moved else 0.0
