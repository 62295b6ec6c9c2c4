"""Memory and time probes.

Peak memory (`mem/peak_mb`):
  * CUDA: the caching allocator's peak (`torch.cuda.max_memory_allocated`), reset right before fit.
  * CPU: the process's peak resident set during fit (VmHWM, reset through /proc/self/clear_refs
    right before fit) minus the resident set just before the model was built, after the MLflow
    run is opened (after giving malloc's free heap memory back, so earlier work's leftovers are
    not reused unseen). It therefore covers weights, gradients, optimizer state, activations,
    allocator slack and checkpoint saves of this run, and excludes the interpreter, imported
    libraries and the run's tracking set-up.

Tensor peak (`mem/tensor_peak_mb`, CPU): the exact peak of live tensor bytes over the first
optimizer steps, counted by a dispatch mode (LiveTensorBytes) — no allocator slack, no library
workspace: what the estimator (src/train/estimate/) predicts before any overhead is added.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils._pytree import tree_flatten

from src.train.allocator import trim_heap
from src.train.live_tensors import LiveTensorBytes

_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> float:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise RuntimeError(f"{field} not in {_STATUS}")


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    return _status_kb("VmHWM") / 1024


class PeakMemory:
    """A phase's peak: baseline() before building, start() before fit, peak_mb() after."""

    def __init__(self, device: str):
        self.cuda = device == "cuda" and torch.cuda.is_available()
        self.baseline_mb = 0.0

    def baseline(self) -> None:
        if not self.cuda:
            # Memory freed before this point (data preparation, the pre-flight estimate) stays
            # resident in malloc's heap and would be reused unseen: give it back first.
            trim_heap()
        self.baseline_mb = torch.cuda.memory_allocated() / 2**20 if self.cuda else rss_mb()

    def start(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        elif not reset_peak_rss():
            raise RuntimeError("cannot reset peak RSS (/proc/self/clear_refs not writable)")

    def peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        return peak_rss_mb() - self.baseline_mb


def tensor_mb(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def weights_mb(model: torch.nn.Module, skip_embeddings: bool = False) -> float:
    """Bytes of parameters and buffers as stored (4-bit weights count as packed bytes), each
    storage once (tied weights). skip_embeddings drops token/position embeddings and any weight
    tied to them (a tied LM head): the part quantization actually shrinks."""
    skip = set()
    if skip_embeddings:
        skip = {
            p.data_ptr()
            for m in model.modules()
            if isinstance(m, torch.nn.Embedding)
            for p in m.parameters()
        }
    seen, tensors = set(), []
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() not in seen and t.data_ptr() not in skip:
            seen.add(t.data_ptr())
            tensors.append(t)
    return tensor_mb(tensors)


def optimizer_mb(optimizer: torch.optim.Optimizer) -> float:
    return tensor_mb(
        v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)
    )


class StepTimer(pl.Callback):
    """Wall time per optimizer step (batch end to batch end, so data loading and Lightning's own
    work count), skipping warm-up steps and any interval interrupted by validation."""

    def __init__(self, warmup_steps: int = 2):
        self.warmup_steps = warmup_steps
        self.intervals: list[float] = []
        self.tokens: list[int] = []
        self._last: float | None = None
        self._seen = 0
        self.first_step_at: float | None = None  # epoch seconds the first optimizer step ended

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._batch_tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.first_step_at is None:
            self.first_step_at = time.time()
        if self._last is not None and self._seen >= self.warmup_steps:
            self.intervals.append(now - self._last)
            self.tokens.append(self._batch_tokens)
        self._last = now
        self._seen += 1

    def on_validation_start(self, trainer, pl_module):
        self._last = None  # the next interval would include validation

    def step_ms(self) -> float:
        return 1000 * statistics.median(self.intervals) if self.intervals else float("nan")

    def first_step_s(self) -> float:
        """Process start -> end of the first optimizer step: the run's fixed cost (imports,
        data, model build, tracking) plus one step; NaN where the start time is unknown."""
        started = process_started_at()
        if self.first_step_at is None or started is None:
            return float("nan")
        return self.first_step_at - started

    def tokens_per_s(self) -> float:
        return sum(self.tokens) / sum(self.intervals) if self.intervals else float("nan")


class TensorPeak(pl.Callback):
    """mem/tensor_peak_mb: LiveTensorBytes over the first `steps` training batches (weights,
    gradients, optimizer state once created, and one step's activations: the training peak),
    then off, so the rest of the run pays nothing for the count."""

    def __init__(self, steps: int = 3):
        self.steps = steps
        self.counter: LiveTensorBytes | None = None
        self.peak_mb = float("nan")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0 and self.counter is None:
            self.counter = LiveTensorBytes()
            self.counter.__enter__()
            self.counter.track_all(list(pl_module.parameters()) + list(pl_module.buffers()))
            for optimizer in trainer.optimizers:
                self.counter.track_all(
                    v for state in optimizer.state.values() for v in state.values()
                )
        if self.counter is not None:
            self.counter.track_all(tree_flatten(batch)[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.counter is not None and batch_idx + 1 >= self.steps:
            self._stop()

    def on_train_end(self, trainer, pl_module):
        self._stop()

    def _stop(self) -> None:
        if self.counter is not None:
            self.counter.__exit__(None, None, None)
            self.peak_mb = self.counter.peak / 2**20
            self.counter = None


def process_started_at() -> float | None:
    """Epoch seconds this process started, to 10 ms (Linux /proc; None elsewhere). A trial forked
    from the sweep's fork server starts at the fork."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        since_boot = int(stat[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime in ticks
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
