"""glibc's malloc, which serves torch's CPU allocator, as it bears on resident memory: which
blocks it serves from its heaps (which keep freed memory and fragment) and which it maps on
their own (given back when freed, faulted in afresh each time)."""

from __future__ import annotations

import contextlib
import ctypes
import os

# Blocks of the mmap threshold and more are mapped on their own; smaller ones come from the
# heaps, so a process's resident memory exceeds its live tensors by a share of the small-block
# bytes (estimate/calibration.py). The threshold starts at 128 kB and rises to each mapped block
# freed, up to 32 MB, unless the environment fixes it (mmap_threshold()): then resident memory is
# the live tensors and a few MB, and every bigger block is faulted in afresh (BENCHMARKS.md).
DYNAMIC_MMAP_THRESHOLD_MAX = 32 * 2**20
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def mmap_threshold(environ=os.environ) -> int:
    """Bytes from which glibc maps a block on its own, for this process and those it starts:
    the value MALLOC_MMAP_THRESHOLD_ or the glibc.malloc.mmap_threshold tunable fixes (glibc
    then never raises it), else 32 MB: the dynamic threshold rises to the largest block a
    training step frees, so every smaller block comes from the heaps. Values glibc would
    reject (over 32 MB, not a number) leave the dynamic one, as glibc does."""
    tunables = dict(
        item.split("=", 1) for item in environ.get("GLIBC_TUNABLES", "").split(":") if "=" in item
    )
    fixed_by = (environ.get("MALLOC_MMAP_THRESHOLD_"), tunables.get("glibc.malloc.mmap_threshold"))
    for value in fixed_by:
        try:
            fixed = int(value, 0) if value else None
        except ValueError:
            continue
        if fixed is not None and 0 <= fixed <= DYNAMIC_MMAP_THRESHOLD_MAX:
            return fixed
    return DYNAMIC_MMAP_THRESHOLD_MAX


HEAP_BLOCK_MAX = mmap_threshold()


def threshold_is_fixed() -> bool:
    """Whether this process's environment fixed a threshold below glibc's dynamic maximum."""
    return HEAP_BLOCK_MAX < DYNAMIC_MMAP_THRESHOLD_MAX


def heap_served(nbytes: int) -> bool:
    """Whether glibc serves a block of this size from its heaps (not mapped on its own)."""
    return nbytes < HEAP_BLOCK_MAX


@contextlib.contextmanager
def heap_serving(nbytes: int):
    """Inside, glibc serves blocks of nbytes from its heaps even where a fixed mmap threshold
    would map them: for timing work that stands for heap-served blocks (mallopt changes this
    process's threshold; the fixed one comes back after)."""
    if heap_served(nbytes):
        yield
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: the threshold is not glibc's either
        yield
        return
    mallopt(M_MMAP_THRESHOLD, DYNAMIC_MMAP_THRESHOLD_MAX)
    try:
        yield
    finally:
        mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_MAX)


def trim_heap() -> None:
    """glibc's malloc_trim(0): return the heaps' free memory to the system (no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
