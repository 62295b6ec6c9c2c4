"""Compose configs without the CLI (tests, the sweep driver and its trial processes)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.validate import CONF_DIR, override_problems, raise_if


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> DictConfig:
    """conf/<config_name>.yaml with Hydra overrides applied; unknown group options are refused
    up front, all at once, with the valid choices."""
    overrides = list(overrides)
    raise_if(override_problems(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)
