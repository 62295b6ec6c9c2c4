"""Checkpoints written straight to their file, not built in memory first.

Lightning 2.6.6 saves every checkpoint by serializing it into an in-memory buffer and then
writing a copy of that buffer out (`lightning.fabric.utilities.cloud_io._atomic_save`): for as
long as a save lasts the process holds the checkpoint two or three times over (the state itself,
the buffer, its copy). Measured on MiniLM full fine-tuning (weights and AdamW state ~270 MB):
the run's resident peak 1,338 MB with checkpointing and 1,047 without. On a GPU cluster that is
host RAM: a full fine-tune's checkpoint of an 8B model (bf16 weights, fp32 AdamW moments, ~80 GB)
would need ~160 GB more of it. Lightning's own fix (PR #21824, streaming local saves) is not in
a release yet; this plugin does the same until it is.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class StreamingCheckpointIO(TorchCheckpointIO):
    """Local checkpoints: `torch.save` into a temporary file beside the target, then an atomic
    rename over it, so a save cut off midway (a preempted or killed trial) leaves the previous
    checkpoint whole, as Lightning's transaction does. Other filesystems: Lightning's way."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        fs, local_path = url_to_fs(str(path))
        if storage_options is not None or not isinstance(fs, LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Not mkstemp: its files are 0600, and a checkpoint must get the mode the user's umask
        # gives (on a cluster another job or user reads it), as Lightning's save does.
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "xb") as file:
                torch.save(checkpoint, file)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
