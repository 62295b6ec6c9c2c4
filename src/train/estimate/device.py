"""Measured device throughput for the time model: each distinct matmul shape of a step timed
once on this device (large ones scaled down to a few hundred MFLOP: throughput has saturated by
then), the bytes per second of the usual non-matmul ops and of dropout's random draws, and the
eager cost per op (dispatch + autograd bookkeeping) from a chain of tiny layers. Results are
cached per device in the cache folder, unless other processes were busy while they were taken:
those are kept for this process only, and bounded by the same timing on one thread."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import resource
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from src.train import allocator

# Bigger matmuls are timed with fewer rows and scaled up. A CPU's throughput has saturated at a
# few hundred MFLOP; a GPU's has not even at a few GFLOP (a few rows times a big weight only
# measure reading the weight: on an H100 that made Llama-3-8B's matmuls 13x too slow), and it
# runs a whole step's biggest shape in milliseconds, so there every shape is timed as it is.
MAX_BENCH_FLOPS = {"cpu": 4e8, "cuda": 4e12}
MIN_BENCH_ROWS = 512
MIN_BENCH_S = 0.02
MIN_RUNS = 5
LARGE_RUNS = 20
# Other processes' CPU use (in cores) above which timings are kept for this process only: a
# busy core slows every multi-threaded op, and a cached number would mislead later estimates.
NOISY_CORES = 0.25
# Share of a timing's runs in which another process preempted one of ours, above which the
# timing is kept for this process only (quiet: 0-2 of 5-150 runs; beside a 2-thread neighbour on
# 2 cores: every run). Catches the load that the 10 ms CPU counters miss in a short timing.
PREEMPTED_SHARE = 0.25
# Timings taken while other processes were busy, per cache file: never written, but reused by
# the later estimates of this process (a test session, a sweep's driver, `src.estimate -m`), which
# would time the same shapes again under the same load (a tiny causal LM in bf16: ~8 s a time).
_UNSAVED: dict[Path, dict[str, float]] = {}
log = logging.getLogger(__name__)


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
        setting = f"{self.label} torch {torch.__version__}"
        if device == "cpu" and allocator.threshold_is_fixed():
            # A fixed mmap threshold maps what the elementwise timing writes (page faults each
            # time): timings taken under it are kept apart.
            setting += f" mmap_threshold {allocator.HEAP_BLOCK_MAX}"
        key = hashlib.sha256(setting.encode()).hexdigest()[:12]
        self.path = Path(cache_dir) / "estimate" / f"{device}-{key}.json"
        self.cache = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.unsaved = _UNSAVED.setdefault(self.path, {})
        self.measured = False
        self.runs = self.preempted_runs = 0

    def save(self) -> None:
        """Keep what was measured on a quiet machine for later processes."""
        if not self.measured:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.cache, indent=0, sort_keys=True))
        tmp.replace(self.path)

    def _cached(self, key: str, measure, faster=min) -> float:
        """measure() timed once per machine (faster: which of two results is the faster one,
        min for seconds, max for rates)."""
        for known in (self.cache, self.unsaved):
            if key in known:
                return known[key]
        before, self.runs, self.preempted_runs = _cpu_jiffies(), 0, 0
        result = measure()
        busy = _others_busy_cores(before, _cpu_jiffies()) > NOISY_CORES
        if not busy and self.preempted_runs <= PREEMPTED_SHARE * self.runs:
            self.cache[key], self.measured = result, True
            return result
        if self.device == "cpu" and torch.get_num_threads() > 1:
            # Another process's threads preempt ours mid-op and a multi-threaded op waits for
            # its slowest thread: beside a 2-thread neighbour on 2 cores, ops timed 10-300x slow.
            # One thread is barely slowed there, and on a quiet machine N threads are no slower
            # than one: its time bounds the op's to within N times.
            result = faster(result, _on_one_thread(measure))
        if not self.unsaved:
            log.warning(
                "Other processes were busy while this device was timed: the step-time estimate"
                " uses one-thread timings there (up to %dx high) and is not cached.",
                torch.get_num_threads(),
            )
        self.unsaved[key] = result
        return result

    def matmul_s(self, flops: int, rows: int, cols: int, dtype: str) -> float:
        inner = max(1, round(flops / (2 * rows * cols)))
        most = MAX_BENCH_FLOPS[self.device]
        bench_rows = max(16, min(rows, int(rows * most / max(flops, 1))))
        if bench_rows < MIN_BENCH_ROWS <= rows and flops * MIN_BENCH_ROWS / rows <= 8 * most:
            bench_rows = MIN_BENCH_ROWS  # few rows run below a wide matmul's real speed
        key = f"mm {bench_rows}x{inner}x{cols} {dtype}"
        seconds = self._cached(key, lambda: self._time_matmul(bench_rows, inner, cols, dtype))
        return seconds * rows / bench_rows

    def bytes_per_s(self) -> float:
        return self._cached("elementwise bytes/s", self._time_elementwise, max)

    def large_bytes_per_s(self) -> float:
        return self._cached("large-block bytes/s", self._time_large, max)

    def random_bytes_per_s(self) -> float:
        return self._cached("random bytes/s", self._time_random, max)

    def op_overhead_s(self) -> float:
        return self._cached("op overhead", self._time_tiny_ops)

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _timed(self, fn, min_runs: int = MIN_RUNS) -> float:
        """Best time of fn over min_runs repeats or more, MIN_BENCH_S in all (after one warm-up):
        the best, because a busy core only ever adds time. Counts the runs another process
        preempted."""
        fn()
        self._sync()
        best, spent, runs = float("inf"), 0.0, 0
        while spent < MIN_BENCH_S or runs < min_runs:
            runs += 1
            switches = _involuntary_switches()
            start = time.perf_counter()
            fn()
            self._sync()
            took = time.perf_counter() - start
            best, spent = min(best, took), spent + took
            self.preempted_runs += _involuntary_switches() > switches
        self.runs += runs
        return best

    def _time_matmul(self, m: int, k: int, n: int, dtype: str) -> float:
        kind = getattr(torch, dtype)
        a = torch.randn(m, k, device=self.device).to(kind)
        b = torch.randn(k, n, device=self.device).to(kind)
        return self._timed(lambda: a @ b)

    def _time_elementwise(self) -> float:
        """Bytes per second (read + written) of a training step's usual non-matmul ops on a
        4 MB activation, each making a new output as they do in a step (so allocation and
        first-touch page faults count): add, mul, GELU, SiLU, softmax, layer norm."""
        x = torch.randn(2**12, 256, device=self.device)
        y = torch.randn_like(x)
        ops = [
            (lambda: x + y, 3),
            (lambda: x * y, 3),
            (lambda: torch.nn.functional.gelu(x), 2),
            (lambda: torch.nn.functional.silu(x), 2),
            (lambda: torch.softmax(x, -1), 2),
            (lambda: torch.nn.functional.layer_norm(x, (256,)), 2),
        ]
        # Where a fixed mmap threshold would map these outputs afresh (the large-block rate's
        # case), they come from the heap as the step's heap-served blocks do.
        serving = allocator.heap_serving(x.nbytes) if self.device == "cpu" else nullcontext()
        with serving:
            seconds = sum(self._timed(op) for op, _ in ops)
        return sum(n * x.numel() * x.element_size() for _, n in ops) / seconds

    def _time_large(self) -> float:
        """Bytes per second of the same kind of ops on 64 MB tensors: blocks this big are mapped
        afresh for each output, so every page is faulted in again (a causal LM's logits). Page
        faults here come in slow bursts of a few hundred ms (3-4x slower, measured on this VM), so
        each op is timed over LARGE_RUNS runs: best of 5 had caught a burst in 1 of 4 processes."""
        x = torch.randn(2**16, 256, device=self.device)
        y = torch.randn_like(x)
        ops = [
            (lambda: x + y, 3),
            (lambda: x * y, 3),
            (lambda: torch.log_softmax(x, -1), 2),
        ]
        seconds = sum(self._timed(op, LARGE_RUNS) for op, _ in ops)
        return sum(n * x.numel() * x.element_size() for _, n in ops) / seconds

    def _time_random(self) -> float:
        """Bytes per second of drawing a dropout mask in place (bernoulli_), read + written."""
        mask = torch.empty(2**12, 256, device=self.device)
        return 2 * mask.numel() * mask.element_size() / self._timed(lambda: mask.bernoulli_(0.9))

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


def _on_one_thread(measure):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure()
    finally:
        torch.set_num_threads(threads)


def _involuntary_switches() -> int:
    """Times this process's threads were preempted (by the scheduler, for another thread)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


def _cpu_jiffies() -> tuple[int, int, int]:
    """(busy jiffies of the whole machine, of this process, elapsed jiffies per core)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return sum(fields) - idle, int(own[11]) + int(own[12]), sum(fields) // os.cpu_count()


def _others_busy_cores(before: tuple, after: tuple) -> float:
    """Cores' worth of CPU other processes used between two _cpu_jiffies() readings (0 below
    3 jiffies: the counters tick every 10 ms, too coarse to judge a short benchmark by)."""
    elapsed = after[2] - before[2]
    others = (after[0] - before[0]) - (after[1] - before[1])
    if elapsed <= 0 or others < 3:
        return 0.0
    return others / elapsed


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
