"""What tensors cannot show, measured by bench/estimate.py (`--whole-run --calibrate` rewrites the
numbers here from its tiny-model rows run as users run them: one epoch, at most 100 steps,
batches padded to their longest row; BENCHMARKS.md has the table they come from).

cpu: the measured peak (mem/peak_mb) is resident memory. glibc's malloc serves blocks under its
     mmap threshold (32 MB, or what the environment fixes: allocator.py) from heaps that keep
     freed memory and fragment, so resident memory exceeds the live tensors by a share of the
     heap-served bytes: fixed_mb + heap_ratio x (MB of the tensor peak in such blocks). Big
     blocks (a causal LM's logits) are mapped and returned at once, and weights still viewing
     the memory-mapped checkpoint are the file's pages: neither counts as heap-served; nor does
     the optimizer state, allocated once (step.py). Under activation checkpointing the heap
     keeps several times the heap-served bytes at the peak (checkpointing_heap_ratio): each
     layer's activations pass through it twice a step (the no-grad forward, the recomputation in
     backward) while far fewer are alive at once. The heap keeps growing for tens of steps as
     batches of new lengths arrive (their blocks do not fit the holes shorter ones left), so
     the ratios are fitted on whole runs' peaks: a run of a few steps, or one whose batches are
     all padded to one length, stays below the estimate. Rules of thumb: see BENCHMARKS.md for
     where they miss.
     Step time: other_scale multiplies the non-matmul parts (their small benchmarks miss some
     of what a real step's elementwise ops cost), step_fixed_ms is Lightning's own work per step
     (hooks, logging, the scheduler); both fitted to measured step times.
cuda: the measured peak is torch.cuda.max_memory_allocated: the tensors plus fixed workspaces
     allocated through the caching allocator (cuBLAS': ~63 MB on an H100 and an H200), fixed_mb.
     Step time: step_fixed_ms only, fitted on an H200's tiny-model rows (bench/estimate.py
     fit_time says why not other_scale).
"""


def overhead_mb(calib: dict, heap_mb: float, checkpointing: bool) -> float:
    """What the measured peak holds beyond the tensors, from the heap-served MB at the peak."""
    ratio = calib["checkpointing_heap_ratio" if checkpointing else "heap_ratio"]
    return calib["fixed_mb"] + ratio * heap_mb


# bench/estimate.py --calibrate rewrites from here to the end.
OVERHEAD = {
    "cpu": {
        "fixed_mb": 22.6,
        "heap_ratio": 0.869,
        "checkpointing_heap_ratio": 3.2,
        "other_scale": 1.9,
        "step_fixed_ms": 0.0,
    },
    "cuda": {
        "fixed_mb": 62.5,
        "heap_ratio": 0.0,
        "checkpointing_heap_ratio": 0.0,
        "other_scale": 1.0,
        "step_fixed_ms": 5.5,
    },
}
