"""Ctrl-C / SIGTERM for the sweep driver: the signal only sets a flag, and the driver stops at its
next safe point (between polls of the trial process, between trials). Raising KeyboardInterrupt
from the handler itself could land inside a SQLite write and leave the storage locked while the
driver tries to record the interrupted trial. A second Ctrl-C stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading

_STOP = threading.Event()


def _request_stop(signum, frame) -> None:
    if _STOP.is_set():
        raise KeyboardInterrupt(f"signal {signum} (second)")
    _STOP.set()


@contextlib.contextmanager
def installed():
    """Route SIGINT and SIGTERM (CI and schedulers cancel with SIGTERM) to the stop flag while
    the sweep runs; the previous handlers come back afterwards."""
    _STOP.clear()
    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def requested() -> bool:
    return _STOP.is_set()


def check() -> None:
    """Raise KeyboardInterrupt here, at a safe point, if a stop was requested."""
    if _STOP.is_set():
        raise KeyboardInterrupt("stop requested (Ctrl-C / SIGTERM)")
