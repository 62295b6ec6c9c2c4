"""A stored study the sweep would resume: same directions, and (unless allowed) the same space."""

from __future__ import annotations

import contextlib
from pathlib import Path

from src.errors import first_line
from src.sweep.preflight.storage import display_url
from src.sweep.spec import SIGNATURE_ATTR, SweepSpec, space_signature
from src.train.config import ABSENT


def study_problems(
    spec: SweepSpec, study_name: str, storage_url: str, allow_space_change: bool
) -> list[str]:
    """A stored study of that name must have the same directions, and (unless allowed) been run
    with the same space: mixing trials from two spaces misleads the sampler and the report."""
    stored, problems = _stored_study(study_name, storage_url)
    if stored is None:
        return problems
    directions, attrs = stored
    where = f"study '{study_name}' in {display_url(storage_url)}"
    if directions != spec.directions:  # Optuna cannot change them: a new study is the only way
        return [
            (
                f"{where} has directions {directions}, the sweep file says {spec.directions}; "
                "pick another study_name"
            )
        ]
    old = attrs.get(SIGNATURE_ATTR)
    if allow_space_change or not isinstance(old, dict):  # studies from before the attr: accepted
        return []
    changes = _signature_changes(old, space_signature(spec))
    if not changes:
        return []
    return [
        (
            f"{where} was run with a different search space ({'; '.join(changes)}); resume with "
            "allow_space_change=true to continue this study anyway, or pick a new study_name"
        )
    ]


def _stored_study(study_name: str, url: str) -> tuple[tuple[list[str], dict] | None, list[str]]:
    """(directions, user attrs) of the stored study, or None; nothing is created in the storage
    (optuna.load_study alone would create the file and tables)."""
    import optuna

    if url.startswith("grpc://"):
        return _stored_study_via_proxy(study_name, url)
    try:
        with _existing_tables(url) as storage:
            if storage is None:
                return None, []
            study = optuna.load_study(
                study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler()
            )
            return ([d.name.lower() for d in study.directions], dict(study.user_attrs)), []
    except KeyError:
        return None, []
    except Exception as err:  # noqa: BLE001 - old schema (RuntimeError), locked or corrupt file
        reason = first_line(err)
        return None, [f"storage={display_url(url)}: cannot read study '{study_name}': {reason}"]


@contextlib.contextmanager
def _existing_tables(url: str):
    """An Optuna RDBStorage on the database's existing tables, or None where it has none (no
    file, no tables): reading must not create them, as Optuna's own storage would."""
    import optuna
    import sqlalchemy
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and not Path(parsed.database).is_file():
        yield None
        return
    engine_kwargs = {"connect_args": {"timeout": 10}} if sqlite else {}
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        if not sqlalchemy.inspect(engine).has_table("studies"):
            yield None
            return
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, skip_table_creation=True
        )
        try:
            yield storage
        finally:
            storage.engine.dispose()
    finally:
        engine.dispose()


def _stored_names(url: str) -> str:
    """'; its studies: a, b' (the first 10), for the error of a study name that is not there;
    read like the study itself, creating nothing."""
    import optuna

    try:
        if url.startswith("grpc://"):
            from src.sweep.grpc_proxy import open_proxy

            proxy = open_proxy(url)
            try:
                names = optuna.get_all_study_names(storage=proxy)
            finally:
                proxy.close()
        else:
            with _existing_tables(url) as storage:
                names = [] if storage is None else optuna.get_all_study_names(storage=storage)
    except Exception:  # noqa: BLE001 - only a hint: the error stands without it
        return ""
    if not names:
        return "; it holds no study yet"
    names = sorted(names)
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return f"; its studies: {', '.join(names[:10])}{more}"


def _stored_study_via_proxy(study_name: str, url: str):
    """Loading through the proxy reads only (it asks for the study's id by name)."""
    import optuna

    from src.sweep.grpc_proxy import open_proxy

    proxy = open_proxy(url)
    try:
        study = optuna.load_study(
            study_name=study_name, storage=proxy, sampler=optuna.samplers.RandomSampler()
        )
        return ([d.name.lower() for d in study.directions], dict(study.user_attrs)), []
    except KeyError:
        return None, []
    except Exception as err:  # noqa: BLE001 - the proxy's or its database's error
        return None, [f"storage={url}: cannot read study '{study_name}': {first_line(err)}"]
    finally:
        proxy.close()


def load_stored_study(study_name: str, storage: str):
    """The stored study for commands that read one (report, status); a ConfigError naming the
    storage or the study when either is not there, and nothing is created in the storage."""
    import optuna

    from src.errors import ConfigError
    from src.sweep.preflight.storage import storage_problems
    from src.sweep.storage import open_storage  # a URL, or the gRPC proxy's client

    problems = storage_problems(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not problems and not stored_study_exists(study_name, storage):
        problems.append(
            f"study_name={study_name}: no such study in {display_url(storage)}"
            f"{_stored_names(storage)}"
        )
    if problems:
        raise ConfigError(problems)
    return optuna.load_study(study_name=study_name, storage=open_storage(storage))


def stored_study_exists(study_name: str, url: str) -> bool:
    """Whether the storage holds that study (read only: nothing is created)."""
    stored, problems = _stored_study(study_name, url)
    return stored is not None and not problems


def _signature_changes(old: dict, new: dict) -> list[str]:
    old_space, new_space = old.get("space") or {}, new["space"]
    changes = []
    added = [k for k in new_space if k not in old_space]
    removed = [k for k in old_space if k not in new_space]
    if added:
        changes.append(f"added {added}")
    if removed:
        changes.append(f"removed {removed}")
    changes += [
        f"changed {name}: {_mapping_diff(old_space[name], p)}"
        for name, p in new_space.items()
        if name in old_space and old_space[name] != p
    ]
    changes += [
        f"{key} {old.get(key)} -> {new[key]}"
        for key in ("base", "objectives")
        if old.get(key) != new[key]
    ]
    return changes


def _mapping_diff(old, new) -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{old} -> {new}"
    keys = [*old, *(k for k in new if k not in old)]
    return ", ".join(
        f"{k} {old.get(k, '(none)')} -> {new.get(k, '(none)')}"
        for k in keys
        if old.get(k, ABSENT) != new.get(k, ABSENT)
    )
