"""Model source, tokenizer and data splits, once per distinct model and data config (loading is
what finds missing files and columns); the layer count then bounds every layer param. Method
choices that do not compose are skipped: the value check reports them."""

from __future__ import annotations

import functools
import json

from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError, first_line
from src.sweep.configs import Choice
from src.sweep.preflight.findings import Findings, unique
from src.sweep.preflight.values import check_values
from src.sweep.space import method_param, param_values
from src.train import model_checks, validate
from src.train.input_paths import data_file_problems, model_path_problems


def source_problems(spec, choices: list[Choice]) -> list[str]:
    method = method_param(spec.space)
    findings = Findings(method, [c.name for c in choices])
    model_seen: dict[str, object] = {}  # transformers config (None: not readable)
    data_seen: set[str] = set()
    problems = []
    for choice in choices:
        if choice.cfg is None:
            continue
        cfg = choice.cfg
        model_key = _key(cfg.model)
        if model_key not in model_seen:
            found, model_seen[model_key] = _model_source(cfg)
            problems += found
        data_key = _key(cfg.data) + f"|{cfg.task.name}|{cfg.seed}"
        if data_key not in data_seen:
            data_seen.add(data_key)
            problems += _data_source(cfg)
        model_config = model_seen[model_key]
        if model_config is not None:
            values, _ = param_values(spec.space, choice.name)
            check_values(
                spec.space,
                choice,
                values,
                functools.partial(model_checks.model_problems, model_config=model_config),
                findings,
            )
    return unique([*problems, *findings.render()])


def _model_source(cfg: DictConfig) -> tuple[list[str], object]:
    """Problems with the model and its tokenizer, and its transformers config (None: unknown)."""
    from src.train import models

    what = f"model={cfg.model.get('name')}"
    if validate.unset_problems(cfg.model, "model") or model_path_problems(cfg):
        return [], None  # the value check reports them
    path, problems = _attempt(what, models.resolve_source, cfg.model)
    if path is None:
        return problems, None
    _, problems = _attempt(f"{what} tokenizer", models.resolve_tokenizer_path, cfg.model, path)
    return problems, models.read_hf_config(path)


def _data_source(cfg: DictConfig) -> list[str]:
    from src.train.tasks import TASKS

    if validate.unset_problems(cfg.data, "data"):  # the value check reports them
        return []
    load = TASKS[cfg.task.name].load_splits
    _, problems = _attempt(f"data={cfg.data.get('name')}", load, cfg, cfg.seed)
    # The loader names missing files too; the value check has said them. The other files are
    # still read, so a malformed one comes in the same error.
    missing = set(data_file_problems(cfg))
    return [p for p in problems if p not in missing]


def _attempt(what: str, fn, *args):
    """(fn(*args), []) or (None, problems): a ConfigError's own, else one line naming `what`."""
    try:
        return fn(*args), []
    except ConfigError as err:
        return None, err.problems
    except Exception as err:  # noqa: BLE001 - sources fail in many ways: report, do not crash
        return None, [f"{what}: {type(err).__name__}: {first_line(err)}"]


def _key(node: DictConfig) -> str:
    # Unresolved: interpolations to other keys are the same across choices, and ??? does not raise.
    return json.dumps(OmegaConf.to_container(node, resolve=False), sort_keys=True, default=str)
