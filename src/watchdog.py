"""A daemon thread that ends this process when the process it works for is gone, instead of
leaving it to compute for nobody (a trial whose sweep driver was killed, a data-parallel rank
whose rank 0 was)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def exit_when(gone: Callable[[], bool], interval_s: float, name: str, last_words=None) -> None:
    """Poll gone() every interval_s; once it is true, call last_words() (best effort) and exit
    with status 1 at once (os._exit: no cleanup that could wait on the lost process)."""

    def watch():
        while not gone():
            time.sleep(interval_s)
        try:
            if last_words is not None:
                last_words()
        finally:
            os._exit(1)

    threading.Thread(target=watch, name=name, daemon=True).start()
