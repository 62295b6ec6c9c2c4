"""Which GPUs each local worker uses: `launcher=local workers=N` on a multi-GPU node gives
worker i its own share of the GPUs this command sees (CUDA_VISIBLE_DEVICES, or all of them),
so N drivers never train on the same device. A SLURM worker uses what its job was given."""

from __future__ import annotations

import os

ENV = "CUDA_VISIBLE_DEVICES"


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES as given, else every device."""
    given = os.environ.get(ENV)
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def worker_gpus(index: int, workers: int, gpus: list[str]) -> str | None:
    """Worker index's share: an equal slice of the GPUs (the remainder unused); None when there
    are fewer GPUs than workers (then all workers see every GPU, as before)."""
    per_worker = len(gpus) // workers
    if per_worker == 0:
        return None
    return ",".join(gpus[index * per_worker : (index + 1) * per_worker])
