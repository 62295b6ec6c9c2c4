"""Optuna samplers and pruners by name (or `module:Class`), built from the sweep file's plain
dicts, so the trial process can rebuild the same pruner from the same dict."""

from __future__ import annotations

import importlib

SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "nsgaii": "NSGAIISampler",
    "nsgaiii": "NSGAIIISampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
    "gp": "GPSampler",
    "bruteforce": "BruteForceSampler",
}
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "wilcoxon": "WilcoxonPruner",
    "none": "NopPruner",
}


def _class(dotted_or_key: str, registry: dict):
    if dotted_or_key in registry:
        import optuna

        module = optuna.samplers if "Sampler" in registry[dotted_or_key] else optuna.pruners
        return getattr(module, registry[dotted_or_key])
    module, _, attr = dotted_or_key.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_sampler(spec, n_existing: int = 0):
    """The sampler; on resume the seed is shifted by the trials already run, so a resumed study
    does not replay the first invocation's random startup suggestions."""
    conf = spec.sampler
    kwargs = dict(conf.get("kwargs") or {})
    cls = _class(conf["name"], SAMPLERS)
    if conf["name"] == "grid":
        cls = _ask_tell_grid()
        kwargs.setdefault("search_space", grid_space(spec.space))
    if conf.get("seed") is not None:
        kwargs["seed"] = conf["seed"] + n_existing
    return cls(**kwargs)


def _ask_tell_grid():
    """GridSampler calls study.stop() after the last grid point, which Optuna refuses outside
    study.optimize(); the sweep loop checks is_exhausted() before each ask instead."""
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            pass

    return AskTellGridSampler


def build_pruner(pruner_conf: dict):
    """Built from the plain dict so the trial process can rebuild the same pruner."""
    return _class(pruner_conf["name"], PRUNERS)(**dict(pruner_conf.get("kwargs") or {}))


def grid_space(space: dict) -> dict[str, list]:
    grid = {}
    for name, p in space.items():
        if p.get("type") == "categorical":
            grid[name] = list(p["choices"])
        elif p.get("type") == "int":
            grid[name] = list(range(p["low"], p["high"] + 1, p.get("step", 1)))
    return grid
