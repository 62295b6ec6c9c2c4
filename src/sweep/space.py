"""The search space: turn a trial's suggestions into Hydra overrides (conditional, fixed and
derived params included), and say which values each param can take under each method choice
(what src/sweep/space_check.py and the preflight check). The `when` rule is written once here.

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
import itertools
import operator
import re
from dataclasses import dataclass, field
from decimal import Decimal

PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "path", "when", "value", "derive"}
MAX_DERIVE_COMBOS = 256  # derived values are checked at the corners of the params they use
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
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
        if not applies(p, out.values):
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
        return trial.suggest_float(
            name, p["low"], p["high"], log=bool(p.get("log", False)), step=p.get("step")
        )
    if p["type"] == "int":
        return trial.suggest_int(
            name, p["low"], p["high"], step=p.get("step", 1), log=bool(p.get("log", False))
        )
    return trial.suggest_categorical(name, list(p["choices"]))


# --- `when`: the one rule for whether a param applies ------------------------------------------
@dataclass
class Values:
    """Values a param can take: all of them (exhaustive: categorical, fixed, one trial's value)
    or only its end points (sampled numbers, derived values)."""

    values: list
    exhaustive: bool


def conditions(p: dict) -> dict[str, list]:
    """`when: {method: lora}` and `when: {method: [lora, qlora]}` as {param: allowed values}."""
    return {k: v if isinstance(v, list) else [v] for k, v in (p.get("when") or {}).items()}


def may_apply(p: dict, known: dict[str, Values]) -> bool:
    """False only when the param surely never applies: a `when` names a param that does not
    apply, or none of the values it can take (when all of them are known)."""
    for key, allowed in conditions(p).items():
        if key not in known:
            return False
        if known[key].exhaustive and not any(v in allowed for v in known[key].values):
            return False
    return True


def applies(p: dict, values: dict) -> bool:
    """Whether p applies in a trial whose earlier params took `values`."""
    return may_apply(p, {k: Values([v], True) for k, v in values.items()})


def param_values(space: dict, choice=None) -> tuple[dict[str, Values], list[tuple[str, str]]]:
    """Every param that may apply under one method choice (file order, as suggest() walks it)
    with the values to check; plus (param, problem) for derived values that cannot be computed.
    Without a method param, choice is None and every param is walked."""
    method = method_param(space)
    known = {method: Values([choice], True)} if method else {}
    problems = []
    for name, p in space.items():
        if name == method or not may_apply(p, known):
            continue
        if "derive" in p:
            values, problem = _derived(p["derive"], known, space)
            if problem:
                problems.append((name, problem))
            if values is None:
                continue
        else:
            values = _sampled(p)
        known[name] = values
    known.pop(method, None)
    return known, problems


def _sampled(p: dict) -> Values:
    if "value" in p:
        return Values([p["value"]], True)
    if p["type"] == "categorical":
        return Values(list(p["choices"]), True)
    if p["type"] == "float":  # Optuna suggests floats even for int bounds
        low, high = float(p["low"]), float(p["high"])
        if p.get("step"):  # decimals: 1.05 // 0.5 in floats may land a step short
            low_d, step = Decimal(str(low)), Decimal(str(p["step"]))
            high = float(low_d + (Decimal(str(high)) - low_d) // step * step)
        return Values([low, high], False)
    step = p.get("step") or 1  # the highest int Optuna can suggest is on the step grid
    return Values([p["low"], p["low"] + (p["high"] - p["low"]) // step * step], False)


def _derived(expr: str, known: dict[str, Values], space: dict) -> tuple[Values | None, str | None]:
    """The derived value at every corner of the params it uses. A param it uses that does not
    apply here would stop the whole sweep at the first such trial (suggest() raises)."""
    names = sorted(
        {
            n.id
            for n in ast.walk(ast.parse(str(expr), mode="eval"))
            if isinstance(n, ast.Name) and n.id in space
        }
    )
    missing = [n for n in names if n not in known]
    if missing:
        return None, (
            f"derive {expr!r} uses {missing}, which do not apply here: the sweep would "
            "stop at the first such trial; give this param the same `when` as them"
        )
    out = []
    corners = itertools.product(*(known[n].values for n in names))
    for corner in itertools.islice(corners, MAX_DERIVE_COMBOS):
        point = dict(zip(names, corner, strict=True))
        try:
            out.append(evaluate(expr, point))
        except (ValueError, ZeroDivisionError, TypeError, OverflowError) as err:
            return None, f"derive {expr!r} fails at {point}: {err}"
    return Values(list(dict.fromkeys(out)), all(known[n].exhaustive for n in names)), None


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
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS
            and not node.keywords
        ):
            return _FUNCS[node.func.id](*[walk(a) for a in node.args])
        raise ValueError(
            f"'{ast.unparse(node)}' is not allowed (numbers, params, + - * / // % **, "
            f"{', '.join(_FUNCS)})"
        )

    return walk(ast.parse(str(expr), mode="eval"))
