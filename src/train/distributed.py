"""Data-parallel runs (`trainer.devices=K trainer.strategy=ddp`): which rank this process is,
starting the other ranks of a sweep trial, and gathering what every rank measured.

A plain `python -m src.train trainer.devices=2 trainer.strategy=ddp` is launched by Lightning
itself: it re-runs the same command once per extra rank. A sweep's trial process cannot be
re-run that way (it is forked from the sweep's fork server, not started from a command line), so
it forks its other ranks itself before it builds anything (the imports are done, so a rank
starts in milliseconds, not the ~6 s of a fresh interpreter) and sets the environment that makes
Lightning treat every rank as launched from outside (LOCAL_RANK, WORLD_SIZE, MASTER_*), as
torchrun would. On CPU the ranks talk over gloo, on GPUs over NCCL; one node only.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager

from omegaconf import DictConfig

# Measured on every rank; the run logs each rank's value and a total (see gather_per_rank).
PER_RANK = (
    "mem/peak_mb",
    "mem/tensor_peak_mb",
    "time/step_ms",
    "time/train_s",
    "throughput/tokens_per_s",
    "train/steps",
)


def world_size(cfg: DictConfig) -> int:
    """How many processes a run of cfg trains in (1 unless trainer.devices > 1)."""
    devices = cfg.trainer.devices
    return devices if isinstance(devices, int) and devices > 1 else 1


def trainer_strategy(cfg: DictConfig):
    """What Lightning's Trainer gets as `strategy`: as configured for one device; with several,
    DDP whose gradients live in its all-reduce buckets (gradient_as_bucket_view): otherwise each
    rank holds every trainable gradient twice, which the pre-flight estimate does not count."""
    if world_size(cfg) <= 1:
        return cfg.trainer.get("strategy", "auto")
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(gradient_as_bucket_view=True)


def rank() -> int:
    """This process's global rank: 0 unless it was started as another rank of a run."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def launched_as_rank() -> bool:
    """Whether this process belongs to a data-parallel run whose ranks were started from outside
    Lightning (a sweep trial's ranks, torchrun): Lightning must then not start any itself."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


@contextmanager
def other_ranks(world: int, start_rank: Callable[[int], multiprocessing.Process]):
    """Make this process rank 0 of a data-parallel run and start ranks 1..world-1 with
    start_rank(k) (after setting the environment they inherit). On the way out, wait for them
    briefly, then kill any still running. A rank that dies stops this process too: the others
    would wait for it in their next collective until the backend's timeout (30 min)."""
    if world <= 1:
        yield
        return
    from lightning.fabric.plugins.environments.lightning import find_free_network_port

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(find_free_network_port()),
        WORLD_SIZE=str(world),
        NODE_RANK="0",
        LOCAL_RANK="0",
        RANK="0",
    )
    procs = [start_rank(k) for k in range(1, world)]
    watch = _watch_ranks(procs)
    try:
        yield
        watch.set()  # this rank is done: a failure while the others exit no longer matters
        for proc in procs:
            _wait(proc, 60.0)
    finally:
        watch.set()
        for proc in procs:
            _wait(proc, 0.0)


def become_rank(k: int) -> None:
    """In a process forked from rank 0: take rank k (the environment Lightning reads)."""
    os.environ.update(LOCAL_RANK=str(k), RANK=str(k))


def _watch_ranks(procs: list[multiprocessing.Process]) -> threading.Event:
    """Exit this process (rank 0) as soon as another rank fails."""
    done = threading.Event()

    def watch():
        while not done.wait(1.0):
            failed = [(i + 1, p.exitcode) for i, p in enumerate(procs) if p.exitcode]
            if failed and not done.is_set():
                k, code = failed[0]
                print(f"rank {k} exited with code {code}: stopping this run", file=sys.stderr)
                sys.stderr.flush()
                os._exit(1)

    threading.Thread(target=watch, name="rank-watch", daemon=True).start()
    return done


def _wait(proc: multiprocessing.Process, timeout_s: float) -> None:
    proc.join(timeout_s)
    if proc.is_alive():
        proc.kill()
        proc.join()


def stop_with_parent() -> None:
    """In ranks 1..K-1: exit when rank 0, which started this process, is gone (killed by the
    sweep), instead of waiting in a collective for it."""
    from src.watchdog import exit_when

    parent = os.getppid()
    exit_when(lambda: os.getppid() != parent, 1.0, "rank0-watch")


def gather_per_rank(trainer, measured: dict[str, float]) -> dict[str, float]:
    """Every rank's PER_RANK values (collective: every rank must call it) as rank/K/<key>, and
    the run's figures over all ranks: peak memory per device (the largest rank's, what one
    device must hold: comparable with a single-device run and the estimate) and in total
    (mem/peak_mb_total), the step time of the slowest rank (steps are synchronised), device
    seconds (time/device_s, the sum of the ranks' training time). Unchanged with one rank."""
    if trainer.world_size <= 1:
        return {}
    import torch

    local = torch.tensor([float(measured[k]) for k in PER_RANK], dtype=torch.float64)
    device = trainer.strategy.root_device
    every = trainer.strategy.all_gather(local.to(device)).cpu().reshape(trainer.world_size, -1)
    out = {
        f"rank/{r}/{key}": float(every[r, i])
        for r in range(trainer.world_size)
        for i, key in enumerate(PER_RANK)
    }
    column = {key: every[:, i] for i, key in enumerate(PER_RANK)}
    out.update(
        {
            "mem/peak_mb": float(column["mem/peak_mb"].max()),
            "mem/peak_mb_total": float(column["mem/peak_mb"].sum()),
            "mem/tensor_peak_mb": float(column["mem/tensor_peak_mb"].max()),
            "time/step_ms": float(column["time/step_ms"].max()),
            "time/device_s": float(column["time/train_s"].sum()),
            "throughput/tokens_per_s": float(column["throughput/tokens_per_s"].sum()),
            "dist/world_size": float(trainer.world_size),
        }
    )
    return out
