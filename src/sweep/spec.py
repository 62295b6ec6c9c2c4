"""Sweep files (sweeps/NAME.yaml): load, validate every problem at once, build sampler/pruner.

A file holds `base` (Hydra overrides for every trial), `space` (param -> spec), `sampler`,
`pruner`, `objectives`, `n_trials`, `timeout`. Suggesting values lives in src/sweep/space.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from src.errors import ConfigError
from src.sweep.samplers import PRUNERS, SAMPLERS
from src.sweep.space_check import check_space
from src.train.metrics import CONTRACT_METRICS

SWEEPS_DIR = Path(__file__).resolve().parent.parent.parent / "sweeps"
SIGNATURE_ATTR = "space_signature"  # study user attr: the space the study's trials came from
TOP_KEYS = {
    "description",
    "base",
    "space",
    "sampler",
    "pruner",
    "objectives",
    "n_trials",
    "timeout",
    "enqueue",
    "max_failures",
    "oom",
    "budget",
}
BUDGET_KEYS = ("memory_mb", "step_ms")
# An objective must be a metric train() returns.
METRIC_KEYS = set(CONTRACT_METRICS)


@dataclass
class SweepSpec:
    """A validated sweep file."""

    name: str
    path: Path
    base: list[str]
    space: dict[str, dict]
    sampler: dict = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict = field(default_factory=lambda: {"name": "none"})
    objectives: list[dict] = field(
        default_factory=lambda: [{"metric": "val/acc", "direction": "maximize"}]
    )
    n_trials: int = 10
    timeout: float | None = None
    enqueue: list[dict] = field(default_factory=list)  # first trials' params (known-good starts)
    max_failures: int = 0  # unexpected trial errors tolerated before the sweep stops
    oom_retry: bool = False  # after an OOM, retry once with a smaller micro-batch (estimated)
    # Estimated peak memory / step time a trial may need to be launched (src/sweep/budget.py).
    budget: dict = field(default_factory=dict)

    @property
    def directions(self) -> list[str]:
        return [o["direction"] for o in self.objectives]

    @property
    def metrics(self) -> list[str]:
        return [o["metric"] for o in self.objectives]

    @property
    def prunes(self) -> bool:
        """Single-objective trials report every validation check (the pruner 'none' then never
        prunes, but the curves are kept); Optuna refuses trial.report in multi-objective studies."""
        return len(self.objectives) == 1


def resolve_path(name: str) -> Path:
    """`default` -> sweeps/default.yaml; a path to a .yaml file is taken as is."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    return SWEEPS_DIR / f"{name}.yaml"


def load_spec(name: str, cli_overrides: list[str] = ()) -> SweepSpec:
    """Read and validate a sweep file; raise one ConfigError naming every problem."""
    path = resolve_path(name)
    if not path.is_file():
        known = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
        raise ConfigError([f"sweep={name}: no such file {path}; shipped sweeps are {known}"])
    try:  # OmegaConf's YAML loader, like conf/: it reads 1e-4 as a float (PyYAML: a string)
        raw = OmegaConf.to_container(OmegaConf.load(path)) or {}
    except Exception as err:
        raise ConfigError([f"{path}: not valid YAML: {err}"]) from err
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: must be a mapping with keys {sorted(TOP_KEYS)}"])
    problems = [
        f"unknown top-level key '{k}'; allowed: {sorted(TOP_KEYS)}"
        for k in raw
        if k not in TOP_KEYS
    ]
    spec = SweepSpec(
        name=path.stem,
        path=path,
        base=list(raw.get("base") or []),
        space=dict(raw.get("space") or {}),
        sampler=dict(raw.get("sampler") or {"name": "tpe"}),
        pruner=dict(raw.get("pruner") or {"name": "none"}),
        objectives=list(raw.get("objectives") or [{"metric": "val/acc", "direction": "maximize"}]),
        n_trials=raw.get("n_trials", 10),
        timeout=raw.get("timeout"),
        enqueue=list(raw.get("enqueue") or []),
        max_failures=raw.get("max_failures", 0),
        oom_retry=_oom_retry(raw.get("oom")),
        budget=raw.get("budget") or {},
    )
    problems += _scalar_problems(spec)
    problems += budget_problems(spec.budget)
    problems += _objective_problems(spec.objectives)
    problems += _factory_problems("sampler", spec.sampler, SAMPLERS)
    problems += _factory_problems("pruner", spec.pruner, PRUNERS)
    problems += _group_by_problems(spec.pruner.get("group_by"), spec.space)
    if spec.sampler.get("name") == "grid" and "search_space" not in (
        spec.sampler.get("kwargs") or {}
    ):
        problems += _grid_problems(spec.space)
    problems += [
        f"enqueue[{i}]: param '{k}' is not in space"
        for i, e in enumerate(spec.enqueue)
        for k in (e if isinstance(e, dict) else {"<not a mapping>": 0})
        if k not in spec.space
    ]
    if not spec.space:
        problems.append("space: empty; give at least one parameter")
    else:
        problems += check_space(spec.space, [*spec.base, *cli_overrides])
    if problems:
        raise ConfigError([f"{path.name}: {p}" for p in problems])
    return spec


def _oom_retry(oom):
    """`oom: {retry: true}` in the file; anything else is kept as is for the error message."""
    if oom is None:
        return False
    return oom.get("retry", False) if isinstance(oom, dict) and set(oom) <= {"retry"} else oom


def _scalar_problems(spec: SweepSpec) -> list[str]:
    problems = []
    if not all(isinstance(o, str) for o in spec.base):
        problems.append("base: must be a list of Hydra override strings like 'model=minilm'")
    if not isinstance(spec.n_trials, int) or isinstance(spec.n_trials, bool) or spec.n_trials < 1:
        problems.append(f"n_trials={spec.n_trials!r}: must be an integer >= 1")
    if spec.timeout is not None and (
        not isinstance(spec.timeout, (int, float)) or spec.timeout <= 0
    ):
        problems.append(f"timeout={spec.timeout!r}: must be null or a number of seconds > 0")
    if (
        not isinstance(spec.max_failures, int)
        or isinstance(spec.max_failures, bool)
        or spec.max_failures < 0
    ):
        problems.append(f"max_failures={spec.max_failures!r}: must be an integer >= 0")
    if not isinstance(spec.oom_retry, bool):
        problems.append(f"oom={spec.oom_retry!r}: must be a mapping {{retry: true|false}}")
    return problems


def budget_problems(budget) -> list[str]:
    """budget: {memory_mb: N, step_ms: N}, each a number > 0 or null."""
    if not isinstance(budget, dict):
        return [f"budget={budget!r}: must be a mapping with keys {list(BUDGET_KEYS)}"]
    problems = [
        f"budget.{k}: unknown key; allowed: {', '.join(BUDGET_KEYS)}"
        for k in budget
        if k not in BUDGET_KEYS
    ]
    for key in BUDGET_KEYS:
        value = budget.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            problems.append(f"budget.{key}={value!r}: must be null or a number > 0")
    return problems


def _objective_problems(objectives: list) -> list[str]:
    problems = []
    for i, obj in enumerate(objectives):
        if not isinstance(obj, dict) or set(obj) - {"metric", "direction"}:
            problems.append(
                f"objectives[{i}]: must be {{metric: KEY, direction: maximize|minimize}}"
            )
            continue
        if obj.get("metric") not in METRIC_KEYS:
            problems.append(
                f"objectives[{i}].metric={obj.get('metric')!r} is not a metric train() "
                f"returns; choose one of {sorted(METRIC_KEYS)}"
            )
        if obj.get("direction") not in ("maximize", "minimize"):
            problems.append(
                f"objectives[{i}].direction={obj.get('direction')!r}: must be maximize or minimize"
            )
    if not objectives:
        problems.append("objectives: give at least one")
    return problems


def _factory_problems(kind: str, conf: dict, registry: dict) -> list[str]:
    name = conf.get("name")
    allowed = ["name", "seed", "kwargs"] + (
        ["group_by", "margin", "behind_best"] if kind == "pruner" else []
    )
    extra = set(conf) - set(allowed)
    problems = (
        [f"{kind}: unknown key(s) {sorted(extra)}; allowed: {', '.join(allowed)}"] if extra else []
    )
    if name not in registry and not (isinstance(name, str) and ":" in name):
        problems.append(
            f"{kind}.name={name!r} is unknown; choose one of {sorted(registry)} "
            "or give 'module:Class'"
        )
    elif kind == "pruner" and conf.get("seed") is not None:
        problems.append("pruner: has no seed; put pruner arguments under kwargs")
    if not isinstance(conf.get("kwargs", {}), dict):
        problems.append(f"{kind}.kwargs: must be a mapping of constructor arguments")
    margin = conf.get("margin", 0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        problems.append(f"pruner.margin={margin!r}: must be a number >= 0 (in objective units)")
    gap = conf.get("behind_best")
    if gap is not None and (isinstance(gap, bool) or not isinstance(gap, (int, float)) or gap <= 0):
        problems.append(f"pruner.behind_best={gap!r}: must be a number > 0 (in objective units)")
    return problems


def _group_by_problems(key, space: dict) -> list[str]:
    """pruner.group_by names a categorical param (usually `method`)."""
    if key is None:
        return []
    categorical = [n for n, p in space.items() if isinstance(p, dict) and "choices" in p]
    if key not in categorical:
        return [f"pruner.group_by={key!r}: must name a categorical param of space {categorical}"]
    return []


def _grid_problems(space: dict) -> list[str]:
    return [
        f"space.{name}: the grid sampler needs categorical params or ints with a step"
        for name, p in space.items()
        if isinstance(p, dict) and p.get("type") == "float"
    ]


def space_signature(spec: SweepSpec) -> dict:
    """What a study's trials were sampled from (stored with the study; a resume compares it).
    JSON round trip: it then compares equal to the copy Optuna gives back from a user attr."""
    signature = {"space": spec.space, "base": spec.base, "objectives": spec.objectives}
    return json.loads(json.dumps(signature, default=str))
