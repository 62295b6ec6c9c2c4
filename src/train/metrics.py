"""The metric keys of the interface contract (DESIGN.md): a light module, so the sweep can
check objectives without importing torch."""

# The metric keys every run returns and logs (the interface users and checks rely on); more
# keys are added where they apply (val/perplexity, forget/*, ptq/*).
CONTRACT_METRICS = (
    "val/acc",
    "test/acc",
    "train/loss",
    "val/loss",
    "test/loss",
    "mem/peak_mb",
    "mem/weights_mb",
    "mem/optimizer_mb",
    "time/train_s",
    "time/step_ms",
    "throughput/tokens_per_s",
    "params/trainable",
    "params/total",
    "params/trainable_pct",
    "train/steps",
)
