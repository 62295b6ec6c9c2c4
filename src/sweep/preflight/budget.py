"""Methods that can never fit the budget: each method choice estimated at its enqueued starts
(its first trials) and then at its smallest settings (every sampled number at its low end, every
categorical string tried), a warning where none of them fits, since then every trial of that
method will be pruned over_budget. A method is estimated until one of its combinations fits
(then it can run: no warning), through the trials' estimate cache: trying the enqueued starts
first makes their own budget checks cache hits (a simulation costs ~0.5-1 s of a trial's start;
the trial adds the step time, timed then: these checks run while trial #0 trains).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from src.sweep.budget import Budget
from src.sweep.configs import Choice
from src.sweep.space import format_value, method_param, param_values, suggest

MAX_COMBINATIONS = 2  # categorical strings tried per method (precision choices, ...)


def method_budget_checks(spec, choices: list[Choice], budget: Budget) -> Iterator[str | None]:
    """One method at a time (a sweep's driver runs them while its first trial starts): the
    method's warning, or None when one of its combinations fits."""
    if budget.memory_mb is None:
        return
    from src.sweep.budget import estimated, training_sequence
    from src.sweep.configs import trial_config

    for choice in choices:
        if choice.cfg is None:
            continue
        smallest = None
        tries = [*_enqueued_settings(spec, choice), *_smallest_settings(spec.space, choice.name)]
        for extra in tries:
            try:
                cfg = trial_config([*choice.overrides, *extra])
                peak = estimated(cfg, training_sequence(cfg), timed=False).needed_mb
            except Exception:  # noqa: BLE001 - the trial's own estimate will say more
                continue
            smallest = peak if smallest is None else min(smallest, peak)
            if smallest <= budget.memory_mb:
                break
        if smallest is not None and smallest > budget.memory_mb:
            yield (
                f"{choice.label}: estimated peak {smallest:,.0f} MB at the smallest settings tried "
                f"exceeds the memory budget {budget.memory_mb:,.0f} MB ({budget.source}); every "
                "trial of it will be pruned over_budget"
            )
        else:
            yield None


def _enqueued_settings(spec, choice: Choice) -> list[list[str]]:
    """Override lists of this method's enqueued starts, beyond the method's own overrides."""
    import optuna

    method = method_param(spec.space)
    out = []
    for params in spec.enqueue:
        if method and params.get(method) != choice.name:
            continue
        try:
            suggestion = suggest(optuna.trial.FixedTrial(params), spec.space)
        except ValueError:  # the start leaves a param to the sampler: no single config
            continue
        out.append([o for o in suggestion.overrides if o not in choice.overrides])
    return out


def _smallest_settings(space: dict, choice) -> list[list[str]]:
    """Override lists: numbers at their lowest value, each combination of string choices."""
    values, _ = param_values(space, choice)
    numeric, strings = [], []
    for name, found in values.items():
        path = space[name].get("path")
        if not path or "derive" in space[name] or not found.values:
            continue
        if all(isinstance(v, (int, float)) for v in found.values):
            numeric.append(f"{path}={format_value(min(found.values))}")
        else:
            strings.append([f"{path}={format_value(v)}" for v in found.values])
    combos = itertools.islice(itertools.product(*strings), MAX_COMBINATIONS)
    return [[*numeric, *combo] for combo in combos]
