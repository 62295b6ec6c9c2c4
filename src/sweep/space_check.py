"""Checking a search space: spec shape, ranges, `when`/`derive` references, and config paths
(checked on the config composed under each method choice)."""

from __future__ import annotations

from omegaconf import OmegaConf

from src.sweep.configs import method_choices
from src.sweep.space import PARAM_KEYS, conditions, evaluate, param_values
from src.train.config import ABSENT, CONF_DIR, override_problems


def check_space(space: dict, base: list[str]) -> list[str]:
    """Every problem in the space: spec shape, ranges, `when`/`derive` references, and config
    paths (checked by composing the base config under each method choice)."""
    problems, seen = [], {}
    for name, p in space.items():
        where = f"space.{name}"
        if not isinstance(p, dict):
            problems.append(f"{where}: must be a mapping (type/value/derive, path, ...)")
            continue
        problems += [
            f"{where}: unknown key '{k}'; allowed: {sorted(PARAM_KEYS)}"
            for k in p
            if k not in PARAM_KEYS
        ]
        problems += _shape_problems(where, p)
        problems += _reference_problems(where, p, seen)
        seen[name] = p
    if not problems:
        problems += _path_problems(space, base)
    return problems


def _shape_problems(where: str, p: dict) -> list[str]:
    kinds = [k for k in ("type", "value", "derive") if k in p]
    if len(kinds) != 1:
        return [
            f"{where}: give exactly one of type (sampled), value (fixed) or derive; "
            f"got {kinds or 'none'}"
        ]
    if "path" not in p and "type" not in p:
        return [f"{where}: a fixed or derived value needs a path (the config key it sets)"]
    if "type" not in p:
        return []
    kind = p["type"]
    if kind in ("float", "int"):
        low, high = p.get("low"), p.get("high")
        number = int if kind == "int" else (int, float)
        if not isinstance(low, number) or not isinstance(high, number):
            return [f"{where}: low and high must be {kind}s, got low={low!r} high={high!r}"]
        problems = [] if low < high else [f"{where}: empty range low={low} >= high={high}"]
        if p.get("log") and low <= 0:
            problems.append(f"{where}: log scale needs low > 0, got {low}")
        if p.get("step") is not None and (not isinstance(p["step"], number) or p["step"] <= 0):
            problems.append(f"{where}: step must be a {kind} > 0")
        return problems
    if kind == "categorical":
        choices = p.get("choices")
        if not choices or not isinstance(choices, (list, dict)):
            return [f"{where}: categorical needs a non-empty list (or mapping) of choices"]
        if isinstance(choices, dict) and not all(
            isinstance(v, list) and all(isinstance(o, str) for o in v) for v in choices.values()
        ):
            return [f"{where}: each choice must map to a list of override strings"]
        return []
    return [f"{where}: type={kind!r} is unknown; choose float, int or categorical"]


def _reference_problems(where: str, p: dict, seen: dict) -> list[str]:
    problems = []
    for key, allowed in conditions(p).items():
        if key not in seen:
            problems.append(f"{where}.when: '{key}' is not a param defined above")
            continue
        choices = seen[key].get("choices")
        bad = [a for a in allowed if choices is not None and a not in choices]
        if bad:
            problems.append(f"{where}.when.{key}: {bad} not among its choices {list(choices)}")
    if "derive" in p:
        try:  # evaluate with 1 for every known name: catches syntax and unknown names
            evaluate(p["derive"], {k: 1 for k in seen})
        except (ValueError, SyntaxError, ZeroDivisionError) as err:
            problems.append(f"{where}.derive={p['derive']!r}: {err}")
    return problems


def _path_problems(space: dict, base: list[str]) -> list[str]:
    """Each param that may apply under a method choice must set a key of that choice's config."""
    problems = []
    for choice in method_choices(space, base):
        if choice.cfg is None:
            problems += [f"{choice.label}: {p}" for p in choice.problems]
            continue
        for name in param_values(space, choice.name)[0]:
            if space[name].get("path"):
                problems += _one_path_problems(f"space.{name}", space[name], choice)
    return list(dict.fromkeys(problems))


def _one_path_problems(where: str, p: dict, choice) -> list[str]:
    path = p["path"]
    if (CONF_DIR / path).is_dir():  # a config group: every choice must be one of its options
        values = p.get("choices") or [p.get("value")]
        return [f"{where}: {msg}" for msg in override_problems([f"{path}={v}" for v in values])]
    if OmegaConf.select(choice.cfg, path, default=ABSENT) is ABSENT:
        suffix = f" when {choice.name}" if choice.name is not None else ""
        return [f"{where}: path '{path}' is not a key of the composed config{suffix}"]
    return []
