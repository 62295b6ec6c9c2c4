"""Checkpoints are written straight to their file (no serialized copy held in memory) and replace
the previous one atomically (src/train/checkpoint_io.py)."""

from __future__ import annotations

import os
import stat
import tracemalloc

import fsspec
import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from src.train.checkpoint_io import StreamingCheckpointIO

STATE_MB = 32


def checkpoint() -> dict:
    return {"state_dict": {"weight": torch.arange(STATE_MB * 2**18, dtype=torch.float32)}}


def python_peak_mb(save) -> float:
    """Peak of Python-allocated memory while save() runs: where an in-memory buffer would live
    (tensors' own storage is not Python memory, so the checkpoint's state is not counted)."""
    tracemalloc.start()
    try:
        save()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_a_checkpoint_is_written_without_a_copy_in_memory(tmp_path):
    state = checkpoint()
    lightning_mb = python_peak_mb(
        lambda: TorchCheckpointIO().save_checkpoint(state, tmp_path / "lightning.ckpt")
    )
    streamed_mb = python_peak_mb(
        lambda: StreamingCheckpointIO().save_checkpoint(state, tmp_path / "sub" / "last.ckpt")
    )
    assert lightning_mb >= STATE_MB  # the serialized buffer this plugin exists to avoid
    assert streamed_mb < STATE_MB / 8
    loaded = torch.load(tmp_path / "sub" / "last.ckpt", weights_only=True)
    assert torch.equal(loaded["state_dict"]["weight"], state["state_dict"]["weight"])


def test_a_save_that_fails_midway_leaves_the_last_checkpoint_whole(tmp_path):
    target = tmp_path / "last.ckpt"
    plugin = StreamingCheckpointIO()
    plugin.save_checkpoint(checkpoint(), target)
    before = target.read_bytes()
    unpicklable = {**checkpoint(), "hook": lambda: None}  # pickling fails after the weights
    with pytest.raises(Exception, match="pickle|lambda"):
        plugin.save_checkpoint(unpicklable, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no partial file left


def test_a_checkpoint_gets_the_mode_the_umask_gives(tmp_path):
    previous = os.umask(0o022)
    try:
        StreamingCheckpointIO().save_checkpoint(checkpoint(), tmp_path / "last.ckpt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "last.ckpt").stat().st_mode) == 0o644


def test_a_remote_filesystem_is_saved_lightnings_way():
    path = "memory://checkpoints/last.ckpt"
    StreamingCheckpointIO().save_checkpoint(checkpoint(), path)
    with fsspec.open(path, "rb") as handle:
        loaded = torch.load(handle, weights_only=True)
    assert loaded["state_dict"]["weight"].numel() == STATE_MB * 2**18
