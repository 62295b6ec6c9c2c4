"""The exact count of live tensor bytes (LiveTensorBytes): what a run's `mem/tensor_peak_mb`
measures (measure.TensorPeak) and what the estimator (src/train/estimate/) counts on fake tensors.
Kept free of Lightning so that `python -m src.estimate` does not load it."""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from src.train.allocator import heap_served


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of every tensor storage alive, counted when an op creates it and released when it is
    freed (storages keep their Python object alive as long as they live, so a weakref finalizer
    fires exactly then). Works on real and on fake tensors, so the estimator and the measurement
    count the same way. Tensors that existed before entering are counted through track().
    small_at_peak: of the peak, the bytes in heap-served blocks (allocator.heap_served)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = self.small = self.small_at_peak = 0
        self._tracked: dict[int, object] = {}

    def track(self, tensor: torch.Tensor, heap: bool = True) -> None:
        """heap=False: memory no allocator serves (a view of a memory-mapped file)."""
        storage = tensor.untyped_storage()
        key = storage._cdata  # the C++ storage: views and aliases share it
        if key in self._tracked:
            return
        size = storage.nbytes()
        small = size if heap and heap_served(size) else 0
        self.live += size
        self.small += small
        if self.live > self.peak:
            self.peak, self.small_at_peak = self.live, self.small
        self._tracked[key] = weakref.finalize(storage, self._release, key, size, small)

    def track_all(self, tensors, heap: bool = True) -> None:
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                self.track(tensor, heap)

    def _release(self, key: int, size: int, small: int) -> None:
        self.live -= size
        self.small -= small
        self._tracked.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.track_all(tree_flatten(out)[0])
        return out
