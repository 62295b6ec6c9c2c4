"""Compose configs without the CLI (tests, the sweep driver and its trial processes)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.errors import ConfigError
from src.validate import CONF_DIR, override_problems, raise_if


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> DictConfig:
    """conf/<config_name>.yaml with Hydra overrides applied; unknown group options are refused
    up front, all at once, with the valid choices."""
    overrides = list(overrides)
    raise_if(override_problems(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def compose_checked(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """compose_config, with every composition failure as a ConfigError: Hydra's own errors
    (missing keys, bad override syntax, ...) have many types and multi-line messages."""
    try:
        return compose_config(overrides)
    except ConfigError:
        raise
    except Exception as err:
        lines = str(err).strip().splitlines()
        raise ConfigError([f"{type(err).__name__}: {lines[0] if lines else ''}"]) from err
