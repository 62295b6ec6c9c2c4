"""Pre-flight estimates: peak training memory and step time of a configuration, before it runs.

The model is built without weights (meta device, then fake tensors), with the adapter, the
quantized base and the precision a run would use; two optimizer steps run on fake tensors while the
live-tensor counter that measures real runs (live_tensors.LiveTensorBytes) counts every byte, and
each op is costed from its FLOPs, its bytes and a per-op cost measured on this device. What tensors
cannot show (allocator slack, library workspaces, the framework's own time per step) is added from
calibration.py, measured by bench/estimate.py.

Public names are imported on first use, so the CLI can quiet the libraries before they load.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "Estimate": "src.train.estimate.estimator",
    "estimate": "src.train.estimate.estimator",
    "simulate": "src.train.estimate.estimator",
    "with_step_time": "src.train.estimate.estimator",
    "format_estimate": "src.train.estimate.text",
    "available_memory_mb": "src.train.estimate.device",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'src.train.estimate' has no attribute {name!r}")
