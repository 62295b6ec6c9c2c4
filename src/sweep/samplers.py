"""Optuna samplers and pruners by name (or `module:Class`), built from the sweep file's plain
dicts, so the trial process can rebuild the same pruner from the same dict."""

from __future__ import annotations

import importlib
import statistics

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
BEHIND_BEST = "behind_best"  # the rule across groups, as records name it
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
    """Built from the plain dict so the trial process can rebuild the same pruner; with
    `group_by: PARAM` it judges each trial only against trials with the same value of PARAM,
    and with `behind_best: GAP` it also prunes, across every group, a trial far behind the best."""
    kwargs = dict(pruner_conf.get("kwargs") or {})
    pruner = _class(pruner_conf["name"], PRUNERS)(**kwargs)
    if pruner_conf.get("margin"):
        pruner = MarginPruner(pruner, float(pruner_conf["margin"]))
    key = pruner_conf.get("group_by")
    if key:
        pruner = GroupedPruner(pruner, key)
    if pruner_conf.get("behind_best"):
        warmup = int(kwargs.get("n_warmup_steps", 0))
        pruner = BehindBestPruner(pruner, float(pruner_conf["behind_best"]), warmup)
    return pruner


def pruned_by(pruner, pruner_conf: dict) -> str:
    """The rule that stopped a trial, for its record: `behind_best` or the pruner's name."""
    return getattr(pruner, "last_rule", None) or str(pruner_conf["name"])


def pruned_by_note(rule: str | None) -> str:
    """What a trial's state line adds after PRUNED@STEP: the rule, when it is not the usual
    within-method one (behind_best stops a trial for trailing another method)."""
    return f" {rule}" if rule == BEHIND_BEST else ""


def _finished_values_at(study, step: int, trial) -> list[float]:
    """What the other finished (complete or pruned) trials reported at this check."""
    import optuna

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [
        t.intermediate_values[step]
        for t in study.get_trials(deepcopy=False, states=finished)
        if step in t.intermediate_values and t.number != trial.number
    ]


def _trailing_by(study, reference: float, value: float) -> float:
    """How far value is behind reference, positive when worse in the study's direction."""
    import optuna

    behind = reference - value
    return -behind if study.direction == optuna.study.StudyDirection.MINIMIZE else behind


class MarginPruner:
    """A prune only when the trial trails the median of the other trials' values at the same
    check by more than `margin`: differences the validation set cannot resolve (a few rows) are
    no reason to stop a trial. bench/peers.py showed the need: on the default space the median
    rule stopped the eventual best configuration (0.8125 at the end) at 3/4 of its epoch for
    being 1.2 points behind the one earlier full fine-tuning trial."""

    def __init__(self, pruner, margin: float):
        self.pruner, self.margin = pruner, margin

    def prune(self, study, trial) -> bool:
        if not self.pruner.prune(study, trial):
            return False
        step = trial.last_step
        if step is None:
            return True
        others = _finished_values_at(study, step, trial)
        if not others:
            return True
        behind = _trailing_by(study, statistics.median(others), trial.intermediate_values[step])
        return behind > self.margin


class BehindBestPruner:
    """The wrapped pruner, plus one rule across every group: from `warmup_steps` on, a trial
    that trails the best value any finished trial reported at the same check by more than `gap`
    is pruned, whatever its method. group_by gives each method's first trial a complete hearing
    however far behind it is; bench/peers.py measured what that costs on the default space: the
    first prompt-tuning trial, 0.59-0.60 at half its epoch against full fine-tuning's 0.77
    there, trained another ~50 s to end at 0.61-0.70, never a candidate. `last_rule` says which
    rule decided the last prune (None: the wrapped pruner's)."""

    def __init__(self, pruner, gap: float, warmup_steps: int = 0):
        self.pruner, self.gap, self.warmup_steps = pruner, gap, warmup_steps
        self.last_rule: str | None = None

    def prune(self, study, trial) -> bool:
        self.last_rule = None
        if self.pruner.prune(study, trial):
            return True
        step = trial.last_step
        if step is None or step < self.warmup_steps:
            return False
        others = _finished_values_at(study, step, trial)
        value = trial.intermediate_values[step]
        # Trailing the best value by more than gap: trailing some value by more than gap.
        if any(_trailing_by(study, other, value) > self.gap for other in others):
            self.last_rule = BEHIND_BEST
            return True
        return False


class GroupedPruner:
    """Any pruner, applied within groups: a LoRA trial is compared with LoRA trials, so a method
    that learns slower (prompt tuning) or starts lower is not pruned against full fine-tuning's
    curve, and each method's first trials complete (the wrapped pruner's n_startup_trials count
    per group). Trials are grouped by the value of one param, e.g. `method`."""

    def __init__(self, pruner, key: str):
        self.pruner, self.key = pruner, key

    def prune(self, study, trial) -> bool:
        return self.pruner.prune(_GroupView(study, self.key, trial.params.get(self.key)), trial)


class _GroupView:
    """The study as the wrapped pruner should see it: only the trials of one group. Optuna's
    pruners read trials through get_trials (percentile, median, successive halving) or
    best_trial (wilcoxon); everything else is the study's own."""

    def __init__(self, study, key: str, value):
        self._study, self._key, self._value = study, key, value

    def get_trials(self, deepcopy: bool = True, states=None):
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.params.get(self._key) == self._value]

    @property
    def trials(self):
        return self.get_trials()

    @property
    def best_trial(self):
        import optuna

        complete = self.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            raise ValueError(f"no complete trial with {self._key}={self._value} yet")
        pick = max if self._study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        return pick(complete, key=lambda t: t.value)

    def __getattr__(self, name):
        return getattr(self._study, name)


def grid_space(space: dict) -> dict[str, list]:
    grid = {}
    for name, p in space.items():
        if p.get("type") == "categorical":
            grid[name] = list(p["choices"])
        elif p.get("type") == "int":
            grid[name] = list(range(p["low"], p["high"] + 1, p.get("step", 1)))
    return grid
