"""Compose configs from conf/ without the CLI (tests, the sweep and its trial processes), and
check group options before Hydra does: Hydra stops at the first unknown one, we name them all."""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError, first_line

CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf"
# The one "no such key" marker for OmegaConf.select(..., default=ABSENT): None is a valid value.
ABSENT = object()


def compose_config(
    overrides: list[str] | tuple[str, ...] = (), config_name: str = "train"
) -> DictConfig:
    """conf/<config_name>.yaml with Hydra overrides applied; unknown group options are refused
    up front, all at once, with the valid choices."""
    overrides = list(overrides)
    problems = override_problems(overrides)
    if problems:
        raise ConfigError(problems)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def compose_checked(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """compose_config, with every composition failure as a ConfigError: Hydra's own errors
    (missing keys, bad override syntax, ...) have many types and multi-line messages."""
    try:
        return compose_config(overrides)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - Hydra raises many types; the user needs the text
        unknown = unknown_key_problems(overrides) if "Could not override" in str(err) else []
        said = _unchosen_group(str(err), overrides) or _sweep_without_multirun(str(err))
        raise ConfigError(unknown or said or [f"{type(err).__name__}: {first_line(err)}"]) from err


def _unchosen_group(message: str, overrides: list[str]) -> list[str]:
    """`experiment=X` for a group the config does not choose by default: Hydra says "No match in
    the defaults list"; the user needs the + that adds it."""
    found = re.match(r"Could not override '([\w/]+)'\. No match in the defaults list", message)
    if not found:
        return []
    group = found.group(1)
    given = [o for o in overrides if o.startswith(f"{group}=")]
    value = given[0].partition("=")[2] if given else "NAME"
    return [
        f"{group}={value}: no {group} is chosen by default, so one is added, with a +: "
        f"+{group}={value}"
    ]


def _sweep_without_multirun(message: str) -> list[str]:
    """`key=a,b` without -m: Hydra says "Ambiguous value" on its first line, and what to do on
    the lines a one-line problem leaves out."""
    found = re.match(r"Ambiguous value for argument '(.+)'", message)
    if not found:
        return []
    return [
        f"{found.group(1)}: a comma list sweeps its values, which needs -m to run each "
        "(python -m src.train -m, python -m src.estimate -m); one value holding a comma is "
        "quoted (key='a,b'), a list is key=[a,b]"
    ]


def unknown_key_problems(overrides: list[str]) -> list[str]:
    """Every `key=value` override whose key the config does not have (Hydra names only the
    first, as "Could not override"), with the keys that are there, found by composing without
    them: a typo's right spelling is usually among its siblings."""
    plain, rest = [], []
    for text in overrides:
        try:
            override = override_parser().parse_override(text)
        except Exception:  # noqa: BLE001 - bad syntax: Hydra reports it
            return []
        changes_a_key = override.type.name == "CHANGE" and not override.package
        is_key = changes_a_key and not (CONF_DIR / override.key_or_group).is_dir()
        (plain if is_key else rest).append((text, override.key_or_group))
    try:
        cfg = compose_config([text for text, _ in rest])
    except Exception:  # noqa: BLE001 - the other overrides fail too: Hydra's message says how
        return []
    return [_unknown_key(cfg, key) for _, key in plain if _absent(cfg, key)]


def _absent(cfg: DictConfig, key: str) -> bool:
    return OmegaConf.select(cfg, key, default=ABSENT, throw_on_missing=False) is ABSENT


def _unknown_key(cfg: DictConfig, key: str) -> str:
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if isinstance(node, DictConfig):
        siblings = sorted(map(str, node.keys()))
        close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
        prefix = f"{parent}." if parent else ""
        there = (
            f"; did you mean {prefix}{close[0]}?"
            if close
            else f"; {parent or 'the top level'} has: {', '.join(siblings)}"
        )
    else:
        there = f"; {parent} is not a group of settings either" if parent else ""
    return f"{key} is not a setting of this config{there} (a new key is added with +{key}=...)"


def virtual_tokens(cfg: DictConfig) -> int:
    """Prompt or prefix tokens the adapter puts before every input (0 for the other methods)."""
    return int(OmegaConf.select(cfg, "adapter.peft.num_virtual_tokens") or 0)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def override_problems(overrides: list[str]) -> list[str]:
    """Unknown config-group options among command-line overrides, with the valid choices.
    Multirun sweeps (`adapter=lora,ia3`, `choice(...)`) have each of their values checked."""
    problems = []
    for text in overrides:
        group, values = _group_values(text)
        if group is None:
            continue
        options = group_options(group)
        problems += [
            f"{group}={value} is not a known option; choose one of {options}"
            for value in values
            if value not in options
        ]
    return problems


def _group_values(text: str) -> tuple[str | None, list[str]]:
    """(group, the option names it selects) for an override of a conf/ group, else (None, [])."""
    try:
        override = override_parser().parse_override(text)
    except Exception:  # noqa: BLE001 - bad syntax: Hydra itself reports it at compose time
        return None, []
    group = override.key_or_group
    if override.is_delete() or not (CONF_DIR / group).is_dir():
        return None, []
    if not override.is_sweep_override():
        value = override.get_value_element_as_str()
        return (None, []) if "/" in value else (group, [value])
    try:
        return group, [str(v) for v in override.sweep_string_iterator()]
    except Exception:  # noqa: BLE001 - glob(...) needs Hydra's config loader: Hydra expands it
        return None, []


@functools.cache
def override_parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()
