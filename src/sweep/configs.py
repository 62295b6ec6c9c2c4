"""The one place a sweep composes configs: the base config, each method choice's config (the
spec's path check and every preflight check read it) and each trial's, which the driver sends to
the trial process with the per-trial settings set. Composing costs ~0.1 s, so configs are cached
per override list in each process; callers get their own copy to edit."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError
from src.sweep.space import method_param
from src.train.config import compose_checked


def trial_config(overrides: list[str] | tuple[str, ...]) -> DictConfig:
    """The config for these overrides (a copy); ConfigError naming every composition problem."""
    cfg, problems = _composed(tuple(overrides))
    if cfg is None:
        raise ConfigError(list(problems))
    return copy.deepcopy(cfg)


def with_settings(cfg: DictConfig, settings: dict[str, object]) -> DictConfig:
    """cfg with these dotted keys set, in place, and added where it lacks them: what Hydra's
    `++key=value` overrides do, without composing again."""
    for key, value in settings.items():
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


@functools.lru_cache(maxsize=128)
def _composed(overrides: tuple[str, ...]) -> tuple[DictConfig | None, tuple[str, ...]]:
    try:
        return compose_checked(list(overrides)), ()
    except ConfigError as err:
        return None, tuple(err.problems)


@dataclass
class Choice:
    """One method choice (None: the space has no method param) and its composed config."""

    name: object
    label: str  # how messages name it: space.method.choices.NAME, or base
    overrides: list[str]
    cfg: DictConfig | None = None
    problems: list[str] = field(default_factory=list)  # why it does not compose


def method_choices(space: dict, base: list[str]) -> list[Choice]:
    """base + each method choice's overrides, composed (once per process)."""
    method = method_param(space)
    options = space[method]["choices"] if method else {None: []}
    out = []
    for name, extra in options.items():
        label = f"space.{method}.choices.{name}" if method else "base"
        choice = Choice(name, label, [*base, *(extra or [])])
        try:
            choice.cfg = trial_config(choice.overrides)
        except ConfigError as err:
            choice.problems = err.problems
        out.append(choice)
    return out


def trial_settings(
    run_name: str, uri: str, quiet: bool, max_time: float | None = None
) -> dict[str, object]:
    """Per-trial settings, dotted key -> value: no end summary or checkpoints (a sweep compares,
    it does not keep), the parent's MLflow store (the fork server's environment may be older than
    ours), and the time this trial may train (Lightning stops gracefully at max_time; the run is
    still measured)."""
    out: dict[str, object] = {
        "summary": False,
        "checkpoint.enabled": False,
        "run_name": run_name,
        "logger.tracking_uri": uri,
    }
    if max_time is not None:
        secs = int(max_time)  # Lightning's string form: a dict would arrive as a DictConfig
        out["trainer.max_time"] = f"00:{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
    if quiet:
        out |= {"trainer.enable_progress_bar": False, "trainer.enable_model_summary": False}
    return out


def as_overrides(settings: dict[str, object]) -> list[str]:
    """Settings as Hydra command-line overrides, for a trial run as `python -m src.train`."""
    text = {True: "true", False: "false"}
    return [f"++{key}={text.get(value, value)}" for key, value in settings.items()]


def job_config(overrides: list[str], settings: dict[str, object]) -> DictConfig:
    """The trial's config, composed here in the driver (the budget check composed the same
    overrides already: cached) with the per-trial settings set on it, so the trial process starts
    without composing (~0.1 s of Hydra)."""
    return with_settings(trial_config(overrides), settings)
