"""Model builders: resolve a model source to a Hugging Face folder, then load it (quantized or not).

Every source returns a local folder or hub name, so quantization, tokenizers and PEFT take one
path whatever the model: embedded asset (src/train/assets.py), hub name, or a tiny random-init
model saved once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError, first_line, instantiate_checked
from src.train.input_paths import PATH_PREFIXES, model_folder_problems


def hub_or_path(name_or_path: str) -> str:
    """A local folder holding the model, or a hub model name (org/name) whose config.json is
    fetched here (or found in the hub cache): a typo, a missing folder or an unreachable hub is
    one error naming it, not a loader's traceback after the tokenizer and weights were sought."""
    from huggingface_hub import hf_hub_download

    if Path(name_or_path).expanduser().exists() or name_or_path.startswith(PATH_PREFIXES):
        problems = model_folder_problems(name_or_path)
        if problems:
            raise ConfigError(problems)
        return str(Path(name_or_path).expanduser())
    try:
        hf_hub_download(name_or_path, "config.json")
    except Exception as err:  # noqa: BLE001 - sorted by hub_problem; each is bad input
        raise ConfigError([f"model.name_or_path={name_or_path}: {hub_problem(err)}"]) from err
    return name_or_path


def hub_problem(err: Exception) -> str:
    """Why a hub model's config.json could not be had, and what to do about it."""
    from huggingface_hub import errors

    if isinstance(err, errors.HFValidationError):
        return f"not a folder here, nor a hub model name (org/name): {first_line(err)}"
    if isinstance(err, errors.GatedRepoError):
        return "a gated model: accept its terms on its hub page and set HF_TOKEN"
    if isinstance(err, errors.RepositoryNotFoundError):
        return "no such model on the hub (a private one needs HF_TOKEN)"
    if isinstance(err, errors.LocalEntryNotFoundError):
        return (
            "not in the local hub cache, and the hub could not be reached "
            "(HF_HUB_OFFLINE=1 reads the cache only, without retrying)"
        )
    return f"{type(err).__name__}: {first_line(err)}"


def random_init(config: dict, cache_dir: str) -> str:
    """Build a random-init model from a config dict once, save it, and return its folder.

    Saved with a fixed seed and keyed by the config's hash, so every run sees the same weights.
    The save goes to a temp folder renamed into place, so concurrent first use is safe.
    """
    from transformers import AutoConfig, AutoModel

    config = (
        OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config
    )
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / f"{config['model_type']}-{key}"
    if (folder / "config.json").exists():
        return str(folder)
    hf_config = AutoConfig.for_model(**config)
    torch.manual_seed(0)
    model = AutoModel.from_config(hf_config)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    with _no_progress_bars():  # a bar on stderr would precede an `error:` block
        model.save_pretrained(tmp)
    try:
        os.rename(tmp, folder)
    except OSError:  # another process won the race; its copy is identical
        pass
    return str(folder)


@contextlib.contextmanager
def _no_progress_bars():
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def resolve_source(model_cfg: DictConfig) -> str:
    return instantiate_checked(model_cfg.source)


def config_source(model_cfg: DictConfig) -> tuple[str, dict]:
    """(folder or hub name, AutoConfig kwargs) to read the model's config without loading its
    weights: an embedded GGUF model is not converted just to read its shape."""
    source = model_cfg.source
    if source._target_.endswith("assets.gguf_converted"):
        from src.train.assets import gguf_config_source

        kwargs = {k: v for k, v in source.items() if k != "_target_"}
        return gguf_config_source(**kwargs)
    return resolve_source(model_cfg), {}


def resolve_tokenizer_path(model_cfg: DictConfig, model_path: str) -> str:
    tok = model_cfg.get("tokenizer")
    if tok is None:
        return model_path
    return tok if isinstance(tok, str) else instantiate_checked(tok)


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str):
    """One tokenizer per folder and process, shared: callers must not change it. The sweep's fork
    server loads the default one, so trials start with it (~60 ms of parsing each otherwise)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # decoder tokenizers often lack one; padding needs it
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(quant_cfg: DictConfig, head_modules: list[str] | None):
    """BitsAndBytesConfig with the task heads kept unquantized (PEFT trains them in full precision).
    head_modules None keeps transformers' default (the LM head stays unquantized)."""
    if quant_cfg.bnb is None:
        return None
    if head_modules is None:
        return instantiate(quant_cfg.bnb, _convert_="all")
    skip = head_skip_patterns(head_modules)
    return instantiate(quant_cfg.bnb, llm_int8_skip_modules=skip, _convert_="all")


def head_skip_patterns(head_modules: list[str]) -> list[str]:
    """Module-name patterns of the task heads that stay unquantized. transformers matches skip
    patterns from the start of a module's full name, so each head name matches at any depth
    ("pooler" -> "bert.pooler.dense")."""
    return [rf"(.*\.)?{re.escape(name)}" for name in head_modules]


def load_model(
    cfg: DictConfig,
    model_path: str,
    num_labels: int,
    pad_token_id: int | None,
    quant_cfg: DictConfig | None = None,
):
    """Load the task model from a folder/name, quantized per quant_cfg (default cfg.quant)."""
    auto_class = get_class(cfg.task.auto_class)
    kwargs: dict = {"dtype": torch.float32}
    if cfg.task.peft_task_type == "SEQ_CLS":
        kwargs["num_labels"] = num_labels
    heads = cfg.model.head_modules if cfg.task.peft_task_type == "SEQ_CLS" else None
    bnb = quantization_config(quant_cfg if quant_cfg is not None else cfg.quant, heads)
    if bnb is not None:
        kwargs.update(quantization_config=bnb, device_map=_device_map(cfg))
    model = auto_class.from_pretrained(model_path, **kwargs)
    if bnb is not None:
        keep_4bit_layout_trainable(model)
        if device_of(cfg) == "cpu":
            release_checkpoint_pages(model)
    if pad_token_id is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = (
            pad_token_id  # sequence classification needs it to find the last token
        )
    return model


def release_checkpoint_pages(model: torch.nn.Module) -> None:
    """On CPU transformers memory-maps the checkpoint, and the weights it keeps as stored
    (embeddings, norms, task heads) stay views of that mapping. Under a quantized base the mapping
    also keeps resident every page read to quantize the linear layers, though nothing uses them
    again (SmolLM2-135M: 405 MB of the file resident for 108 MB of views). Copying the views out
    lets the mapping go; the quantized weights are new tensors already."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():  # 4-bit and 8-bit weights are integer tensors of their own
            tensor.data = tensor.data.clone()


def keep_4bit_layout_trainable(model: torch.nn.Module) -> None:
    """bitsandbytes repacks 4-bit weights for a fast CPU inference kernel the first time a layer
    runs in eval mode, and the repacked layout breaks the next training step (validation runs
    between training steps). Keep the trainable layout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _device_map(cfg: DictConfig) -> str | dict:
    """Where from_pretrained puts the weights: each data-parallel rank on its own GPU."""
    return "cpu" if cfg.trainer.accelerator == "cpu" else {"": int(os.environ.get("LOCAL_RANK", 0))}


def device_of(cfg: DictConfig) -> str:
    """cuda or cpu: where cfg's trainer runs."""
    return "cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu"


def read_hf_config(model_path: str, **config_kwargs):
    """The model's transformers config alone (no weights loaded), for validation; None where
    transformers cannot read it (unknown architectures are checked later, at load time)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_path, **config_kwargs)
    except Exception:  # noqa: BLE001 - see above
        return None


def learned_positions(config) -> int | None:
    """How many positions a model with a learned absolute position table (BERT, MiniLM, GPT-2,
    OPT) can take: its inputs, prompt and prefix tokens included, must fit in them or the
    embedding lookup fails. None for rotary (Llama, Qwen, SmolLM2) and relative positions
    (DeBERTa-v3, T5), whose max_position_embeddings is not a hard limit."""
    positions = getattr(config, "max_position_embeddings", None)
    rotary = any(hasattr(config, a) for a in ("rope_parameters", "rope_theta", "rope_scaling"))
    relative = getattr(config, "relative_attention", False) and not getattr(
        config, "position_biased_input", True
    )
    return None if rotary or relative or not isinstance(positions, int) else positions
