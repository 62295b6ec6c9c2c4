"""The model a configuration trains, built without weights: the architecture on the meta device,
quantized layers swapped for stand-ins with the same stored bytes, the adapter applied by the
same code a run uses (src/train/adapters.py), the precision plugin's conversion, then every
tensor re-created as a fake tensor (shapes and dtypes, no memory) so a training step can run."""

from __future__ import annotations

import contextlib

import torch
from hydra.utils import get_class
from omegaconf import DictConfig
from torch._subclasses.fake_tensor import FakeTensorMode

from src.errors import ConfigError, first_line
from src.train import models
from src.train.adapters import apply_adapter
from src.train.estimate.quantized import compute_dtype, quant_kind, quantize_like_transformers

CHECKPOINT_VIEW = "_ftsweep_checkpoint_view"  # marks a simulated weight that a run memory-maps


def model_config(cfg: DictConfig, source: str, num_labels: int, **kwargs):
    """The Hugging Face config of the model, from its folder, hub cache or GGUF header (no
    weights read); ConfigError when there is none to read."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise ConfigError(
            [
                f"model: no config.json to read at {source!r} (a folder holding the model's "
                f"config.json, or a hub name already in the local cache): {first_line(err)}"
            ]
        ) from err
    if cfg.task.peft_task_type == "SEQ_CLS":
        config.num_labels = num_labels
        # With no problem_type DeBERTa's loss picks the labelled rows by value (nonzero): a
        # shape fake tensors cannot know. Every row here is labelled, so its loss is the
        # single-label one that other models infer (the same tensors, bar a few bytes).
        config.problem_type = config.problem_type or "single_label_classification"
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = 0  # classification finds the last token through it; its id is moot
    return config


def simulated_model(cfg: DictConfig, hf_config, fake_mode: FakeTensorMode) -> torch.nn.Module:
    """The adapted model as cfg would train it, holding fake tensors."""
    kind = quant_kind(cfg.quant)
    mapped = kind is None and models.device_of(cfg) == "cpu" and _stored_fp32(hf_config)
    with torch.device("meta"):
        model = get_class(cfg.task.auto_class).from_config(hf_config, dtype=torch.float32)
        if mapped:
            _mark_checkpoint_views(model)
        if kind is not None:
            heads = cfg.model.head_modules if cfg.task.peft_task_type == "SEQ_CLS" else []
            skip = models.head_skip_patterns(heads)
            quantize_like_transformers(model, kind, skip, compute_dtype(cfg.quant))
            # What transformers' quantizer marks, so apply_adapter prepares k-bit training.
            model.is_quantized = True
            setattr(model, "is_loaded_in_8bit" if kind == "int8" else "is_loaded_in_4bit", True)
        model = apply_adapter(model, cfg)
        precision_plugin(cfg.precision.name).convert_module(model)
    model.train()
    _materialize(model, fake_mode)
    return model


def _stored_fp32(hf_config) -> bool:
    """Whether the checkpoint stores float32, the dtype a run loads (config.json's dtype; a
    config without one is taken as float32, transformers' own default)."""
    return getattr(hf_config, "dtype", None) in (None, torch.float32, "float32")


def _mark_checkpoint_views(model: torch.nn.Module) -> None:
    """On CPU transformers memory-maps the checkpoint, and weights loaded in their stored dtype
    stay views of that file: their memory is the file's pages, not the allocator's heap (which
    keeps and fragments what it frees: calibration.py). Marked: the base model's weights. A task
    head outside it (a classifier, an untied LM head) is counted heap-served: a base model's
    checkpoint lacks it and the run initialises it, as it does the adapters (a causal LM's own
    checkpoint has an untied head, which the config cannot tell; a tied one is the embedding).
    A quantized base on CPU copies its weights out of the mapping: not marked."""
    for param in getattr(model, model.base_model_prefix, model).parameters():
        setattr(param, CHECKPOINT_VIEW, True)


def is_checkpoint_view(param: torch.Tensor) -> bool:
    """A weight a run reads from the memory-mapped checkpoint, still in the stored dtype."""
    return getattr(param, CHECKPOINT_VIEW, False) and param.dtype == torch.float32


def precision_plugin(name: str):
    """Lightning's own plugin for the precision: the same conversion and autocast as a run. Full
    precision needs none, and is most configurations: FullPrecision stands in for Lightning's
    Precision() there, so the estimate does not load Lightning (~2 s of the CLI's start here:
    MiniLM QLoRA 8.9-10.6 s with it, 7.2-8.0 s without)."""
    if name == "32-true":
        return FullPrecision()
    from lightning.pytorch.plugins.precision import HalfPrecision, MixedPrecision

    if name.endswith("-mixed"):
        return MixedPrecision(name, device="cpu")
    return HalfPrecision(name)


class FullPrecision:
    """What Lightning's base Precision does to a 32-true run's module and forward pass: nothing
    (no conversion, no autocast, no loss scaler); tests/train/test_estimate.py checks the two
    agree."""

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    def forward_context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def _materialize(model: torch.nn.Module, fake_mode: FakeTensorMode) -> None:
    """Swap meta tensors for fake CPU ones: parameters, buffers and plain tensor attributes
    (PEFT keeps prompt token ids that way). Shared tensors (tied weights) stay shared."""
    made: dict[int, torch.Tensor] = {}

    def fake(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in made:
            with fake_mode:
                made[id(t)] = torch.empty(t.shape, dtype=t.dtype, device="cpu")
        return made[id(t)]

    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None and param.device.type == "meta":
                if id(param) not in made:
                    made[id(param)] = torch.nn.Parameter(fake(param), param.requires_grad)
                    if is_checkpoint_view(param):  # bf16-true converted ones are copies
                        setattr(made[id(param)], CHECKPOINT_VIEW, True)
                module._parameters[name] = made[id(param)]
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.device.type == "meta":
                module._buffers[name] = fake(buffer)
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.device.type == "meta":
                setattr(module, name, fake(value))
            elif isinstance(value, dict) and any(
                isinstance(v, torch.Tensor) for v in value.values()
            ):
                value.update({k: fake(v) for k, v in value.items() if _is_meta(v)})


def _is_meta(value) -> bool:
    return isinstance(value, torch.Tensor) and value.device.type == "meta"
