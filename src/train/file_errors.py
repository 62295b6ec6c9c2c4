"""Why a user's data file could not be loaded, in words a user can act on.

datasets' loaders fail on a bad file with 'An error occurred while generating the dataset', which
names neither the file nor the line, and the parser underneath (pandas, pyarrow) counts rows in its
own way (0-based, per block). So when a loader fails, the file is read again with a simple
per-format locator that finds the first bad line, and the parser's own message is kept beside it.
"""

from __future__ import annotations

import csv
import json

import pyarrow as pa
from datasets.exceptions import DatasetsError

from src.errors import first_line

# The loader's name -> what the message calls the format.
FORMAT_NAMES = {"csv": "csv", "json": "json", "parquet": "parquet"}


def parser_error(err: BaseException) -> BaseException | None:
    """The parser's own exception under datasets' wrappers, if err is a failure to parse a file
    (anything else, such as a missing dependency or a full disk, is not the user's file's fault)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if not isinstance(err, DatasetsError):
            return err if isinstance(err, (ValueError, pa.ArrowException)) else None
        err = err.__cause__ or err.__context__
    return None


def describe_load_failure(key: str, loader: str, path: str, cause: BaseException) -> str:
    """One problem line: the config key and file, where the file is broken, and the parser's
    reason (the locator's line first: the parser's row numbers do not match the file's lines)."""
    fmt = FORMAT_NAMES.get(loader, loader)
    said = first_line(cause)
    found = locate(loader, path)
    if found is None:
        return f"{key}={path}: could not be read as {fmt}; parser said: {said}"
    line, reason = found
    where = f"at line {line}" if line is not None else "file"
    if said in reason:  # the locator's reader said the same (parquet: both are pyarrow)
        return f"{key}={path}: malformed {fmt} {where}: {said}"
    return f"{key}={path}: malformed {fmt} {where}: {reason}; parser said: {said}"


def locate(loader: str, path: str) -> tuple[int | None, str] | None:
    """(1-based line or None, reason) of the first defect the locator finds, or None. Never
    raises: it only adds detail to an error that is being reported anyway."""
    try:
        if loader == "parquet":
            return _parquet_defect(path)
        if loader in ("csv", "json"):
            return _utf8_defect(path) or (_csv_defect if loader == "csv" else _json_defect)(path)
    except Exception:  # noqa: BLE001 - a locator failing must not hide the original error
        return None
    return None


def _utf8_defect(path: str) -> tuple[int, str] | None:
    """Both text loaders read UTF-8 only; a latin-1 file fails with a byte offset, not a line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return number, (
                    f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column "
                    f"{err.start + 1}); save the file as UTF-8"
                )
    return None


def _csv_defect(path: str) -> tuple[int, str] | None:
    """Python's csv module in strict mode, tracking where each record starts: an unterminated
    quote runs to the end of the file, and the line it was opened on is the useful one."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, strict=True)
        start, width = 1, None
        try:
            for row in reader:
                if row and width is None:
                    width = len(row)  # the header, as pandas takes it: the first non-blank line
                elif row and len(row) > width:
                    return start, f"expected {width} fields (as in the header), saw {len(row)}"
                start = reader.line_num + 1
        except csv.Error as err:
            if "unexpected end of data" in str(err):
                return start, "unexpected end of data (unterminated quote?)"
            if reader.line_num != start:
                return reader.line_num, f"{err} (in the record that starts at line {start})"
            return start, str(err)
    return None


def _json_defect(path: str) -> tuple[int, str] | None:
    """datasets' json loader reads JSON lines (one object per line) or one document holding an
    array of rows; each is parsed the same way here, with json's own line numbers."""
    with open(path, encoding="utf-8") as f:
        text_start = next((line.lstrip() for line in f if line.strip()), "")
        f.seek(0)
        if text_start.startswith("["):
            try:
                json.load(f)
            except json.JSONDecodeError as err:
                return err.lineno, f"{err.msg} (column {err.colno})"
            return None
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue  # the loader skips blank lines too
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                return number, f"{err.msg} (column {err.colno})"
            if not isinstance(row, dict):
                return number, f"expected one JSON object per line, found {line.strip()[:40]!r}"
    return None


def _parquet_defect(path: str) -> tuple[None, str] | None:
    """Parquet has no lines: pyarrow's own reading of the file is the most precise reason."""
    import pyarrow.parquet as pq

    try:
        pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - any failure here is the reason to report
        return None, first_line(err)
    return None
