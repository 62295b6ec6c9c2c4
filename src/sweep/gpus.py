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


def device_problems(spec, overrides: list[str], settings: dict) -> list[str]:
    """A trial on GPUs needs trainer.devices of them in its worker: checked before anything is
    submitted (otherwise every trial would fail in Lightning, on a cluster after a queue wait)."""
    from src.sweep.configs import method_choices

    needed = {
        choice.label: choice.cfg.trainer.devices
        for choice in method_choices(spec.space, [*spec.base, *overrides])
        if choice.cfg is not None and choice.cfg.trainer.accelerator in ("gpu", "cuda")
    }
    if not needed:
        return []
    if settings.get("launcher", "local") == "slurm":
        have, where = settings.get("launcher.gpus_per_worker", 0), "launcher.gpus_per_worker"
    else:
        gpus, workers = visible_gpus(), settings.get("workers", 1)
        if len(gpus) < workers:  # no GPU here (checked with the trial's device) or shared
            return []
        have, where = len(gpus) // workers, f"{len(gpus)} visible GPU(s) / workers={workers}"
    over = {label: devices for label, devices in needed.items() if devices > have}
    if not over:
        return []
    which = "every trial" if len(over) == len(needed) else ", ".join(over)
    return [
        f"trainer.devices={max(over.values())} GPU(s) per trial ({which}), but each worker "
        f"has {have} ({where})"
    ]
