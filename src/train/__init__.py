"""One training run: compose a config from conf/, validate it, build model + adapter + data,
fit, test, measure, log to MLflow. `python -m src.train` (or `ftsweep-train`) is the CLI.

Public names are imported on first use, so `--help` and the sweep's command line stay fast
(torch, transformers and lightning take ~10 s to import).
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "train": "src.train.run",
    "prepare_inputs": "src.train.run",
    "build_datamodule": "src.train.run",
    "compose_config": "src.train.config",
    "compose_checked": "src.train.config",
    "CONF_DIR": "src.train.config",
    "config_problems": "src.train.validate",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'src.train' has no attribute {name!r}")
