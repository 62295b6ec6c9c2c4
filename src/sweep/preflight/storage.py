"""The Optuna storage URL: a supported form, then a usable SQLite file or a reachable server."""

from __future__ import annotations

import os
from pathlib import Path

from src.errors import first_line
from src.sweep.urls import display_url

ALLOWED_STORAGE = (
    "sqlite:///RELATIVE/PATH.db, sqlite:////ABSOLUTE/PATH.db, "
    "postgresql[+driver]://USER:PASSWORD@HOST[:PORT]/DB or "
    "mysql[+driver]://USER:PASSWORD@HOST[:PORT]/DB or grpc://HOST:PORT (serve-storage's proxy)"
)
CONNECT_TIMEOUT_S = 5
# SQLAlchemy names a driver by its dialect; pip names the package differently.
DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "mysqldb": "mysqlclient",
    "pymysql": "pymysql",
    "mysqlconnector": "mysql-connector-python",
}
# The drivers disagree on the name of the connect timeout argument; others get none.
TIMEOUT_ARGS = {
    "psycopg": "connect_timeout",
    "psycopg2": "connect_timeout",
    "pg8000": "timeout",
    "mysqldb": "connect_timeout",
    "pymysql": "connect_timeout",
    "mysqlconnector": "connection_timeout",
}
SQLITE_HEADER = b"SQLite format 3\x00"


def storage_problems(url: str) -> list[str]:
    """The Optuna storage URL: a supported form, then a usable SQLite file or a reachable server."""
    from sqlalchemy.engine import make_url

    if url.startswith("grpc://"):  # serve-storage's proxy: it checks its database itself
        from src.sweep.grpc_proxy import proxy_problems

        return proxy_problems(url)
    where = f"storage={display_url(url)}: "
    try:
        parsed = make_url(url)
    except Exception as err:  # noqa: BLE001 - ArgumentError, or ValueError for a bad port
        looks_like_file = "://" not in url and url.endswith((".db", ".sqlite", ".sqlite3"))
        hint = f" (for a file write sqlite:///{url})" if looks_like_file else ""
        return [
            (f"{where}not a valid database URL ({first_line(err)}){hint}; use {ALLOWED_STORAGE}")
        ]
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return [where + p for p in _sqlite_problems(parsed.database)]
    if backend in ("postgresql", "mysql"):
        return [where + p for p in _server_problems(parsed)]
    return [f"{where}scheme '{parsed.drivername}' is not supported; use {ALLOWED_STORAGE}"]


def _sqlite_problems(database: str | None) -> list[str]:
    # Trials run in their own processes and must all reach the same file.
    if not database or database == ":memory:":
        return [
            (
                "an in-memory database is not shared with the trial processes and is lost at "
                "the end; give a file, e.g. sqlite:///mlruns/optuna.db"
            )
        ]
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
        # A bare postgresql:// means psycopg2 on SQLAlchemy 2.0; the project installs psycopg 3.
        other = " (or write postgresql+psycopg://...)" if dialect.driver == "psycopg2" else ""
        return [
            f"database driver '{dialect.driver}' is not installed ({err}): pip install "
            f"{package}{other}"
        ]
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
        reason = first_line(getattr(err, "orig", None) or err)
        return [f"cannot connect (timeout {CONNECT_TIMEOUT_S} s): {reason}"]
    finally:
        engine.dispose()
