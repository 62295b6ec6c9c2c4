"""What a model's own config (transformers', read without weights) rules out for a composed
config: a task the architecture has no class for, PEFT layers it has no defaults for, more layers
or positions than it has. Checked by src.train, src.estimate and the sweep's preflight (per
sampled value) before any weights are read."""

from __future__ import annotations

from omegaconf import DictConfig

from src.train.config import ABSENT, virtual_tokens
from src.train.validate import _int


def model_problems(cfg: DictConfig, model_config) -> list[str]:
    """What the model's own config (transformers', None where unreadable) rules out."""
    from src.train.models import learned_positions

    if model_config is None:
        return []
    # Without a class for the task there is no model to look for adapter layers in.
    problems = task_problems(cfg, model_config) or target_problems(cfg, model_config)
    k, n_layers = cfg.adapter.get("trainable_top_layers"), model_config.num_hidden_layers
    if _int(k) and k > n_layers:
        problems.append(
            f"adapter.trainable_top_layers={k} is larger than the model's {n_layers} layers "
            f"(allowed: 0..{n_layers})"
        )
    positions, length = learned_positions(model_config), cfg.data.max_length
    virtual = virtual_tokens(cfg)
    if positions is not None and _int(length) and length + virtual > positions:
        model = f"model={cfg.model.name} has {positions} (learned position embeddings)"
        # Named by the key a sweep is likelier to vary, so its preflight checks each value.
        problems.append(
            f"adapter.peft.num_virtual_tokens={virtual} ({cfg.adapter.name}) with "
            f"data.max_length={length} needs {length + virtual} positions; {model}: allowed "
            f"data.max_length + num_virtual_tokens <= {positions}"
            if virtual
            else f"data.max_length={length} is longer than the model's positions; {model}: "
            f"allowed data.max_length 1..{positions}"
        )
    return problems


def task_problems(cfg: DictConfig, model_config) -> list[str]:
    """An architecture transformers has no class of the task's kind for (an encoder such as
    DeBERTa or DistilBERT for task=generation): refused here, not after loading the weights."""
    from hydra.utils import get_class

    auto_class = get_class(cfg.task.auto_class)
    known = getattr(auto_class, "_model_mapping", None)  # transformers' config -> model table
    if known is None or type(model_config) in known:
        return []
    other = "classification" if cfg.task.name == "generation" else "generation"
    return [
        f"task={cfg.task.name}: model_type {model_config.model_type!r} "
        f"({type(model_config).__name__}) has no {auto_class.__name__} class in transformers; "
        f"allowed: a model it has one for, or task={other}"
    ]


def target_problems(cfg: DictConfig, model_config) -> list[str]:
    """A PEFT method that adapts chosen layers, left to PEFT's defaults, on an architecture
    PEFT has no defaults for (DistilBERT, ModernBERT, ...): it would fail after loading."""
    peft = cfg.adapter.get("peft")
    if peft is None or peft.get("target_modules", ABSENT) is not None:
        return []
    from src.train.adapters import lacks_default_targets, peft_config

    try:
        config = peft_config(cfg)
    except Exception:  # noqa: BLE001 - the adapter's own settings are judged where it is built
        return []
    if not lacks_default_targets(config, model_config.model_type):
        return []
    keys = [k for k in ("target_modules", "feedforward_modules") if k in cfg.adapter.peft]
    allowed = "all-linear, or " if cfg.adapter.peft._target_ == "peft.LoraConfig" else ""
    names = ",".join(linear_layer_names(cfg, model_config))
    return [
        f"adapter.peft.{' and adapter.peft.'.join(keys)}: PEFT has no default layers for "
        f"model_type {model_config.model_type!r} (adapter={cfg.adapter.name}) and none is set; "
        f"allowed: {allowed}a list of the model's linear layers, of [{names}]"
    ]


def linear_layer_names(cfg: DictConfig, model_config) -> list[str]:
    """The names (last part) of the model's linear layers bar its task heads: what a PEFT method
    can target. Read from the architecture built on the meta device (no memory, no weights)."""
    import torch
    from hydra.utils import get_class

    with torch.device("meta"):
        model = get_class(cfg.task.auto_class).from_config(model_config)
    heads = {*cfg.model.head_modules, "lm_head"}
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    return sorted(names - heads)
