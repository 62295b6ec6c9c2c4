"""What tensors cannot show, measured by bench/estimate.py (`--calibrate` rewrites the numbers
here from its runs; BENCHMARKS.md has the table they come from).

cpu: the measured peak (mem/peak_mb) is resident memory, so it adds to the tensor peak what the
     allocator keeps and what libraries allocate outside torch (oneDNN, OpenMP arenas):
     fixed + ratio x tensor peak. step_fixed_ms is Lightning's own work per step (hooks,
     logging, the learning-rate scheduler), measured as step time minus the modelled ops.
cuda: the measured peak is torch.cuda.max_memory_allocated: tensors rounded to 512 bytes.
"""

OVERHEAD = {
    "cpu": {"fixed_mb": 0.0, "ratio": 0.0, "step_fixed_ms": 0.0},
    "cuda": {"fixed_mb": 0.0, "ratio": 0.0, "step_fixed_ms": 0.0},
}
