"""A training step of the simulated model on fake tensors, as every step after the first runs
it: the exact live-tensor peak (LiveTensorBytes, the counter that measures real runs), the
activations one forward keeps for backward, the optimizer state, and every op the step runs
(for the time model)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig
from torch.utils._python_dispatch import TorchDispatchMode

from src.train.allocator import heap_served
from src.train.estimate.build import is_checkpoint_view, precision_plugin
from src.train.live_tensors import LiveTensorBytes
from src.train.optimizer import build_optimizer

# Ops that allocate or re-label memory without reading or writing it (not marked as views).
MOVES_NOTHING = {
    "_unsafe_view",
    "empty",
    "empty_like",
    "empty_strided",
    "new_empty",
    "new_empty_strided",
    "detach",
    "alias",
    "lift_fresh",
}


RANDOM_OPS = {"bernoulli", "bernoulli_", "native_dropout", "uniform_", "normal_", "rand_like"}


@dataclass
class OpRecord:
    """One op of a step, for the time model: its FLOPs (matmul-like ops), or the bytes it
    reads and writes (everything else), keyed by what a benchmark needs to re-run it."""

    flops: int = 0
    bytes: int = 0
    random_bytes: int = 0  # of ops drawing random numbers (dropout masks): far slower per byte
    large_bytes: int = 0  # of ops writing a block glibc maps: fresh pages each time
    matmul_shapes: list = field(default_factory=list)  # (m, k, n, dtype) per matmul-like op
    ops: int = 0


class OpCost(TorchDispatchMode):
    """Counts a step's ops: FLOPs of matmul-like ops (torch's own formulas), bytes moved by the
    others; view ops and the fake tensors' own queries move nothing."""

    def __init__(self):
        super().__init__()
        from torch.utils.flop_counter import flop_registry

        self.formulas = {**flop_registry, torch.ops.aten._grouped_mm: _grouped_mm_flops}
        self.record = OpRecord()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == "prim":
            return out
        self.record.ops += 1
        packet = func.overloadpacket
        if packet in self.formulas:
            flops = self.formulas[packet](*args, **(kwargs or {}), out_val=out)
            self.record.flops += flops
            self.record.matmul_shapes.append(_mnk(flops, args, out))
        elif not func.is_view and packet.__name__ not in MOVES_NOTHING:
            tensors = [t for t in torch.utils._pytree.tree_flatten((args, out))[0] if _is_t(t)]
            moved = sum(t.numel() * t.element_size() for t in tensors)
            if packet.__name__ in RANDOM_OPS:
                self.record.random_bytes += moved
            elif any(not heap_served(t.untyped_storage().nbytes()) for t in _tensors(out)):
                self.record.large_bytes += moved  # e.g. a causal LM's logits and their grads
            else:
                self.record.bytes += moved
        return out


def _grouped_mm_flops(mat_a, mat_b, *args, out_val, **kwargs) -> int:
    """FLOPs of a grouped matmul (a mixture-of-experts layer's experts; torch has no formula):
    each output element is a dot product as long as mat_a's last dimension, which, where both
    operands are 2-D (the experts' weight gradient), the groups split between them."""
    groups = out_val.shape[0] if mat_a.dim() == 2 and mat_b.dim() == 2 else 1
    return 2 * out_val.numel() * mat_a.shape[-1] // groups


def _tensors(value) -> list[torch.Tensor]:
    return [t for t in torch.utils._pytree.tree_flatten(value)[0] if _is_t(t)]


def _is_t(value) -> bool:
    return isinstance(value, torch.Tensor)


def _mnk(flops: int, args, out) -> tuple:
    """A matmul-like op as (flops, output rows x cols, dtype): enough to time one like it."""
    rows = out.numel() // out.shape[-1] if out.dim() else 1
    dtype = next((a.dtype for a in args if _is_t(a) and a.is_floating_point()), out.dtype)
    return (flops, rows, out.shape[-1] if out.dim() else 1, str(dtype).removeprefix("torch."))


@dataclass
class StepProfile:
    weights_bytes: int
    trainable_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    peak_bytes: int
    heap_bytes: int  # of the peak, bytes in heap-served blocks bar the optimizer state (below)
    logits_bytes: int
    cost: OpRecord  # one step
    eval_peak_bytes: int  # an evaluation forward after the last step (0: not simulated)


@contextlib.contextmanager
def fused_attention_dropout():
    """Attention as a GPU runs it, for a simulation on CPU fake tensors. With attention dropout
    (BERT-style models) CPU attention falls back to the math kernel, which keeps the probability
    matrix and the dropout mask for backward; a GPU's fused kernels (memory-efficient, flash)
    draw the dropout inside and keep only the output and one logsumexp per row, as the CPU's
    fused kernel does without dropout. So the simulation runs attention without dropout (the
    memory this changes only: the time model counts attention's FLOPs either way)."""
    original = torch.nn.functional.scaled_dot_product_attention

    def without_dropout(query, key, value, attn_mask=None, dropout_p=0.0, *args, **kwargs):
        return original(query, key, value, attn_mask, 0.0, *args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = without_dropout
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = original


def profile_step(
    cfg: DictConfig,
    model: torch.nn.Module,
    batch: dict,
    fake_mode,
    device: str,
    eval_batch: dict | None = None,
) -> StepProfile:
    """Simulate one optimizer step of cfg's recipe on the fake model as the second and later
    steps run (the optimizer state exists, the last step's gradients live through the forward)
    and count; then, given eval_batch, one evaluation forward (validation runs between steps:
    weights, gradients and optimizer state stay alive, and its batch is data.eval_batch_size)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    plugin = precision_plugin(cfg.precision.name)
    counter = LiveTensorBytes()
    cost = OpCost()
    attention = fused_attention_dropout() if device == "cuda" else contextlib.nullcontext()
    with fake_mode, counter, attention:
        counter.track_all([p for p in model.parameters() if is_checkpoint_view(p)], heap=False)
        counter.track_all(list(model.parameters()) + list(model.buffers()))
        counter.track_all(batch.values())
        weights = counter.live - sum(v.numel() * v.element_size() for v in batch.values())
        optimizer = _optimizer(cfg, model, device, plugin)
        _as_after_first_step(optimizer, trainable)
        # The heap term of the resident estimate leaves out the optimizer state: allocated once,
        # by the first step, into the room that step's freed activations left, it adds no
        # retention of its own (counting it put MiniLM and SmolLM2 full fine-tuning at +13% and
        # +25% resident; without it +9%, +13% against the same measurements, BENCHMARKS.md).
        state_heap = _heap_bytes(_state_tensors(optimizer))
        before = counter.live
        with cost, plugin.forward_context():
            out = model(**batch)
        # A training step keeps only the loss (Lightning's training_step returns it): the
        # logits go now, what backward needs of them autograd keeps.
        loss, logits = out.loss, out.logits.numel() * out.logits.element_size()
        del out
        activations = counter.live - before
        with cost:
            # Lightning's order: the last step's gradients live through this forward and are
            # dropped just before backward (its closure zeroes them there).
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.trainer.gradient_clip_val:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.trainer.gradient_clip_val)
            optimizer.step()
        del loss
        train_peak, train_heap = counter.peak, counter.small_at_peak
        eval_peak = _evaluation_peak(model, eval_batch, plugin, counter) if eval_batch else 0
    return StepProfile(
        weights_bytes=weights,
        trainable_bytes=sum(p.numel() * p.element_size() for p in trainable),
        optimizer_bytes=_state_bytes(optimizer),
        activation_bytes=activations,
        peak_bytes=train_peak,
        heap_bytes=train_heap - state_heap,
        logits_bytes=logits,
        cost=cost.record,
        eval_peak_bytes=eval_peak,
    )


def _as_after_first_step(optimizer, trainable: list) -> None:
    """What the first step leaves: each trainable parameter's gradient and the optimizer state
    one update creates, made by an update with zero gradients instead of simulating that step's
    forward and backward (which would double the simulation, and the estimate runs between a
    sweep's ask and its launch of each new configuration). A parameter the forward never uses
    would get neither in a real run: none does in the architectures here, and the tests compare
    the estimate with a real run's counted peak for each adapter, quantization and task."""
    for param in trainable:
        param.grad = torch.zeros_like(param)
    optimizer.step()


def _evaluation_peak(model, batch: dict, plugin, counter: LiveTensorBytes) -> int:
    """Peak live bytes of one no-grad forward with labels (the validation loss: a causal LM's
    logits and their fp32 copy in the loss at the evaluation batch)."""
    counter.peak = counter.live
    counter.track_all(batch.values())
    model.eval()
    try:
        with torch.no_grad(), plugin.forward_context():
            out = model(**batch)
        del out
    finally:
        model.train()
    return counter.peak


def _optimizer(
    cfg: DictConfig, model: torch.nn.Module, device: str, plugin
) -> torch.optim.Optimizer:
    """The configured optimizer as a run builds it under the same precision plugin (torch's
    AdamW fused; unfused ones use multi-tensor (foreach) kernels on CUDA, whose temporaries
    count, and a loop on CPU). bitsandbytes' 8-bit ones run C kernels that fake tensors cannot,
    so AdamW stands in and their state is re-counted (eight_bit_state_bytes)."""
    foreach = device == "cuda"
    if cfg.optim.optimizer._target_.startswith("bitsandbytes"):
        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(trainable, lr=cfg.optim.lr, foreach=foreach)
    return build_optimizer(cfg.optim, model, plugin, foreach=foreach)


def _state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if _is_t(v)]


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for v in _state_tensors(optimizer))


def _heap_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of these tensors in blocks a CPU allocator serves from its heaps."""
    sizes = (t.untyped_storage().nbytes() for t in tensors)
    return sum(size for size in sizes if heap_served(size))


def eight_bit_state_bytes(params: list, min_8bit_size: int = 4096, block: int = 256) -> int:
    """bitsandbytes' 8-bit Adam state: two uint8 moments + an fp32 scale per 256-value block for
    tensors of min_8bit_size values or more; smaller tensors keep two fp32 moments."""
    total = 0
    for p in params:
        n = p.numel()
        total += 2 * (n + 4 * -(-n // block)) if n >= min_8bit_size else 8 * n
    return total
