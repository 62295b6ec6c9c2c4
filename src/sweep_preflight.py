"""Preflight: what a sweep needs, checked before any trial runs, every problem in one error.

load_spec checks the sweep file's shape and its config paths. This goes on to what would
otherwise fail trial after trial (or stop the sweep half-way): the Optuna storage URL, every
method choice's composed config and the end points of every sampled value, the model source and
the data, and a stored study the new file would resume.

    preflight(spec, overrides, study_name, storage_url, allow_space_change=False)
"""

from __future__ import annotations

import ast
import copy
import functools
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src import validate
from src.config import compose_checked
from src.errors import ConfigError
from src.sweep_params import evaluate, format_value, method_param
from src.sweep_spec import SweepSpec
from src.validate import CONF_DIR

SIGNATURE_ATTR = "space_signature"  # study user attr: the space the study's trials came from
ALLOWED_STORAGE = ("sqlite:///RELATIVE/PATH.db, sqlite:////ABSOLUTE/PATH.db, "
                   "postgresql[+driver]://USER:PASSWORD@HOST[:PORT]/DB or "
                   "mysql[+driver]://USER:PASSWORD@HOST[:PORT]/DB")
CONNECT_TIMEOUT_S = 5
# SQLAlchemy names a driver by its dialect; pip names the package differently.
DRIVER_PACKAGES = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary",
                   "pg8000": "pg8000", "mysqldb": "mysqlclient", "pymysql": "pymysql",
                   "mysqlconnector": "mysql-connector-python"}
# The drivers disagree on the name of the connect timeout argument; others get none.
TIMEOUT_ARGS = {"psycopg": "connect_timeout", "psycopg2": "connect_timeout", "pg8000": "timeout",
                "mysqldb": "connect_timeout", "pymysql": "connect_timeout",
                "mysqlconnector": "connection_timeout"}
SQLITE_HEADER = b"SQLite format 3\x00"
MAX_DERIVE_COMBOS = 256  # derived values are checked at the corners of the params they use
_ABSENT = object()


# --- everything at once ---------------------------------------------------------------------
def preflight(spec: SweepSpec, overrides: list[str], study_name: str, storage_url: str,
              allow_space_change: bool = False) -> None:
    """Raise one ConfigError naming every problem (storage first); return None when all is well."""
    problems = storage_problems(storage_url)
    if not problems:  # a study can only be read from a usable storage
        problems += study_problems(spec, study_name, storage_url, allow_space_change)
    choices = _choices(spec, list(overrides))  # composed once for both checks (~0.1 s each)
    problems += _config_problems(spec, choices)
    problems += _source_problems(spec, choices)
    validate.raise_if(_unique(problems))


# --- storage ----------------------------------------------------------------------------------
def storage_problems(url: str) -> list[str]:
    """The Optuna storage URL: a supported form, then a usable SQLite file or a reachable server."""
    from sqlalchemy.engine import make_url

    where = f"storage={display_url(url)}: "
    try:
        parsed = make_url(url)
    except Exception as err:  # noqa: BLE001 - ArgumentError, or ValueError for a bad port
        looks_like_file = "://" not in url and url.endswith((".db", ".sqlite", ".sqlite3"))
        hint = f" (for a file write sqlite:///{url})" if looks_like_file else ""
        return [(f"{where}not a valid database URL ({_first_line(err)}){hint}; "
                f"use {ALLOWED_STORAGE}")]
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return [where + p for p in _sqlite_problems(parsed.database)]
    if backend in ("postgresql", "mysql"):
        return [where + p for p in _server_problems(parsed)]
    return [f"{where}scheme '{parsed.drivername}' is not supported; use {ALLOWED_STORAGE}"]


def display_url(url: str) -> str:
    """The URL as messages show it: any password masked."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - malformed: shown as given
        return url
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def _sqlite_problems(database: str | None) -> list[str]:
    # Trials run in their own processes and must all reach the same file.
    if not database or database == ":memory:":
        return [("an in-memory database is not shared with the trial processes and is lost at "
                 "the end; give a file, e.g. sqlite:///mlruns/optuna.db")]
    path = Path(database)
    if path.is_dir():
        return [f"{path} is a folder; give a file in it, e.g. sqlite:///{path / 'optuna.db'}"]
    if path.exists():
        return _sqlite_file_problems(path)
    # Missing: its folder must exist or be creatable (the first existing ancestor decides).
    folder = path.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return [f"cannot create folder {folder}: {existing} is a file"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"cannot create {path}: {existing} is not writable"]
    return []


def _sqlite_file_problems(path: Path) -> list[str]:
    if not path.is_file():
        return [f"{path} is not a regular file"]
    if not os.access(path, os.R_OK | os.W_OK):
        return [f"{path} must be readable and writable"]
    with path.open("rb") as handle:
        head = handle.read(len(SQLITE_HEADER))
    if head and head != SQLITE_HEADER:  # an empty file is a valid, empty database
        return [f"{path} is not an SQLite database"]
    return []


def _server_problems(parsed) -> list[str]:
    from sqlalchemy.exc import NoSuchModuleError

    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return [f"unknown driver '{parsed.drivername}'; use {ALLOWED_STORAGE}"]
    if dialect.is_async:
        return [f"driver '{dialect.driver}' is asynchronous; Optuna needs a synchronous one"]
    try:
        dialect.import_dbapi()
    except ImportError as err:
        package = DRIVER_PACKAGES.get(dialect.driver, dialect.driver)
        return [(f"database driver '{dialect.driver}' is not installed ({err}): "
                f"pip install {package}")]
    return _connect_problems(parsed, dialect.driver)


def _connect_problems(parsed, driver: str) -> list[str]:
    """One connection with a short timeout: a wrong host or password shows up now, not at the
    first trial (NullPool: nothing stays open)."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    timeout = {TIMEOUT_ARGS[driver]: CONNECT_TIMEOUT_S} if driver in TIMEOUT_ARGS else {}
    engine = sqlalchemy.create_engine(parsed, connect_args=timeout, poolclass=NullPool)
    try:
        with engine.connect():
            return []
    except Exception as err:  # noqa: BLE001 - every driver has its own errors
        reason = _first_line(getattr(err, "orig", None) or err)
        return [f"cannot connect (timeout {CONNECT_TIMEOUT_S} s): {reason}"]
    finally:
        engine.dispose()


# --- a stored study -----------------------------------------------------------------------
def space_signature(spec: SweepSpec) -> dict:
    """What a study's trials were sampled from. JSON round trip: it then compares equal to the
    copy Optuna gives back from a user attr."""
    signature = {"space": spec.space, "base": spec.base, "objectives": spec.objectives}
    return json.loads(json.dumps(signature, default=str))


def study_problems(spec: SweepSpec, study_name: str, storage_url: str,
                   allow_space_change: bool) -> list[str]:
    """A stored study of that name must have the same directions, and (unless allowed) been run
    with the same space: mixing trials from two spaces misleads the sampler and the report."""
    stored, problems = _stored_study(study_name, storage_url)
    if stored is None:
        return problems
    directions, attrs = stored
    where = f"study '{study_name}' in {display_url(storage_url)}"
    if directions != spec.directions:  # Optuna cannot change them: a new study is the only way
        return [(f"{where} has directions {directions}, the sweep file says {spec.directions}; "
                 "pick another study_name")]
    old = attrs.get(SIGNATURE_ATTR)
    if allow_space_change or not isinstance(old, dict):  # studies from before the attr: accepted
        return []
    changes = _signature_changes(old, space_signature(spec))
    if not changes:
        return []
    return [(f"{where} was run with a different search space ({'; '.join(changes)}); resume with "
             "allow_space_change=true to continue this study anyway, or pick a new study_name")]


def _stored_study(study_name: str, url: str) -> tuple[tuple[list[str], dict] | None, list[str]]:
    """(directions, user attrs) of the stored study, or None; nothing is created in the storage
    (optuna.load_study alone would create the file and tables)."""
    import optuna
    import sqlalchemy
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and not Path(parsed.database).is_file():
        return None, []
    engine_kwargs = {"connect_args": {"timeout": 10}} if sqlite else {}
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        if not sqlalchemy.inspect(engine).has_table("studies"):
            return None, []
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                             skip_table_creation=True)
        try:
            study = optuna.load_study(study_name=study_name, storage=storage,
                                      sampler=optuna.samplers.RandomSampler())
            return ([d.name.lower() for d in study.directions], dict(study.user_attrs)), []
        except KeyError:
            return None, []
        finally:
            storage.engine.dispose()
    except Exception as err:  # noqa: BLE001 - old schema (RuntimeError), locked or corrupt file
        reason = _first_line(err)
        return None, [f"storage={display_url(url)}: cannot read study '{study_name}': {reason}"]
    finally:
        engine.dispose()


def _signature_changes(old: dict, new: dict) -> list[str]:
    old_space, new_space = old.get("space") or {}, new["space"]
    changes = []
    added = [k for k in new_space if k not in old_space]
    removed = [k for k in old_space if k not in new_space]
    if added:
        changes.append(f"added {added}")
    if removed:
        changes.append(f"removed {removed}")
    changes += [f"changed {name}: {_mapping_diff(old_space[name], p)}"
                for name, p in new_space.items() if name in old_space and old_space[name] != p]
    changes += [f"{key} {old.get(key)} -> {new[key]}" for key in ("base", "objectives")
                if old.get(key) != new[key]]
    return changes


def _mapping_diff(old, new) -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{old} -> {new}"
    keys = [*old, *(k for k in new if k not in old)]
    return ", ".join(f"{k} {old.get(k, '(none)')} -> {new.get(k, '(none)')}" for k in keys
                     if old.get(k, _ABSENT) != new.get(k, _ABSENT))


# --- each method choice's trial config ------------------------------------------------------
@dataclass
class _Choice:
    """One method choice (None: the space has no method param) and its composed config."""

    name: object
    overrides: list[str]
    cfg: DictConfig | None = None
    problems: list[str] = field(default_factory=list)  # why it does not compose


@dataclass
class _Values:
    """Values a param can take under one method choice: all of them (categorical, fixed) or only
    the end points (sampled numbers, derived values)."""

    values: list
    exhaustive: bool


def trial_config_problems(spec: SweepSpec, overrides: list[str]) -> list[str]:
    """Per method choice: value rules and impossible combinations of the composed config, then the
    same checks with every sampled end point, categorical choice and fixed or derived value set."""
    return _config_problems(spec, _choices(spec, list(overrides)))


def _config_problems(spec: SweepSpec, choices: list[_Choice]) -> list[str]:
    method = method_param(spec.space)
    findings = _Findings(method, [c.name for c in choices])
    for choice in choices:
        findings.add(None, choice.name, choice.problems)
        if choice.cfg is None:
            continue
        values, derive_problems = _param_values(spec.space, method, choice.name)
        for name, text in derive_problems:
            findings.add(f"space.{name}", choice.name, [text])
        _check_values(spec.space, choice, values, validate.config_problems, findings)
    return findings.render()


def _choices(spec: SweepSpec, overrides: list[str]) -> list[_Choice]:
    method = method_param(spec.space)
    options = spec.space[method]["choices"] if method else {None: []}
    out = []
    for name, extra in options.items():
        choice = _Choice(name, [*spec.base, *overrides, *(extra or [])])
        try:
            choice.cfg = compose_checked(choice.overrides)
        except ConfigError as err:
            choice.problems = err.problems
        out.append(choice)
    return out


def _param_values(space: dict, method: str | None, choice) -> tuple[dict[str, _Values], list]:
    """Every param that may apply under this choice (file order, as suggest() walks it) with the
    values to check; plus (param, problem) for derived values that cannot be computed."""
    known = {method: _Values([choice], True)} if method else {}
    problems = []
    for name, p in space.items():
        if name == method or not _may_apply(p, known):
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


def _may_apply(p: dict, known: dict[str, _Values]) -> bool:
    """False only when the param surely never applies: a `when` names a param that does not apply,
    or none of the values it can take (when all of them are known)."""
    for key, allowed in (p.get("when") or {}).items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if key not in known:
            return False
        if known[key].exhaustive and not any(v in allowed for v in known[key].values):
            return False
    return True


def _sampled(p: dict) -> _Values:
    if "value" in p:
        return _Values([p["value"]], True)
    if p["type"] == "categorical":
        return _Values(list(p["choices"]), True)
    if p["type"] == "float":  # Optuna suggests floats even for int bounds
        low, high = float(p["low"]), float(p["high"])
        if p.get("step"):  # decimals: 1.05 // 0.5 in floats may land a step short
            low_d, step = Decimal(str(low)), Decimal(str(p["step"]))
            high = float(low_d + (Decimal(str(high)) - low_d) // step * step)
        return _Values([low, high], False)
    step = p.get("step") or 1  # the highest int Optuna can suggest is on the step grid
    return _Values([p["low"], p["low"] + (p["high"] - p["low"]) // step * step], False)


def _derived(expr: str, known: dict[str, _Values],
             space: dict) -> tuple[_Values | None, str | None]:
    """The derived value at every corner of the params it uses. A param it uses that does not
    apply here would stop the whole sweep at the first such trial (suggest() raises)."""
    names = sorted({n.id for n in ast.walk(ast.parse(str(expr), mode="eval"))
                    if isinstance(n, ast.Name) and n.id in space})
    missing = [n for n in names if n not in known]
    if missing:
        return None, (f"derive {expr!r} uses {missing}, which do not apply here: the sweep would "
                      "stop at the first such trial; give this param the same `when` as them")
    out = []
    corners = itertools.product(*(known[n].values for n in names))
    for corner in itertools.islice(corners, MAX_DERIVE_COMBOS):
        point = dict(zip(names, corner))
        try:
            out.append(evaluate(expr, point))
        except (ValueError, ZeroDivisionError, TypeError, OverflowError) as err:
            return None, f"derive {expr!r} fails at {point}: {err}"
    return _Values(_unique(out), all(known[n].exhaustive for n in names)), None


def _check_values(space: dict, choice: _Choice, values: dict[str, _Values],
                  check: Callable[[DictConfig], list[str]], findings: _Findings) -> None:
    """check() on the choice's config, then on a copy with each param value set as a trial would.

    A base value that a param always replaces is never used, so its problems are dropped; a
    value's problems are those about its own key, or new ones (an impossible combination)."""
    base = check(choice.cfg)
    always = [space[n]["path"] for n in values if space[n].get("path") and
              set(space[n].get("when") or {}) <= {method_param(space)}]
    used = [p for p in base if not any(p.startswith(f"{a}=") for a in always)]
    findings.add(None, choice.name, used)
    for name, found in values.items():
        p = space[name]
        if not p.get("path") or isinstance(p.get("choices"), dict):
            continue
        for value in found.values:
            try:
                variant = _variant(choice, p["path"], value)
            except ConfigError as err:
                findings.add(f"space.{name}", choice.name, err.problems)
                continue
            if variant is not None:
                findings.add(f"space.{name}", choice.name, [
                    q for q in check(variant) if q.startswith(f"{p['path']}=") or q not in base])


def _variant(choice: _Choice, path: str, value) -> DictConfig | None:
    """The choice's config with `path=value` as the trial's override sets it; None where there is
    nothing to check (load_spec already reported unknown paths and group options)."""
    if (CONF_DIR / path).is_dir():
        return _group_variant(choice, path, value)
    current = OmegaConf.select(choice.cfg, path, default=_ABSENT, throw_on_resolution_failure=False)
    if current is _ABSENT:
        return None
    variant = copy.deepcopy(choice.cfg)  # ~2 ms; composing again would cost ~0.1 s
    OmegaConf.update(variant, path, _as_override(path, value), merge=False)
    return variant


def _group_variant(choice: _Choice, group: str, value) -> DictConfig | None:
    option = CONF_DIR / group / f"{value}.yaml"
    if not option.is_file():
        return None
    node = OmegaConf.load(option)
    # The option file can be grafted in place unless it pulls in other files, or overrides refine
    # the group's keys (they would be lost) or select an experiment (it may set any key).
    keys = [o.lstrip("+~").partition("=")[0] for o in choice.overrides]
    if "defaults" in node or "@package" in option.read_text()[:200] or \
            any(k.startswith(f"{group}.") or k.split("/")[0] == "experiment" for k in keys):
        return compose_checked([*choice.overrides, f"{group}={format_value(value)}"])
    variant = copy.deepcopy(choice.cfg)
    OmegaConf.update(variant, group, node, merge=False)
    return variant


@functools.cache
def _override_parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _as_override(path: str, value):
    """The value a trial gets: suggest() writes `path=VALUE` and Hydra parses it back (a string
    choice '5' arrives as the int 5)."""
    try:
        return _override_parser().parse_override(f"{path}={format_value(value)}").value()
    except Exception:  # noqa: BLE001 - unparsable: the trial fails at compose; check as given
        return value


class _Findings:
    """Problems per method choice, merged: one found under every choice is said once."""

    def __init__(self, method: str | None, choices: list):
        self.method, self.choices = method, choices
        self.found: dict[tuple[str | None, str], list] = {}

    def add(self, where: str | None, choice, problems: list[str]) -> None:
        for problem in problems:
            seen = self.found.setdefault((where, problem), [])
            if choice not in seen:
                seen.append(choice)

    def render(self) -> list[str]:
        out = []
        for (where, problem), choices in self.found.items():
            everywhere = self.method is None or set(choices) == set(self.choices)
            if where is None and (self.method is None or (everywhere and len(self.choices) > 1)):
                out.append(f"base: {problem}")
            elif where is None:
                out += [f"space.{self.method}.choices.{c}: {problem}" for c in choices]
            elif everywhere:
                out.append(f"{where}: {problem}")
            elif len(choices) == 1:
                out.append(f"{where} (when {self.method}={choices[0]}): {problem}")
            else:
                listed = ", ".join(map(str, choices))
                out.append(f"{where} (when {self.method} in [{listed}]): {problem}")
        return out


# --- model source and data --------------------------------------------------------------------
def source_problems(spec: SweepSpec, overrides: list[str]) -> list[str]:
    """Model source, tokenizer and data splits, once per distinct model and data config (loading is
    what finds missing files and columns); the layer count then bounds every layer param. Method
    choices that do not compose are skipped: trial_config_problems reports them."""
    return _source_problems(spec, _choices(spec, list(overrides)))


def _source_problems(spec: SweepSpec, choices: list[_Choice]) -> list[str]:
    method = method_param(spec.space)
    findings = _Findings(method, [c.name for c in choices])
    model_seen: dict[str, int | None] = {}
    data_seen: set[str] = set()
    problems = []
    for choice in choices:
        if choice.cfg is None:
            continue
        cfg = choice.cfg
        model_key = _key(cfg.model)
        if model_key not in model_seen:
            found, model_seen[model_key] = _model_source(cfg)
            problems += found
        data_key = _key(cfg.data) + f"|{cfg.task.name}|{cfg.seed}"
        if data_key not in data_seen:
            data_seen.add(data_key)
            problems += _data_source(cfg)
        n_layers = model_seen[model_key]
        if n_layers is not None:
            values, _ = _param_values(spec.space, method, choice.name)
            _check_values(spec.space, choice, values,
                          functools.partial(validate.model_problems, n_layers=n_layers), findings)
    return _unique([*problems, *findings.render()])


def _model_source(cfg: DictConfig) -> tuple[list[str], int | None]:
    """Problems with the model and its tokenizer, and the model's layer count (None: unknown)."""
    from src import models

    what = f"model={cfg.model.get('name')}"
    missing = _missing_values(cfg.model, "model")
    if missing:
        return missing, None
    path, problems = _attempt(what, models.resolve_source, cfg.model)
    if path is None:
        return problems, None
    _, problems = _attempt(f"{what} tokenizer", models.resolve_tokenizer_path, cfg.model, path)
    return problems, models.num_hidden_layers(path)


def _data_source(cfg: DictConfig) -> list[str]:
    from src.tasks import TASKS

    missing = _missing_values(cfg.data, "data")
    if missing:
        return missing
    load = TASKS[cfg.task.name].load_splits
    _, problems = _attempt(f"data={cfg.data.get('name')}", load, cfg, cfg.seed)
    return problems


def _attempt(what: str, fn, *args):
    """(fn(*args), []) or (None, problems): a ConfigError's own, else one line naming `what`."""
    try:
        return fn(*args), []
    except ConfigError as err:
        return None, err.problems
    except Exception as err:  # noqa: BLE001 - sources fail in many ways: report, do not crash
        return None, [f"{what}: {type(err).__name__}: {_first_line(err)}"]


def _missing_values(node: DictConfig, prefix: str) -> list[str]:
    """Keys still at ??? (must be given): resolving the source would fail on them."""

    def walk(value, key):
        if value == "???":
            yield key
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{key}.{k}")

    return [f"{key}=??? must be given (in the sweep's base or on the command line)"
            for key in walk(OmegaConf.to_container(node, resolve=False), prefix)]


def _key(node: DictConfig) -> str:
    # Unresolved: interpolations to other keys are the same across choices, and ??? does not raise.
    return json.dumps(OmegaConf.to_container(node, resolve=False), sort_keys=True, default=str)


# --- helpers ----------------------------------------------------------------------------------
def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))
