"""Ctrl-C / SIGTERM for the sweep driver: the signal only sets a flag, and the driver stops at its
next safe point (between polls of the trial process, between trials). Raising KeyboardInterrupt
from the handler itself could land inside a SQLite write and leave the storage locked while the
driver tries to record the interrupted trial. A second Ctrl-C stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading

_STOP = threading.Event()
_RECEIVED: list[int] = []  # the signal that asked to stop


def _request_stop(signum, frame) -> None:
    if _STOP.is_set():
        raise KeyboardInterrupt(f"signal {signum} (second)")
    _RECEIVED[:] = [signum]
    _STOP.set()


@contextlib.contextmanager
def installed(also: tuple[int, ...] = ()):
    """Route SIGINT and SIGTERM (CI and schedulers cancel with SIGTERM), and the signals in
    `also` (a SLURM worker's pre-emption warning), to the stop flag while the sweep runs; the
    previous handlers come back afterwards."""
    _STOP.clear()
    _RECEIVED.clear()
    signals = (signal.SIGINT, signal.SIGTERM, *also)
    previous = {sig: signal.signal(sig, _request_stop) for sig in signals}
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


def received() -> int | None:
    """Which signal requested the stop (None: none did)."""
    return _RECEIVED[0] if _RECEIVED else None
