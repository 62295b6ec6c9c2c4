"""Stand-ins for bitsandbytes' quantized linear layers in the simulated model: the same stored
bytes (packed weights, block scales, double quantization) and the same memory behaviour in a
training step (a full-precision copy of the weight made for each matmul and dropped after; the
int8 CPU path also keeps the layer's input for backward), but plain torch ops, so they run on
fake tensors. Which layers transformers quantizes is decided as it does (skip heads, keep the
output embedding)."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

BLOCK_4BIT = 64  # bitsandbytes' default block size for 4-bit weights
BLOCK_NESTED = 256  # double quantization: block size of the scales' own scales


def packed_weight_bytes(kind: str, out_features: int, in_features: int) -> dict[str, int]:
    """Stored bytes of one quantized weight, by tensor, as bitsandbytes keeps them."""
    numel = out_features * in_features
    if kind == "int8":  # LLM.int8(): int8 weight + one fp32 scale per output row
        return {"weight": numel, "scales": 4 * out_features}
    blocks = math.ceil(numel / BLOCK_4BIT)
    packed = {"weight": math.ceil(numel / 2)}  # two 4-bit codes per byte
    if kind.endswith("+dq"):  # absmax as uint8 + fp32 absmax per 256 blocks + 256-entry code
        packed["scales"] = blocks + 4 * math.ceil(blocks / BLOCK_NESTED) + 4 * 256
    else:
        packed["scales"] = 4 * blocks
    return packed


def compute_dtype(quant_cfg: DictConfig) -> torch.dtype | None:
    """bnb_4bit_compute_dtype: what a 4-bit layer casts its input to (None: the input's own)."""
    name = (quant_cfg.bnb or {}).get("bnb_4bit_compute_dtype")
    return getattr(torch, str(name).removeprefix("torch.")) if name else None


def quant_kind(quant_cfg: DictConfig) -> str | None:
    """'int8', 'nf4', 'fp4' (+dq with double quantization), or None for an unquantized base."""
    bnb = quant_cfg.bnb
    if bnb is None:
        return None
    if bnb.get("load_in_8bit"):
        return "int8"
    kind = bnb.get("bnb_4bit_quant_type", "fp4")
    return kind + ("+dq" if bnb.get("bnb_4bit_use_double_quant") else "")


class _DequantMatmul(torch.autograd.Function):
    """y = x W^T with W rebuilt from its packed form in forward and again in backward (as
    bitsandbytes' MatMul4Bit / MatMul8bitFp do); save_input mimics the int8 CPU path."""

    @staticmethod
    def forward(ctx, x, packed, bias, shape, four_bit, save_input):
        ctx.shape, ctx.four_bit, ctx.packed = shape, four_bit, packed
        ctx.saved_input = x if save_input else None
        return torch.nn.functional.linear(x, _dequantized(packed, shape, four_bit, x.dtype), bias)

    @staticmethod
    def backward(ctx, grad_out):
        weight = _dequantized(ctx.packed, ctx.shape, ctx.four_bit, grad_out.dtype)
        return grad_out @ weight, None, None, None, None, None


def _dequantized(packed, shape: tuple[int, int], four_bit: bool, dtype) -> torch.Tensor:
    """One full-precision temporary of the weight's shape, made by reading every packed byte."""
    codes = packed.expand(-1, 2) if four_bit else packed  # two codes per byte
    return codes.to(dtype).reshape(-1)[: shape[0] * shape[1]].reshape(shape)


class SimQuantLinear(torch.nn.Linear):
    """A frozen quantized linear layer (a torch.nn.Linear, so PEFT wraps it like the real one)."""

    def __init__(self, linear: torch.nn.Linear, kind: str, compute: torch.dtype | None = None):
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.kind, self.compute = kind, compute
        stored = packed_weight_bytes(kind, linear.out_features, linear.in_features)
        device = linear.weight.device
        weight = torch.empty(stored["weight"], 1, dtype=torch.uint8, device=device)
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        scales = torch.empty(stored["scales"], dtype=torch.uint8, device=device)
        self.register_buffer("scales", scales)
        self.bias = linear.bias

    def logical_params(self) -> int:
        """The weight's values (not its packed bytes), counted like PEFT counts 4-bit layers."""
        return self.in_features * self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (self.out_features, self.in_features)
        if self.kind == "int8":
            return _DequantMatmul.apply(x, self.weight, self.bias, shape, False, True)
        # bitsandbytes' Linear4bit computes in its compute dtype and returns the input's dtype:
        # under bf16 autocast an fp32 input gives an fp32 output, which the next ops keep for
        # backward (an MLP's activations in fp32: +14% on a tiny Llama, +16% on Llama-3-8B).
        dtype = x.dtype
        if self.compute is not None:
            x = x.to(self.compute)
        return _DequantMatmul.apply(x, self.weight, self.bias, shape, True, False).to(dtype)


def quantize_like_transformers(
    model: torch.nn.Module, kind: str, skip: list[str], compute: torch.dtype | None = None
) -> int:
    """Swap every linear layer transformers would quantize for a SimQuantLinear; return how many.
    Kept in full precision, as transformers does: the skip patterns (task heads) and the output
    embedding (a causal LM's head)."""
    import re

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is not torch.nn.Linear or child is output:
                continue
            if any(re.match(pattern, full) for pattern in skip):
                continue
            setattr(module, child_name, SimQuantLinear(child, kind, compute))
            swapped += 1
    return swapped
