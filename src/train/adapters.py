"""Adapters: wrap a loaded model for full, partial (frozen), or PEFT fine-tuning.

QLoRA is not a code path of its own: a quantized base is prepared for k-bit training and then
gets whatever PEFT adapter the config names.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

# peft is imported where it is used: importing it imports bitsandbytes, which on a GPU reads the
# device's properties and so initializes CUDA, and the sweep's fork server imports this module
# (src/sweep/process/preload.py): a trial forked from a server with CUDA initialized cannot use it.

# Non-reentrant checkpointing: works with frozen inputs (PEFT) without the input-grad hack.
CHECKPOINTING_KWARGS = {"use_reentrant": False}


def apply_adapter(model: torch.nn.Module, cfg: DictConfig) -> torch.nn.Module:
    """Return the model ready to train under cfg.adapter (and cfg.quant)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    checkpointing = bool(cfg.get("activation_checkpointing", False))
    if getattr(model, "is_quantized", False):
        # Casts norms to fp32; turns on activation checkpointing when asked.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs=CHECKPOINTING_KWARGS,
        )
    elif checkpointing:
        # transformers 5 renamed gradient_checkpointing_enable (removed in 6): the new name.
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=CHECKPOINTING_KWARGS)
    if cfg.adapter.peft is not None:
        config = peft_config(cfg)
        fill_default_targets(config, getattr(model.config, "model_type", None))
        return get_peft_model(model, config)
    if cfg.adapter.trainable_top_layers is not None:
        freeze_all_but_top(model, cfg.adapter.trainable_top_layers, cfg.model.head_modules)
    return model


def peft_config(cfg: DictConfig):
    """Instantiate PEFT's own config class so its __post_init__ checks run."""
    classification = cfg.task.peft_task_type == "SEQ_CLS"
    return instantiate(
        cfg.adapter.peft,
        task_type=cfg.task.peft_task_type,
        # Heads are new (random) in classification: train them fully and save them with the adapter.
        modules_to_save=list(cfg.model.head_modules) if classification else None,
        _convert_="all",
    )


def _default_target_table(config) -> dict | None:
    """PEFT's table of the layers its method adapts per model_type (None: it has none)."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import PeftType, constants

    if config.peft_type == PeftType.IA3:  # its tuner keeps the table in constants only
        return constants.TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING
    tuner = PEFT_TYPE_TO_TUNER_MAPPING.get(config.peft_type)
    return getattr(tuner, "target_module_mapping", None)


def lacks_default_targets(config, model_type: str | None) -> bool:
    """Whether PEFT would stop for want of target_modules: the method adapts chosen layers,
    none are set, and PEFT's table has no entry for this architecture."""
    table = _default_target_table(config)
    unset = hasattr(config, "target_modules") and config.target_modules is None
    return unset and table is not None and model_type not in table


def fill_default_targets(config, model_type: str | None) -> None:
    """Set PEFT's default target_modules on a LoRA config that leaves them unset, as PEFT itself
    would. Done here because PEFT 0.21 converts the targets of mixture-of-experts models (Mixtral,
    Qwen-MoE: experts fused in transformers 5) before filling in its defaults, so an unset value
    became an empty set there, and get_peft_model found no layer to adapt."""
    from peft.utils import PeftType

    if config.peft_type != PeftType.LORA or config.target_modules is not None:
        return
    targets = (_default_target_table(config) or {}).get(model_type)
    if targets is not None and not getattr(config, "target_parameters", None):
        config.target_modules = targets if isinstance(targets, str) else set(targets)


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks: the ModuleList as long as config.num_hidden_layers."""
    n_layers = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(f"cannot find the {n_layers} transformer layers of {type(model).__name__}")


def freeze_all_but_top(model: torch.nn.Module, k: int, head_modules: list[str]) -> None:
    """Partial fine-tuning: only the top k layers and the task head(s) train."""
    model.requires_grad_(False)
    layers = transformer_layers(model)
    for layer in layers[len(layers) - k :] if k > 0 else []:
        layer.requires_grad_(True)
    for name, module in model.named_modules():
        if name.split(".")[-1] in head_modules:
            module.requires_grad_(True)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total), counting 4-bit packed weights at their logical size like PEFT does."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if param.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        trainable += n if param.requires_grad else 0
    return trainable, total
