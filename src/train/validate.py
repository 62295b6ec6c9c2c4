"""Validate a composed config before any work, reporting every problem at once."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from numbers import Real

from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError
from src.train.config import ABSENT, compose_checked, override_problems
from src.train.fault_spec import fault_problems
from src.train.input_paths import input_path_problems


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


# (config key, test, what is allowed). Keys absent from the config are skipped.
RULES: list[tuple[str, Callable[[object], bool], str]] = [
    ("seed", _int, "an integer"),
    ("optim.lr", lambda v: _num(v) and v > 0, "a number > 0"),
    ("optim.decay_norm_and_bias", lambda v: isinstance(v, bool), "true or false"),
    ("optim.warmup_ratio", lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
    (
        "optim.scheduler",
        lambda v: v in ("linear", "cosine", "constant_with_warmup", "constant"),
        "one of linear, cosine, constant_with_warmup, constant",
    ),
    ("adapter.peft.r", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("adapter.peft.lora_alpha", lambda v: _num(v) and v > 0, "a number > 0"),
    ("adapter.peft.lora_dropout", lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("adapter.peft.num_virtual_tokens", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    (
        "adapter.trainable_top_layers",
        lambda v: v is None or (_int(v) and v >= 0),
        "null or an integer >= 0",
    ),
    (
        "trainer.max_steps",
        lambda v: _int(v) and (v == -1 or v >= 1),
        "-1 (no limit) or an integer >= 1",
    ),
    ("trainer.max_epochs", lambda v: _int(v) and (v == -1 or v >= 1), "-1 or an integer >= 1"),
    (
        "trainer.devices",
        lambda v: _int(v) and v >= 1,
        "an integer >= 1 (devices per run; more than 1 trains data-parallel)",
    ),
    (
        "trainer.strategy",
        lambda v: v in ("auto", "ddp"),
        "auto or ddp (a process per device; spawn and fork variants cannot start inside a "
        "sweep's trial process)",
    ),
    ("trainer.accumulate_grad_batches", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    (
        "trainer.gradient_clip_val",
        lambda v: v is None or (_num(v) and v >= 0),
        "null or a number >= 0",
    ),
    (
        "trainer.val_check_interval",
        lambda v: _num(v) and v > 0,
        "a number > 0 (fraction of an epoch, or steps)",
    ),
    (
        "data.batch_size",
        lambda v: v == "auto" or (_int(v) and v >= 1),
        "an integer >= 1, or auto (the largest micro-batch whose estimate fits budget.memory_mb)",
    ),
    (
        "data.effective_batch_size",
        lambda v: v is None or (_int(v) and v >= 1),
        "null or an integer >= 1",
    ),
    ("budget.memory_mb", lambda v: v is None or (_num(v) and v > 0), "null or a number > 0"),
    ("data.eval_batch_size", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("data.max_length", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    (
        "data.max_train_samples",
        lambda v: v is None or (_int(v) and v >= 1),
        "null or an integer >= 1",
    ),
    (
        "data.max_eval_samples",
        lambda v: v is None or (_int(v) and v >= 1),
        "null or an integer >= 1",
    ),
    ("data.drop_unlabelled", lambda v: isinstance(v, bool), "true or false"),
    ("data.val_size", lambda v: _num(v) and v > 0, "a row count >= 1 or a fraction in (0, 1)"),
    ("data.test_size", lambda v: _num(v) and v > 0, "a row count >= 1 or a fraction in (0, 1)"),
    (
        "data.labels",
        lambda v: v is None or (isinstance(v, list) and len(set(map(str, v))) >= 2),
        "null or a list of at least 2 distinct label names",
    ),
    ("early_stopping.patience", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    (
        "early_stopping.monitor",
        lambda v: v in ("val/acc", "val/loss", "val/perplexity"),
        "one of val/acc, val/loss, val/perplexity",
    ),
    ("early_stopping.mode", lambda v: v in ("min", "max"), "min or max"),
]


# What an unset mandatory value (??? in conf/) takes, for the error that names it.
UNSET_HINTS = {
    "model.name_or_path": "a Hugging Face model name or a local folder holding the model",
    "data.train_file": "the path of your training file",
    "data.path": "a Hugging Face dataset name, e.g. stanfordnlp/sst2",
}


def unset_problems(node: DictConfig, prefix: str = "") -> list[str]:
    """Mandatory values (??? in conf/, e.g. model.name_or_path under model=hf) left unset in a
    config (or in one of its nodes, named by prefix). Read without resolving: a value that
    refers to an unset one (${model.name_or_path}) cannot be resolved either."""
    unset = []

    def walk(value, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        elif value == "???":
            unset.append(path)

    walk(OmegaConf.to_container(node, resolve=False), prefix)
    return [
        f"{key} must be set ({key}=...): "
        f"{UNSET_HINTS.get(key, 'the chosen config has no default for it')}"
        for key in unset
    ]


def config_problems(cfg: DictConfig) -> list[str]:
    unset = unset_problems(cfg)
    if unset:  # the other checks resolve values that may refer to the unset ones
        return unset
    problems = []
    for key, ok, allowed in RULES:
        value = OmegaConf.select(cfg, key, default=ABSENT)
        if value is ABSENT:
            continue
        if isinstance(value, (DictConfig,)) or OmegaConf.is_list(value):
            value = OmegaConf.to_container(value)
        if not ok(value):
            problems.append(f"{key}={value!r} is invalid: must be {allowed}")

    problems += combination_problems(cfg) + input_path_problems(cfg)
    return problems + fault_problems(OmegaConf.select(cfg, "fault"))


def combination_problems(cfg: DictConfig) -> list[str]:
    problems = []
    quantized = cfg.quant.bnb is not None
    if quantized and cfg.adapter.peft is None:
        problems.append(
            f"quant={cfg.quant.name} with adapter={cfg.adapter.name} is impossible: quantized base "
            "weights cannot be trained directly; use a PEFT adapter (e.g. adapter=lora for QLoRA) "
            "or quant=none"
        )
    if OmegaConf.select(cfg, "data.batch_size") == "auto" and not OmegaConf.select(
        cfg, "data.effective_batch_size"
    ):
        problems.append(
            "data.batch_size=auto needs data.effective_batch_size=N: the batch each optimizer "
            "step sees (micro-batch x trainer.accumulate_grad_batches)"
        )
    if cfg.adapter.name == "prefix" and OmegaConf.select(cfg, "activation_checkpointing"):
        problems.append(
            "adapter=prefix with activation_checkpointing=true is impossible: PEFT's prefix "
            "tuning does not work with gradient checkpointing; use another adapter or "
            "activation_checkpointing=false"
        )
    if quantized and cfg.adapter.name == "ia3" and cfg.precision.name == "bf16-true":
        problems.append(
            f"adapter=ia3 with quant={cfg.quant.name} and precision=bf16-true fails inside PEFT "
            "(its quantized IA3 layers hand fp32 outputs to bf16 attention); use "
            "precision=bf16-mixed or 32-true, or quant=none"
        )
    if quantized and importlib.util.find_spec("bitsandbytes") is None:
        problems.append(f"quant={cfg.quant.name} needs bitsandbytes: pip install bitsandbytes")
    if (
        "8bit" in str(OmegaConf.select(cfg, "optim.optimizer._target_", default="")).lower()
        and importlib.util.find_spec("bitsandbytes") is None
    ):
        problems.append("optim=adamw8bit needs bitsandbytes: pip install bitsandbytes")
    if (
        cfg.task.name == "generation"
        and cfg.data.get("format") == "pairs"
        and cfg.early_stopping.monitor == "val/acc"
    ):
        problems.append(
            f"data={cfg.data.name} has no labels, so no val/acc: set "
            "early_stopping.monitor=val/perplexity early_stopping.mode=min"
        )
    if cfg.task.name == "classification" and cfg.data.get("format") == "pairs":
        problems.append(
            f"data={cfg.data.name} holds prompt -> response pairs without labels: "
            "use task=generation"
        )
    problems += eval_problems(cfg)
    if cfg.precision.name == "16-mixed" and cfg.trainer.accelerator == "cpu":
        problems.append(
            "precision=16-mixed needs a GPU (trainer=gpu); on CPU use 32-true, "
            "bf16-mixed or bf16-true"
        )
    return problems


MERGEABLE = ("full", "freeze", "lora", "ia3")


def eval_problems(cfg: DictConfig) -> list[str]:
    problems = []
    if cfg.eval.forgetting and cfg.task.name != "generation":
        problems.append(
            "eval.forgetting=true needs task=generation (a causal LM head to score text)"
        )
    kinds = list(cfg.eval.ptq or [])
    unknown = [k for k in kinds if k not in ("int8", "nf4", "fp4")]
    if unknown:
        problems.append(f"eval.ptq={kinds}: unknown kinds {unknown}; allowed: int8, nf4, fp4")
    if kinds and cfg.quant.bnb is not None:
        problems.append(
            f"eval.ptq needs quant=none (got quant={cfg.quant.name}): a model trained on "
            "a quantized base is already evaluated quantized (the QAT-like counterpart)"
        )
    if kinds and cfg.adapter.name not in MERGEABLE:
        problems.append(
            f"eval.ptq needs an adapter that merges into the weights ({', '.join(MERGEABLE)}); "
            f"adapter={cfg.adapter.name} cannot be merged"
        )
    return problems


def command_line_problems(overrides: list[str]) -> list[str]:
    """Every problem of a command line at once: unknown group options, and the value rules and
    combinations of the config composed from the remaining overrides."""
    problems, known = [], []
    for override in overrides:
        found = override_problems([override])
        problems += found
        known += [] if found else [override]
    try:
        cfg = compose_checked(known)
    except ConfigError as err:
        return problems + err.problems
    return problems + config_problems(cfg)


def raise_if(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)
