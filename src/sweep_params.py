"""The search space: check it against the real config, and turn a trial's suggestions into
Hydra overrides (conditional, fixed and derived params included).

Param spec (one of type / value / derive):
  {type: float, low, high, log: true, path: optim.lr}
  {type: int, low, high, step: 4, path: adapter.peft.r}
  {type: categorical, choices: [a, b], path: precision}     # a group name works as a path
  {type: categorical, choices: {lora: [adapter=lora], qlora: [adapter=lora, quant=nf4]}}
  {value: 0.05, path: adapter.peft.lora_dropout}            # fixed
  {derive: "2 * rank", path: adapter.peft.lora_alpha}       # over params defined above
  optional on any: when: {method: [lora, qlora]}            # only when an earlier param matches
  a sampled param without path sets nothing itself: it only feeds `when`/`derive`
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from src.errors import ConfigError
from src.validate import CONF_DIR, override_problems

PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "path", "when", "value", "derive"}
_ABSENT = object()
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCS = {"min": min, "max": max, "int": int, "round": round, "abs": abs}


@dataclass
class Suggestion:
    """What one trial runs: every active param's value and the overrides they produce."""

    values: dict = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    fixed: dict = field(default_factory=dict)  # fixed and derived values (not Optuna params)


def method_param(space: dict) -> str | None:
    """The categorical whose choices map to override lists (at most one is expected)."""
    for name, p in space.items():
        if isinstance(p, dict) and isinstance(p.get("choices"), dict):
            return name
    return None


# --- suggesting ---------------------------------------------------------------------------
def suggest(trial, space: dict) -> Suggestion:
    """Ask the trial for every param that applies, in file order (later params may depend on
    earlier ones through `when` and `derive`)."""
    out = Suggestion()
    for name, p in space.items():
        if not _active(p, out.values):
            continue
        if "derive" in p:
            value = evaluate(p["derive"], out.values)
            out.fixed[name] = value
        elif "value" in p:
            value = out.fixed[name] = p["value"]
        else:
            value = _ask(trial, name, p)
        out.values[name] = value
        choices = p.get("choices")
        if isinstance(choices, dict):
            out.overrides += list(choices[value] or [])
        elif p.get("path"):  # no path: a helper that only feeds `when`/`derive`
            out.overrides.append(f"{p['path']}={format_value(value)}")
    return out


def _ask(trial, name: str, p: dict):
    if p["type"] == "float":
        return trial.suggest_float(name, p["low"], p["high"], log=bool(p.get("log", False)),
                                   step=p.get("step"))
    if p["type"] == "int":
        return trial.suggest_int(name, p["low"], p["high"], step=p.get("step", 1),
                                 log=bool(p.get("log", False)))
    return trial.suggest_categorical(name, list(p["choices"]))


def _active(p: dict, values: dict) -> bool:
    for key, allowed in (p.get("when") or {}).items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if values.get(key, _ABSENT) not in allowed:
            return False
    return True


def format_value(value) -> str:
    """A Hydra override value: bools/None as YAML words, odd strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return text if re.fullmatch(r"[\w.\-+/:]+", text) else "'" + text.replace("'", "\\'") + "'"


def evaluate(expr: str, names: dict):
    """A tiny arithmetic language over earlier params: numbers, + - * / // % **, min/max/int/
    round/abs. Walking the AST ourselves means no eval() of arbitrary code."""

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ValueError(f"'{node.id}' is not a param defined above")
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
                and not node.keywords:
            return _FUNCS[node.func.id](*[walk(a) for a in node.args])
        raise ValueError(f"'{ast.unparse(node)}' is not allowed (numbers, params, + - * / // % **, "
                         f"{', '.join(_FUNCS)})")

    return walk(ast.parse(str(expr), mode="eval"))


# --- checking -----------------------------------------------------------------------------
def check_space(space: dict, base: list[str]) -> list[str]:
    """Every problem in the space: spec shape, ranges, `when`/`derive` references, and config
    paths (checked by composing the base config under each method choice)."""
    problems, seen = [], {}
    for name, p in space.items():
        where = f"space.{name}"
        if not isinstance(p, dict):
            problems.append(f"{where}: must be a mapping (type/value/derive, path, ...)")
            continue
        problems += [f"{where}: unknown key '{k}'; allowed: {sorted(PARAM_KEYS)}" for k in p if k not in PARAM_KEYS]
        problems += _shape_problems(where, p)
        problems += _reference_problems(where, p, seen)
        seen[name] = p
    if not problems:
        problems += _path_problems(space, base)
    return problems


def _shape_problems(where: str, p: dict) -> list[str]:
    kinds = [k for k in ("type", "value", "derive") if k in p]
    if len(kinds) != 1:
        return [f"{where}: give exactly one of type (sampled), value (fixed) or derive; got {kinds or 'none'}"]
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
        if isinstance(choices, dict) and not all(isinstance(v, list) and all(isinstance(o, str) for o in v)
                                                 for v in choices.values()):
            return [f"{where}: each choice must map to a list of override strings"]
        return []
    return [f"{where}: type={kind!r} is unknown; choose float, int or categorical"]


def _reference_problems(where: str, p: dict, seen: dict) -> list[str]:
    problems = []
    for key, allowed in (p.get("when") or {}).items():
        if key not in seen:
            problems.append(f"{where}.when: '{key}' is not a param defined above")
            continue
        choices = seen[key].get("choices")
        allowed = allowed if isinstance(allowed, list) else [allowed]
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
    from src.config import compose_checked

    method = method_param(space)
    choices = dict(space[method]["choices"]) if method else {None: []}
    problems = []
    for choice, overrides in choices.items():
        label = f"space.{method}.choices.{choice}" if method else "base"
        try:
            cfg = compose_checked([*base, *overrides])
        except ConfigError as err:
            problems += [f"{label}: {p}" for p in err.problems]
            continue
        for name, p in space.items():
            allowed = (p.get("when") or {}).get(method, [choice]) if method else [choice]
            allowed = allowed if isinstance(allowed, list) else [allowed]
            if name != method and choice in allowed and p.get("path"):
                problems += _one_path_problems(f"space.{name}", p, cfg, choice)
    return sorted(set(problems), key=problems.index)


def _one_path_problems(where: str, p: dict, cfg, choice) -> list[str]:
    path = p["path"]
    if (CONF_DIR / path).is_dir():  # a config group: every choice must be one of its options
        values = p.get("choices") or [p.get("value")]
        return [f"{where}: {msg}" for msg in override_problems([f"{path}={v}" for v in values])]
    if OmegaConf.select(cfg, path, default=_ABSENT) is _ABSENT:
        suffix = f" when {choice}" if choice else ""
        return [f"{where}: path '{path}' is not a key of the composed config{suffix}"]
    return []
