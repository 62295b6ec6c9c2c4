"""Measured device throughput for the time model: each distinct matmul shape of a step timed
once on this device (large ones scaled down to a few hundred MFLOP: throughput has saturated by
then), memory bandwidth from a large copy, and the eager cost per op (dispatch + autograd
bookkeeping) from a chain of tiny layers. Results are cached per device in the cache folder."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path

import torch

MAX_BENCH_FLOPS = 4e8  # bigger matmuls are timed with fewer rows and scaled up
MIN_BENCH_S = 0.02
MIN_RUNS = 5


def device_label(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{model} x{torch.get_num_threads()} threads"


class DeviceSpeed:
    """Timings on one device, cached in cache_dir/estimate/<device>.json."""

    def __init__(self, device: str, cache_dir: str):
        self.device = device
        self.label = device_label(device)
        key = hashlib.sha256(f"{self.label} torch {torch.__version__}".encode()).hexdigest()[:12]
        self.path = Path(cache_dir) / "estimate" / f"{device}-{key}.json"
        self.cache = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cache, indent=0, sort_keys=True))
        tmp.replace(self.path)

    def _cached(self, key: str, measure) -> float:
        if key not in self.cache:
            self.cache[key] = measure()
        return self.cache[key]

    def matmul_s(self, flops: int, rows: int, cols: int, dtype: str) -> float:
        inner = max(1, round(flops / (2 * rows * cols)))
        bench_rows = max(16, min(rows, int(rows * MAX_BENCH_FLOPS / max(flops, 1))))
        key = f"mm {bench_rows}x{inner}x{cols} {dtype}"
        seconds = self._cached(key, lambda: self._time_matmul(bench_rows, inner, cols, dtype))
        return seconds * rows / bench_rows

    def bytes_per_s(self) -> float:
        return self._cached("bandwidth", self._time_copy)

    def op_overhead_s(self) -> float:
        return self._cached("op overhead", self._time_tiny_ops)

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _timed(self, fn) -> float:
        """Best time of fn over MIN_RUNS repeats or more, MIN_BENCH_S in all (after one warm-up):
        the best, because a busy core only ever adds time."""
        fn()
        self._sync()
        best, spent, runs = float("inf"), 0.0, 0
        while spent < MIN_BENCH_S or runs < MIN_RUNS:
            runs += 1
            start = time.perf_counter()
            fn()
            self._sync()
            took = time.perf_counter() - start
            best, spent = min(best, took), spent + took
        return best

    def _time_matmul(self, m: int, k: int, n: int, dtype: str) -> float:
        kind = getattr(torch, dtype)
        a = torch.randn(m, k, device=self.device).to(kind)
        b = torch.randn(k, n, device=self.device).to(kind)
        return self._timed(lambda: a @ b)

    def _time_copy(self) -> float:
        src = torch.empty(16 * 2**20, device=self.device)  # 64 MB: past the caches
        dst = torch.empty_like(src)
        return 2 * src.numel() * 4 / self._timed(lambda: dst.copy_(src))

    def _time_tiny_ops(self) -> float:
        """Seconds per op of a forward + backward through tiny layers, where nothing but the
        eager machinery (dispatch, autograd, module calls) costs time."""
        from src.train.estimate.step import OpCost

        layers = torch.nn.Sequential(
            *[torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU()) for _ in range(50)]
        ).to(self.device)
        x = torch.randn(4, 8, device=self.device)

        def step():
            layers(x).sum().backward()

        counter = OpCost()
        with counter:
            step()
        return self._timed(step) / counter.record.ops


def available_memory_mb(device: str) -> float | None:
    """The memory a run may use: the GPU's total on cuda (None without one), else the RAM
    available now (MemAvailable, capped by this cgroup's limit where there is one)."""
    if device == "cuda":
        return torch.cuda.get_device_properties(0).total_memory / 2**20 if _has_cuda() else None
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available = float(meminfo["MemAvailable"].split()[0]) / 1024
    limit, used = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    if limit.exists() and used.exists() and limit.read_text().strip() != "max":
        headroom = (int(limit.read_text()) - int(used.read_text())) / 2**20
        available = min(available, headroom)
    return available


def _has_cuda() -> bool:
    return torch.cuda.is_available()
