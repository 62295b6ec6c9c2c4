"""MLflow and Optuna check a database's schema, at every opening of their store, against the
newest of their migration scripts, which alembic finds by executing each of the ~100 script files:
~0.1 s of every trial's start. The installed packages cannot change under a running fork server,
so it reads the newest revision once and every trial process inherits it. (Private functions of
both libraries: where a version renames one, the trials just read it again.)"""

from __future__ import annotations

import functools

import mlflow.store.db.utils
import optuna.storages._rdb.storage


def cache_schema_heads() -> None:
    """Both libraries' newest schema revision, read once per process from here on."""
    latest = getattr(mlflow.store.db.utils, "_get_latest_schema_revision", None)
    if latest is not None and not hasattr(latest, "__wrapped__"):
        mlflow.store.db.utils._get_latest_schema_revision = functools.cache(latest)
        mlflow.store.db.utils._get_latest_schema_revision()
    manager = getattr(optuna.storages._rdb.storage, "_VersionManager", None)
    head = getattr(manager, "get_head_version", None)
    if head is not None and not hasattr(head, "__wrapped__"):
        manager.get_head_version = _answer_once(head)
        # Its tables in memory, dropped at once: no file, no connection left for a fork to share.
        optuna.storages.RDBStorage("sqlite:///:memory:").engine.dispose()


def _answer_once(method):
    """method(self) computed for the first instance and returned for every later one."""
    answers = []

    @functools.wraps(method)
    def once(self):
        if not answers:
            answers.append(method(self))
        return answers[0]

    return once
